//! The build's progress on stderr: while the platforms build, a live line per platform (spinner,
//! then its outcome) when stderr is a terminal; plain log lines otherwise (CI logs, pipes).
//! Stdout is left to the result (the index digest, or the `--json` report).

use crate::pipeline::Reporter;
use crate::platform::Platform;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// The [`Reporter`] of `rcross build`.
pub(super) struct StderrReporter {
    terminal: bool,
    /// The live lines while the builds run (on a terminal only).
    live: Mutex<Option<Live>>,
}

struct Live {
    multi: MultiProgress,
    bars: Vec<(Platform, ProgressBar)>,
}

impl StderrReporter {
    /// Live lines only when stderr is a terminal.
    pub(super) fn new() -> StderrReporter {
        StderrReporter {
            terminal: std::io::stderr().is_terminal(),
            live: Mutex::new(None),
        }
    }

    /// Runs `f` with platform `p`'s live line; `None` without a live display.
    fn with_bar<T>(&self, p: Platform, f: impl FnOnce(&ProgressBar) -> T) -> Option<T> {
        let live = self.live.lock().ok()?;
        let (_, bar) = live.as_ref()?.bars.iter().find(|(q, _)| *q == p)?;
        Some(f(bar))
    }
}

impl Reporter for StderrReporter {
    fn line(&self, line: &str) {
        if let Ok(live) = self.live.lock() {
            if let Some(live) = live.as_ref() {
                let _ = live.multi.println(line);
                return;
            }
        }
        eprintln!("{line}");
    }

    fn builds_begin(&self, platforms: &[Platform]) {
        if !self.terminal {
            return;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix:<16} {msg} {elapsed:.dim}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = platforms
            .iter()
            .map(|p| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(p.to_string());
                b.set_message("waiting");
                (*p, b)
            })
            .collect();
        if let Ok(mut live) = self.live.lock() {
            *live = Some(Live { multi, bars });
        }
    }

    fn build_started(&self, p: Platform, what: &str) {
        let shown = self.with_bar(p, |b| {
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(100));
        });
        if shown.is_none() {
            eprintln!("[{p}] {what}");
        }
    }

    /// The live line shows the latest output line after what is being done; without a
    /// terminal every line is logged with the platform in front.
    fn build_output(&self, p: Platform, what: &str, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let shown = self.with_bar(p, |b| {
            let short: String = line.chars().take(60).collect();
            b.set_message(format!("{what} | {short}"));
        });
        if shown.is_none() {
            eprintln!("[{p}] | {line}");
        }
    }

    fn build_finished(&self, p: Platform, outcome: &str) {
        let shown = self.with_bar(p, |b| b.finish_with_message(outcome.to_string()));
        if shown.is_none() {
            eprintln!("[{p}] {outcome}");
        }
    }

    fn builds_end(&self) {
        if let Ok(mut live) = self.live.lock() {
            *live = None;
        }
    }
}
