//! `.dockerignore`, read and matched as BuildKit does (moby/patternmatcher, read at
//! 5a6d842: `ignorefile/ignorefile.go` `ReadAll` and `patternmatcher.go` `New`, `compile`,
//! `MatchesOrParentMatches`):
//!
//! - a UTF-8 BOM on the first line is dropped; a line starting with `#` is a comment; lines are
//!   trimmed, empty ones skipped; `!` makes an exception (the rest trimmed again);
//! - each pattern is `filepath.Clean`ed and loses one leading `/`;
//! - `*` is any run of characters but `/`, `?` one character but `/`, `[…]` a class (`^`
//!   negates), `\` escapes the next character, `**` any number of directories (`**/` eats its
//!   slash; a trailing `**` matches everything below), a leading `**` matches as a suffix;
//! - a path is excluded when the *last* pattern that matches it or one of its parent
//!   directories is not an exception: a pattern matching a directory excludes everything below
//!   it, and a later `!` pattern can take a file back.

use std::path::Path;

use super::copy::CopyError;

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
    /// The file the patterns came from, for messages (`None`: none, or parsed from text).
    source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct IgnorePattern {
    exclusion: bool,
    /// As written after cleaning (for messages).
    text: String,
    matcher: PathMatcher,
}

/// patternmatcher's match types: the cheap ones it detects, else a compiled expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatcher {
    Exact(String),
    /// A trailing `**` on a pattern without other wildcards: the text before it is a prefix.
    Prefix(String),
    /// A leading `**` on a pattern without other wildcards: the text after it is a suffix
    /// (and `**/foo` also matches `foo`).
    Suffix(String),
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `[…]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` followed by more: `(.*/)?`.
    Dirs,
    /// `**` at the end: `.*`.
    Rest,
}

impl DockerIgnore {
    /// `<dockerfile name>.dockerignore` beside the Dockerfile wins over `<context>/.dockerignore`;
    /// neither is no pattern at all.
    pub fn load(context: &Path, dockerfile: &Path) -> Result<DockerIgnore, CopyError> {
        let beside = dockerfile.file_name().map(|name| {
            let mut name = name.to_os_string();
            name.push(".dockerignore");
            dockerfile.with_file_name(name)
        });
        for candidate in beside
            .into_iter()
            .chain(std::iter::once(context.join(".dockerignore")))
        {
            match std::fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let mut ignore = DockerIgnore::parse(&text).map_err(|e| match e {
                        CopyError::IgnorePattern {
                            pattern, reason, ..
                        } => CopyError::IgnorePattern {
                            file: candidate.display().to_string(),
                            pattern,
                            reason,
                        },
                        other => other,
                    })?;
                    ignore.source = Some(candidate.display().to_string());
                    return Ok(ignore);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(CopyError::Io {
                        what: "reading".into(),
                        path: candidate,
                        source: e,
                    })
                }
            }
        }
        Ok(DockerIgnore::default())
    }

    pub fn parse(text: &str) -> Result<DockerIgnore, CopyError> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = if n == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
            }
            let bad = |reason: &str| CopyError::IgnorePattern {
                file: ".dockerignore".into(),
                pattern: line.trim().to_string(),
                reason: reason.to_string(),
            };
            if pattern.is_empty() {
                return Err(bad("an exception `!` needs a pattern after it"));
            }
            let mut cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let matcher = compile(&cleaned).map_err(|r| bad(&r))?;
            patterns.push(IgnorePattern {
                exclusion,
                text: cleaned,
                matcher,
            });
        }
        Ok(DockerIgnore {
            patterns,
            source: None,
        })
    }

    /// Whether the context path `relative` (slash-separated, relative to the context root) is
    /// left out of the context.
    pub fn is_excluded(&self, relative: &str) -> bool {
        let file = clean_path(relative);
        let file = file.trim_start_matches('/');
        if file.is_empty() || file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a path already excluded, nor an exception one that
            // is not.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matcher.matches(file);
            if !hit {
                for i in 1..=parents.len() {
                    if pattern.matcher.matches(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether any pattern is an exception (`!`): an excluded directory may then hold paths
    /// that are not.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// The pattern that excludes `relative` (the last matching one), for messages.
    pub fn excluding_pattern(&self, relative: &str) -> Option<String> {
        if !self.is_excluded(relative) {
            return None;
        }
        let file = clean_path(relative);
        let file = file.trim_start_matches('/').to_string();
        let mut prefixes: Vec<String> = Vec::new();
        let mut acc = String::new();
        for part in file.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            prefixes.push(acc.clone());
        }
        self.patterns
            .iter()
            .rev()
            .find(|p| !p.exclusion && prefixes.iter().any(|q| p.matcher.matches(q)))
            .map(|p| p.text.clone())
    }

    /// The file the patterns were read from, when any.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Prefix(p) => path.starts_with(p.as_str()),
            PathMatcher::Suffix(s) => {
                path.ends_with(s.as_str()) || (s.starts_with('/') && path == &s[1..])
            }
            PathMatcher::Tokens(tokens) => {
                let chars: Vec<char> = path.chars().collect();
                match_tokens(tokens, &chars)
            }
        }
    }
}

/// patternmatcher's `compile`: which of its match types the pattern is, and its tokens.
fn compile(pattern: &str) -> Result<PathMatcher, String> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut detected = Detected::Exact;
    let mut tokens = Vec::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        let first = i == 0;
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::Rest);
                        detected = Detected::Regexp;
                    }
                } else {
                    tokens.push(Token::Dirs);
                    detected = Detected::Regexp;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Regexp;
            }
            '?' => {
                tokens.push(Token::Any);
                detected = Detected::Regexp;
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    tokens.push(Token::Char(next));
                    detected = Detected::Regexp;
                }
                None => tokens.push(Token::Char('\\')),
            },
            '[' => {
                let (class, used) = parse_class(&chars[i..])?;
                i += used;
                tokens.push(class);
                detected = Detected::Regexp;
            }
            c => tokens.push(Token::Char(c)),
        }
    }
    // A pattern Go's filepath.Match rejects (an unclosed `[`) was refused above, as New does.
    Ok(match detected {
        Detected::Exact => PathMatcher::Exact(pattern.to_string()),
        Detected::Prefix => PathMatcher::Prefix(pattern[..pattern.len() - 2].to_string()),
        Detected::Suffix => PathMatcher::Suffix(pattern[2..].to_string()),
        Detected::Regexp => PathMatcher::Tokens(tokens),
    })
}

/// A class after its `[`: the token and how many characters it used (with the `]`).
fn parse_class(chars: &[char]) -> Result<(Token, usize), String> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("`[` without its closing `]`".into());
        };
        if c == ']' && !first {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let mut lo = c;
        i += 1;
        if c == '\\' {
            lo = *chars.get(i).ok_or("`\\` at the end of a class")?;
            i += 1;
        }
        let mut hi = lo;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
            hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or("`\\` at the end of a class")?;
                i += 1;
            }
            if hi < lo {
                return Err(format!("the range {lo}-{hi} is backwards"));
            }
        }
        ranges.push((lo, hi));
    }
}

/// Go's `filepath.Match`: whether `name` matches `pattern` (`*` any run but `/`, `?` one
/// character but `/`, `[…]` a class with `^` negating, `\\` escaping); an error for a malformed
/// pattern (an unclosed class).
pub(crate) fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        tokens.push(match ch {
            '*' => Token::Star,
            '?' => Token::Any,
            '\\' => {
                let next = *chars.get(i).ok_or("`\\` at the end of the pattern")?;
                i += 1;
                Token::Char(next)
            }
            '[' => {
                let (class, used) = parse_class(&chars[i..])?;
                i += used;
                class
            }
            c => Token::Char(c),
        });
    }
    let name: Vec<char> = name.chars().collect();
    Ok(match_tokens(&tokens, &name))
}

/// Whether a source path holds a wildcard (`* ? [`, a `\\` escaping the next character), as
/// BuildKit's `containsWildcards`.
pub(crate) fn has_wildcards(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

fn match_tokens(tokens: &[Token], path: &[char]) -> bool {
    let Some((token, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match token {
        Token::Char(c) => path.first() == Some(c) && match_tokens(rest, &path[1..]),
        Token::Any => path.first().is_some_and(|&c| c != '/') && match_tokens(rest, &path[1..]),
        Token::Class { negated, ranges } => path.first().is_some_and(|&c| {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                && match_tokens(rest, &path[1..])
        }),
        Token::Star => {
            for n in 0..=path.len() {
                if match_tokens(rest, &path[n..]) {
                    return true;
                }
                if path.get(n) == Some(&'/') {
                    break;
                }
            }
            false
        }
        // `(.*/)?`: nothing, or anything ending in a `/`.
        Token::Dirs => {
            match_tokens(rest, path)
                || (0..path.len()).any(|n| path[n] == '/' && match_tokens(rest, &path[n + 1..]))
        }
        Token::Rest => (0..=path.len()).any(|n| match_tokens(rest, &path[n..])),
    }
}

/// Go's `path.Clean`: the shortest path equivalent to `path` by lexical processing (`//`, `.`
/// and `..` resolved, no trailing `/`; `..` at the root stays at the root); `.` for nothing.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &str, path: &str) -> bool {
        DockerIgnore::parse(patterns).unwrap().is_excluded(path)
    }

    #[test]
    fn clean_path_is_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
            ("/", "/"),
            ("./", "."),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }

    // Vectors from patternmatcher_test.go (TestMatches, TestMatchesWithMalformedPatterns) and
    // the dockerignore documentation.
    #[test]
    fn patternmatcher_vectors() {
        for (pattern, path, want) in [
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ] {
            assert_eq!(excluded(pattern, path), want, "{pattern:?} on {path:?}");
        }
    }

    #[test]
    fn last_match_wins_and_exceptions_take_files_back() {
        let ignore = "# comment\n  *.md  \n!README.md\nsecret/\n!secret/keep\n/build\n**/*.o\n";
        let ignore = DockerIgnore::parse(ignore).unwrap();
        assert!(ignore.is_excluded("notes.md"));
        assert!(!ignore.is_excluded("README.md"));
        assert!(
            !ignore.is_excluded("docs/notes.md"),
            "`*` does not cross `/`"
        );
        assert!(
            ignore.is_excluded("secret/key"),
            "a matching directory hides its files"
        );
        assert!(!ignore.is_excluded("secret/keep"));
        assert!(ignore.is_excluded("build/out/x"), "leading `/` dropped");
        assert!(ignore.is_excluded("a/b/c.o"));
        assert!(!ignore.is_excluded("."));
        assert!(ignore.has_exceptions());
        assert_eq!(
            ignore.excluding_pattern("secret/key").as_deref(),
            Some("secret")
        );
        // A later inclusion excludes again.
        assert!(excluded("a\n!a/b\na/b/c", "a/b/c"));
        assert!(!excluded("a\n!a/b\na/b/c", "a/b/d"));
        // `# x` after spaces is a pattern, not a comment (ReadAll checks the raw line).
        assert!(excluded("  #x", "#x"));
        // BOM on the first line.
        assert!(excluded("\u{feff}foo", "foo"));
    }

    #[test]
    fn glob_match_is_go_filepath_match() {
        for (pattern, name, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abe", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a/b", false),
            ("arr[[]0].txt", "arr[0].txt", true),
        ] {
            assert_eq!(glob_match(pattern, name).unwrap(), want, "{pattern} {name}");
        }
        assert!(glob_match("[", "a").is_err());
        assert!(has_wildcards("a/b*") && has_wildcards("x[") && !has_wildcards("a\\*b"));
    }

    #[test]
    fn malformed_patterns_are_errors_naming_the_pattern() {
        for bad in ["[", "a[", "!", "a[^"] {
            let e = DockerIgnore::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad.trim()), "{e}");
        }
    }

    #[test]
    fn the_dockerfile_own_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let dockerfile = dir.path().join("sub/app.Dockerfile");
        let ignore = DockerIgnore::load(dir.path(), &dockerfile).unwrap();
        assert!(ignore.is_excluded("a") && !ignore.is_excluded("b"));
        std::fs::write(dir.path().join("sub/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let ignore = DockerIgnore::load(dir.path(), &dockerfile).unwrap();
        assert!(!ignore.is_excluded("a") && ignore.is_excluded("b"));
        assert!(ignore
            .source()
            .unwrap()
            .ends_with("app.Dockerfile.dockerignore"));
    }
}
