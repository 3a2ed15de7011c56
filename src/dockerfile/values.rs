//! Small parsers for instruction arguments, as BuildKit's parser and dispatchers read them:
//! word splitting that keeps quotes (ENV/LABEL/ARG), `--mount` CSV, durations, sizes, ports,
//! working directories, signals.

use std::time::Duration;

/// BuildKit's `parseWords`: split at unquoted whitespace, keeping quotes and escapes in the
/// words (the lexer removes them later).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    match chars.next() {
                        None => continue, // an escape at the end of the line is dropped
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            quote = None;
                            continue;
                        }
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV/LABEL arguments (BuildKit's `parseNameVal`): `k=v k2=v2…`, or the old `k v w` form
/// (one pair, the value being the rest of the line). Keys and values are still unexpanded.
pub fn parse_name_values(rest: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err("at least one argument is required".to_string());
    };
    if !first.contains('=') {
        let trimmed = rest.trim_start();
        let Some(split) = trimmed.find(char::is_whitespace) else {
            return Err("must have two arguments (name value) or name=value".to_string());
        };
        let (k, v) = trimmed.split_at(split);
        return Ok(vec![(k.to_string(), v.trim_start().to_string())]);
    }
    words
        .iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("can't find = in {w:?}: must be of the form name=value"))
        })
        .collect()
}

/// Fields of a CSV record (`--mount` values): commas separate, double quotes group (`""` is a
/// quote inside them).
pub fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            _ => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {s:?}"));
    }
    fields.push(field);
    Ok(fields)
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1.5h`, `0`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 30s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A size as Docker's `RAMInBytes` reads it (`64m`, `1g`, `512kb`, `1024`): binary multiples.
pub fn parse_ram_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (examples: 64m, 1g, 1048576)");
    let t = s.trim().to_ascii_lowercase();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let mult: u64 = match t[num_len..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return Err(bad()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

/// EXPOSE specs → `port/proto` keys (`80` → `80/tcp`, `53/UDP` → `53/udp`, `8000-8001` → both),
/// as Docker's `nat.ParsePortSpecs` reads them.
pub fn parse_ports(spec: &str) -> Result<Vec<String>, String> {
    let (port, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid proto {proto:?} in port {spec:?} (tcp, udp or sctp)"
        ));
    }
    // `ip:hostPort:containerPort`: only the container port is exposed.
    let port = port.rsplit(':').next().unwrap_or(port);
    let bad = || format!("invalid port {spec:?}: a number 1-65535 or a range such as 8000-8010");
    let num = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(port)?, num(port)?),
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// `path.Clean` for slash-separated paths.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// WORKDIR `requested` after `current` (relative paths are joined, the result is cleaned and
/// absolute).
pub fn join_workdir(current: &str, requested: &str) -> String {
    if requested.starts_with('/') {
        clean_path(requested)
    } else {
        clean_path(&format!("/{current}/{requested}"))
    }
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// STOPSIGNAL: a number, a name (`TERM`, `SIGTERM`), or `SIGRTMIN+n`/`SIGRTMAX-n`.
pub fn check_signal(s: &str) -> Result<(), String> {
    if s.parse::<u8>().is_ok_and(|n| n > 0) {
        return Ok(());
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"))
        .is_some_and(|r| {
            r.is_empty()
                || r.strip_prefix(['+', '-'])
                    .is_some_and(|n| n.parse::<u8>().is_ok())
        });
    if SIGNALS.contains(&name) || rt {
        Ok(())
    } else {
        Err(format!(
            "invalid signal {s:?} (a number or a name such as SIGTERM)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"A="x y" B=2"#, '\\'),
            vec![r#"A="x y""#, "B=2"]
        );
        assert_eq!(
            parse_words(r#"A=a\ b C="""#, '\\'),
            vec![r"A=a\ b", r#"C="""#]
        );
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
    }

    #[test]
    fn name_values_both_forms() {
        assert_eq!(
            parse_name_values("A  b c ", '\\').unwrap(),
            vec![("A".to_string(), "b c ".to_string())]
        );
        assert_eq!(
            parse_name_values(r#"A=1 B="2 3""#, '\\').unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), r#""2 3""#.into())]
        );
        assert!(parse_name_values("A=1 B", '\\').is_err());
        assert!(parse_name_values("A", '\\').is_err());
    }

    #[test]
    fn csv() {
        assert_eq!(
            csv_fields("type=cache,target=/x").unwrap(),
            vec!["type=cache", "target=/x"]
        );
        assert_eq!(csv_fields(r#""a,b",c"#).unwrap(), vec!["a,b", "c"]);
        assert!(csv_fields(r#""a"#).is_err());
    }

    #[test]
    fn durations_sizes_ports_paths_signals() {
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_go_duration("5").is_err() && parse_go_duration("x").is_err());
        assert_eq!(parse_ram_size("64m").unwrap(), 64 << 20);
        assert!(parse_ram_size("lots").is_err());
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_ports("8000-8001").unwrap(),
            vec!["8000/tcp", "8001/tcp"]
        );
        assert!(parse_ports("http").is_err() && parse_ports("80/xyz").is_err());
        assert_eq!(join_workdir("/a", "b/../c/"), "/a/c");
        assert_eq!(join_workdir("", "x"), "/x");
        assert_eq!(join_workdir("/a", "/../b"), "/b");
        for ok in ["9", "SIGTERM", "term", "SIGRTMIN+3"] {
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        assert!(check_signal("SIGNOPE").is_err());
    }
}
