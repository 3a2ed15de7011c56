//! Build progress on stderr: a live line per platform (spinner, then its outcome) on a
//! terminal, plain log lines otherwise (CI logs, pipes).

use crate::platform::Platform;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    live: Option<(MultiProgress, Vec<(Platform, ProgressBar)>)>,
}

impl Progress {
    /// Live display only when stderr is a terminal.
    pub fn new(platforms: &[Platform]) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { live: None };
        }
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix:<16} {msg} {elapsed:.dim}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = platforms
            .iter()
            .map(|p| {
                let b = mp.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(p.to_string());
                b.set_message("waiting");
                (*p, b)
            })
            .collect();
        Progress {
            live: Some((mp, bars)),
        }
    }

    fn bar(&self, p: Platform) -> Option<&ProgressBar> {
        self.live
            .as_ref()
            .and_then(|(_, bars)| bars.iter().find(|(q, _)| *q == p).map(|(_, b)| b))
    }

    pub fn start(&self, p: Platform, what: &str) {
        match self.bar(p) {
            Some(b) => {
                b.set_message(what.to_string());
                b.enable_steady_tick(Duration::from_millis(100));
            }
            None => eprintln!("[{p}] {what}"),
        }
    }

    pub fn finish(&self, p: Platform, outcome: &str) {
        match self.bar(p) {
            Some(b) => b.finish_with_message(outcome.to_string()),
            None => eprintln!("[{p}] {outcome}"),
        }
    }

    /// One line of a platform's build output: the live line shows the latest one after what
    /// is being done; without a terminal every line is logged with the platform in front.
    pub fn output(&self, p: Platform, what: &str, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        match self.bar(p) {
            Some(b) => {
                let short: String = line.chars().take(60).collect();
                b.set_message(format!("{what} | {short}"));
            }
            None => eprintln!("[{p}] | {line}"),
        }
    }

    /// A line that is not about one platform, printed above the live lines.
    pub fn line(&self, msg: &str) {
        match &self.live {
            Some((mp, _)) => {
                let _ = mp.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }
}
