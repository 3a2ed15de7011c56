//! BuildKit's shell-word lexer (frontend/dockerfile/shell/lex.go), re-written from its documented
//! behaviour and its test vectors: quotes, the escape character, `$V`, `${V}`, `${V:-w}`,
//! `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?m}`, `${V?m}`; an unset variable expands to "".
//!
//! The pattern forms that BuildKit's lexer also knows (`${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`,
//! `${V/p/r}`, `${V//p/r}`; the Dockerfile reference still calls them pre-release) are refused
//! with [`LexError::PatternRefused`]: they need a shell-pattern matcher rcross does not have yet.

use std::fmt;

/// Variables in effect for one instruction: one snapshot, in the order they were set; setting a
/// name again replaces its value in place (BuildKit's `AddOrReplace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    entries: Vec<(String, String)>,
}

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    /// The value of `name`, `None` when unset (an empty value is set).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((name.to_string(), value.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(k, _)| k != name);
    }

    /// `(name, value)` in the order the names were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `NAME=value` strings, as an image config's `Env` holds them.
    pub fn to_env_strings(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// From `NAME=value` strings (a string without `=` sets an empty value).
    pub fn from_env_strings<S: AsRef<str>>(env: &[S]) -> Vars {
        let mut vars = Vars::new();
        for e in env {
            let (k, v) = e.as_ref().split_once('=').unwrap_or((e.as_ref(), ""));
            vars.set(k, v);
        }
        vars
    }
}

/// Why a word could not be expanded. Messages follow BuildKit's where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    UnterminatedSingleQuote,
    UnterminatedDoubleQuote,
    /// End of the word while looking for this character.
    Unterminated(char),
    MissingBrace,
    BadSubstitution,
    UnsupportedModifier(String),
    /// `${V?message}` / `${V:?message}` with V unset (or empty).
    Required {
        name: String,
        message: String,
    },
    /// A pattern form (`${V#p}`, `${V%p}`, `${V/p/r}`…) that rcross refuses.
    PatternRefused(String),
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnterminatedSingleQuote => {
                f.write_str("unexpected end of statement while looking for matching single-quote")
            }
            LexError::UnterminatedDoubleQuote => {
                f.write_str("unexpected end of statement while looking for matching double-quote")
            }
            LexError::Unterminated(c) => {
                write!(
                    f,
                    "unexpected end of statement while looking for matching {c}"
                )
            }
            LexError::MissingBrace => f.write_str("syntax error: missing '}'"),
            LexError::BadSubstitution => f.write_str("syntax error: bad substitution"),
            LexError::UnsupportedModifier(m) => {
                write!(f, "unsupported modifier ({m}) in substitution")
            }
            LexError::Required { name, message } => write!(f, "{name}: {message}"),
            LexError::PatternRefused(form) => write!(
                f,
                "the pattern substitution {form} is not supported by rcross (only $V, ${{V}}, \
                 ${{V:-w}}, ${{V-w}}, ${{V:+w}}, ${{V+w}}, ${{V:?m}}, ${{V?m}}); compute the value \
                 in a RUN step instead"
            ),
        }
    }
}

impl std::error::Error for LexError {}

/// A lexer configuration: the escape character of the Dockerfile, and BuildKit's switches.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result (BuildKit's `RawQuotes`).
    pub raw_quotes: bool,
    /// Leave `$V` of an unset V as written (BuildKit's `SkipUnsetEnv`).
    pub skip_unset: bool,
    /// Keep escape characters in the result (BuildKit's `RawEscapes`).
    pub raw_escapes: bool,
    /// Quotes are ordinary characters (BuildKit's `SkipProcessQuotes`, for heredoc bodies).
    pub skip_quotes: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            skip_unset: false,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    /// The word with quotes removed and variables expanded; spaces between words are kept
    /// (BuildKit's `ProcessWord`).
    pub fn expand_word(&self, word: &str, vars: &Vars) -> Result<String, LexError> {
        let mut scan = Scan::new(self, word, vars);
        Ok(scan.until(None, self.raw_escapes)?.0)
    }

    /// The words of `word` after expansion, split at unquoted spaces (BuildKit's
    /// `ProcessWords`).
    pub fn expand_words(&self, word: &str, vars: &Vars) -> Result<Vec<String>, LexError> {
        let mut scan = Scan::new(self, word, vars);
        Ok(scan.until(None, self.raw_escapes)?.1)
    }
}

/// [`Lexer::expand_word`] with the default switches.
pub fn expand_word(word: &str, vars: &Vars, escape: char) -> Result<String, LexError> {
    Lexer::new(escape).expand_word(word, vars)
}

/// [`Lexer::expand_words`] with the default switches.
pub fn expand_words(word: &str, vars: &Vars, escape: char) -> Result<Vec<String>, LexError> {
    Lexer::new(escape).expand_words(word, vars)
}

struct Scan<'a> {
    lexer: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    vars: &'a Vars,
    raw_escapes: bool,
}

#[derive(Default)]
struct WordSplitter {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl<'a> Scan<'a> {
    fn new(lexer: &'a Lexer, word: &str, vars: &'a Vars) -> Scan<'a> {
        Scan {
            lexer,
            chars: word.chars().collect(),
            pos: 0,
            vars,
            raw_escapes: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process up to `stop` (consumed) or the end: (the word, its words).
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' if !self.lexer.skip_quotes => {
                    let tmp = self.single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if !self.lexer.skip_quotes => {
                    let tmp = self.double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes anything, except the end of the word.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(c) => Err(LexError::Unterminated(c)),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(LexError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(LexError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the end of the word is dropped.
                            None => continue,
                            // Only these can be escaped inside double quotes.
                            Some(c) if c == '"' || c == '$' || c == self.lexer.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(LexError::MissingBrace),
            Some('{' | '}' | ':') => return Err(LexError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let first = self.next();
        match first {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => self.modifier(&name, first),
            Some('/') => Err(LexError::PatternRefused(format!("${{{name}/…}}"))),
            other => Err(LexError::UnsupportedModifier(
                other.map(String::from).unwrap_or_default(),
            )),
        }
    }

    /// `${name<op>word}` after `<op>`'s first character (`first`).
    fn modifier(&mut self, name: &str, first: Option<char>) -> Result<String, LexError> {
        let mut op = first;
        let mut spelled: String = first.into_iter().collect();
        let null_is_unset = first == Some(':');
        if null_is_unset {
            op = self.next();
            spelled.extend(op);
        }
        let pattern = matches!(op, Some('#' | '%'));
        if null_is_unset && pattern {
            return Err(LexError::UnsupportedModifier(spelled));
        }
        let word = match self.until(Some('}'), pattern) {
            Ok((w, _)) => w,
            Err(e) => {
                return Err(if self.peek().is_none() {
                    LexError::MissingBrace
                } else {
                    e
                })
            }
        };
        let value = self.lookup(name);
        if self.lexer.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        let empty_or_unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if empty_or_unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if empty_or_unset { String::new() } else { word }),
            Some('?') => match value {
                None => Err(LexError::Required {
                    name: name.to_string(),
                    message: if word.is_empty() {
                        "is not allowed to be unset".to_string()
                    } else {
                        word
                    },
                }),
                Some(v) if null_is_unset && v.is_empty() => Err(LexError::Required {
                    name: name.to_string(),
                    message: if word.is_empty() {
                        "is not allowed to be empty".to_string()
                    } else {
                        word
                    },
                }),
                Some(v) => Ok(v),
            },
            Some('#' | '%') => Err(LexError::PatternRefused(format!("${{{name}{spelled}…}}"))),
            _ => Err(LexError::UnsupportedModifier(spelled)),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (a positional parameter);
    /// or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// `<<` and the spaces after it stay one word (the heredoc marker).
    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            self.next();
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's own vectors (frontend/dockerfile/shell/envVarTest at moby/buildkit 73ed682),
    /// run through `expand_word` with the environment BuildKit's test uses.
    #[test]
    fn buildkit_env_var_vectors() {
        let text = include_str!("testdata/envVarTest");
        let vars = Vars::from_env_strings(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
        let (mut passed, mut failures) = (0, Vec::new());
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts.len(), 3, "line {}", n + 1);
            let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
            if platform == "W" {
                continue;
            }
            let got = expand_word(source, &vars, '\\');
            let ok = match (&got, expected) {
                (Err(_), "error") => true,
                (Ok(w), e) => w == e,
                _ => false,
            };
            if ok {
                passed += 1;
            } else {
                failures.push(format!(
                    "line {}: {source:?} → {got:?}, want {expected:?}",
                    n + 1
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(passed, 228, "vector count changed");
    }

    /// BuildKit's word-splitting vectors (frontend/dockerfile/shell/wordsTest), through
    /// `expand_words`. (BuildKit's test reads the file a second time with RawQuotes and
    /// SkipUnsetEnv, but from the exhausted reader, so only this mode is ever checked there.)
    #[test]
    fn buildkit_words_vectors() {
        let text = include_str!("testdata/wordsTest");
        let mut env: Vec<String> = Vec::new();
        let mut passed = 0;
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("ENV ") {
                env.push(rest.trim_start_matches(' ').to_string());
                continue;
            }
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts.len(), 2, "line {}", n + 1);
            let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
            let got = expand_words(parts[0].trim(), &Vars::from_env_strings(&env), '\\')
                .unwrap_or_else(|_| vec!["error".to_string()]);
            assert_eq!(got, expected, "line {}: {:?}", n + 1, parts[0]);
            passed += 1;
        }
        assert_eq!(passed, 24, "vector count changed");
    }

    #[test]
    fn mandatory_variables_name_the_message() {
        let set = Vars::from_env_strings(&["VAR=plain", "ARG=x"]);
        let empty = Vars::from_env_strings(&["VAR=", "ARG=x"]);
        let unset = Vars::from_env_strings(&["ARG=x"]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        assert_eq!(expand_word(no_empty, &set, '\\').unwrap(), "plain");
        for vars in [&empty, &unset] {
            let e = expand_word(no_empty, vars, '\\').unwrap_err();
            assert!(e.to_string().contains("message herex"), "{e}");
        }
        assert_eq!(expand_word(no_unset, &set, '\\').unwrap(), "plain");
        assert_eq!(expand_word(no_unset, &empty, '\\').unwrap(), "");
        let e = expand_word(no_unset, &unset, '\\').unwrap_err();
        assert!(e.to_string().contains("message herex"), "{e}");
    }

    #[test]
    fn pattern_forms_are_refused_clearly() {
        let vars = Vars::from_env_strings(&["V=abc"]);
        for w in [
            "${V#a}",
            "${V##a}",
            "${V%c}",
            "${V%%c}",
            "${V/a/b}",
            "${V//a/b}",
        ] {
            let e = expand_word(w, &vars, '\\').unwrap_err();
            assert!(matches!(e, LexError::PatternRefused(_)), "{w}: {e:?}");
            assert!(e.to_string().contains("not supported by rcross"), "{e}");
        }
    }

    #[test]
    fn backtick_escape() {
        let vars = Vars::from_env_strings(&["A=1"]);
        assert_eq!(expand_word("`$A$A", &vars, '`').unwrap(), "$A1");
        assert_eq!(expand_word("c:\\dir", &vars, '`').unwrap(), "c:\\dir");
    }
}
