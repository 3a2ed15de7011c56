//! rcross's Dockerfile syntax tree, read with the `parse-dockerfile` crate (kept behind this
//! module so it can be replaced).
//!
//! Before the crate sees the text, rcross does two things the way BuildKit's parser does them:
//! - it joins each instruction's continuation lines into one line (comment and empty lines inside
//!   a continuation are dropped) and leaves the other lines empty, so line numbers stay;
//! - it finds heredoc markers in the joined line of RUN/COPY/ADD (also under ONBUILD) and reads
//!   their bodies itself. The crate misses a marker on a continued line (`RUN a \` ⏎ `&& cat <<EOF`)
//!   and one that does not start the RUN arguments (`RUN python3 <<EOF`); BuildKit finds both.
//!   Each marker is replaced by a token for the crate and restored afterwards.

use std::collections::BTreeMap;

use parse_dockerfile as pd;

use super::error::{DockerfileError, DockerfileErrorKind};
use super::lex::{Lexer, Vars};

/// A parsed Dockerfile: its directives and instructions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxTree {
    /// The escape character (`\` unless `# escape=` says `` ` ``).
    pub escape: char,
    /// The `# syntax=` frontend, when given (it is one rcross accepts).
    pub syntax: Option<String>,
    pub instructions: Vec<SyntaxInstruction>,
}

/// One instruction as written (nothing expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxInstruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword (`RUN`).
    pub keyword: String,
    /// `--name[=value]` flags, in order.
    pub flags: Vec<SyntaxFlag>,
    pub args: SyntaxArgs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxFlag {
    pub name: String,
    pub value: Option<String>,
}

/// The arguments of an instruction, by shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxArgs {
    From {
        image: String,
        stage_name: Option<String>,
    },
    /// ARG, ENV, LABEL, USER, WORKDIR, STOPSIGNAL, MAINTAINER: the joined text.
    Text(String),
    /// EXPOSE, and VOLUME in its space-separated form.
    Words(Vec<String>),
    /// SHELL, and VOLUME in its JSON form.
    Json(Vec<String>),
    /// RUN, CMD, ENTRYPOINT.
    Command(SyntaxCommand),
    /// `HEALTHCHECK CMD …` (`Some`) or `HEALTHCHECK NONE` (`None`).
    Healthcheck(Option<SyntaxCommand>),
    /// COPY, ADD.
    Files {
        sources: Vec<SyntaxSource>,
        dest: String,
    },
    /// ONBUILD: the trigger's text (joined, heredoc markers as written) and its heredocs.
    Onbuild {
        trigger: String,
        heredocs: Vec<SyntaxHeredoc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxCommand {
    /// JSON array form.
    Exec(Vec<String>),
    /// Shell form: the joined command line (heredoc markers as written) and the heredocs it
    /// names, in order.
    Shell {
        text: String,
        heredocs: Vec<SyntaxHeredoc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxSource {
    Path(String),
    Heredoc(SyntaxHeredoc),
}

/// A here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxHeredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The marker as written (`<<-"EOF"`).
    pub marker: String,
    /// Whether the body is expanded (BuildKit: the delimiter is not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
    /// File descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
    /// The body, every line ending in `\n` (tabs already stripped for `<<-`).
    pub content: String,
}

/// The directives at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
}

fn syntax_error(path: &str, line: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError {
        kind: DockerfileErrorKind::Syntax,
        path: path.to_string(),
        line,
        instruction: String::new(),
        message: message.into(),
    }
}

fn directive_error(path: &str, line: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError {
        kind: DockerfileErrorKind::Directive,
        ..syntax_error(path, line, message)
    }
}

/// `# key=value` at the top of the file, before any other line (BuildKit: keys case-insensitive,
/// each at most once; an unknown key is ignored; the first other line ends them).
pub fn directives(path: &str, text: &str) -> Result<Directives, DockerfileError> {
    let mut escape = None;
    let mut syntax = None;
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = directive_line(line) else {
            break;
        };
        let line_no = n + 1;
        match key.to_ascii_lowercase().as_str() {
            "escape" => {
                if escape.is_some() {
                    return Err(directive_error(
                        path,
                        line_no,
                        "only one escape parser directive can be used",
                    ));
                }
                escape = Some(match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(directive_error(
                            path,
                            line_no,
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ))
                    }
                });
            }
            "syntax" => {
                if syntax.is_some() {
                    return Err(directive_error(
                        path,
                        line_no,
                        "only one syntax parser directive can be used",
                    ));
                }
                check_frontend(value).map_err(|m| directive_error(path, line_no, m))?;
                syntax = Some(value.to_string());
            }
            _ => {}
        }
    }
    Ok(Directives {
        escape: escape.unwrap_or('\\'),
        syntax,
    })
}

/// `# key = value` → (key, value).
fn directive_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_end_matches('\r').strip_prefix('#')?.trim_start();
    let key_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_end];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_end..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

/// The frontends rcross implements itself: `[docker.io/]docker/dockerfile[:1…][@sha256:…]`.
pub fn check_frontend(reference: &str) -> Result<(), String> {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let refuse = |why: &str| {
        Err(format!(
            "# syntax={reference}: {why}; rcross builds Dockerfiles with its own implementation \
             of the docker/dockerfile:1 frontend: write `# syntax=docker/dockerfile:1` or remove \
             the line"
        ))
    };
    if name != "docker/dockerfile" {
        return refuse("rcross cannot run other frontend images");
    }
    if let Some(d) = digest {
        let ok = d
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return refuse("the digest is not sha256:<64 hex digits>");
        }
    }
    if let Some(t) = tag {
        if t.contains("labs") {
            return refuse("the labs channel's experimental features are not implemented");
        }
        let version = t.split('-').next().unwrap_or("");
        let mut parts = version.split('.');
        let major_is_1 = parts.next() == Some("1");
        let rest_numeric = parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(major_is_1 && rest_numeric && (version.len() == t.len())) {
            return refuse("only version 1 of the frontend is implemented");
        }
    }
    Ok(())
}

/// The text with instructions joined onto their first line and heredoc markers replaced by
/// tokens; and the heredocs by token.
struct Prepared {
    text: String,
    heredocs: BTreeMap<String, SyntaxHeredoc>,
}

const TOKEN_PREFIX: &str = "@@rcross-heredoc-";

fn token(n: usize) -> String {
    format!("{TOKEN_PREFIX}{n}@@")
}

/// Whether a line ends with a continuation (BuildKit: the escape character, then only spaces
/// or tabs; not when the escape itself is escaped); the line without it.
fn continuation(line: &str, escape: char) -> (bool, &str) {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (false, line);
    };
    if before.ends_with(escape) {
        return (false, line);
    }
    (true, before)
}

fn is_comment_or_empty(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Whether the joined instruction may carry heredocs (RUN, COPY, ADD, also after ONBUILD), and
/// where its arguments begin.
fn heredoc_args_start(joined: &str) -> Option<usize> {
    let mut rest = joined.trim_start();
    let mut offset = joined.len() - rest.len();
    for _ in 0..2 {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = rest[..end].to_ascii_uppercase();
        match word.as_str() {
            "RUN" | "COPY" | "ADD" => {
                let args = &rest[end..];
                if args.trim_start().starts_with('[') {
                    return None; // exec/JSON form: no heredocs
                }
                return Some(offset + end);
            }
            "ONBUILD" => {
                let next = rest[end..].trim_start();
                offset += rest.len() - next.len();
                rest = next;
            }
            _ => return None,
        }
    }
    None
}

/// A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<EOF`, `<< EOF`) → (fd, chomp, name, expand).
fn heredoc_marker(word: &str) -> Option<(u32, bool, String, bool)> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse().ok()?
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let plain = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = plain.expand_words(rest, &Vars::new()).ok()?;
    let [name] = words.as_slice() else {
        return None;
    };
    let raw = Lexer {
        raw_quotes: true,
        ..plain
    };
    let raw_words = raw.expand_words(rest, &Vars::new()).ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw_words.first().map(|r| quotes(r)) == Some(quotes(name));
    Some((fd, chomp, name.clone(), expand))
}

fn prepare(path: &str, text: &str, escape: char) -> Result<Prepared, DockerfileError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut heredocs = BTreeMap::new();
    let mut i = 0;
    // Directive lines are comments to everything after `directives`.
    while i < lines.len() {
        let line = lines[i];
        if is_comment_or_empty(line) {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let start = i;
        let (mut cont, first) = continuation(line, escape);
        let mut joined = first.to_string();
        i += 1;
        while cont && i < lines.len() {
            let l = lines[i];
            i += 1;
            if is_comment_or_empty(l) {
                continue;
            }
            let (c, part) = continuation(l, escape);
            cont = c;
            joined.push_str(part);
        }
        if let Some(args_start) = heredoc_args_start(&joined) {
            let lexer = Lexer {
                raw_quotes: true,
                raw_escapes: true,
                skip_unset: true,
                ..Lexer::new('\\')
            };
            let words = lexer
                .expand_words(&joined[args_start..], &Vars::new())
                .unwrap_or_default();
            let mut search_from = args_start;
            let mut rewritten = joined[..args_start].to_string();
            for word in words {
                let Some((fd, chomp, name, expand)) = heredoc_marker(&word) else {
                    continue;
                };
                let Some(at) = joined[search_from..].find(&word).map(|p| p + search_from) else {
                    continue;
                };
                let (content, next) = read_heredoc(&lines, i, &name, chomp).ok_or_else(|| {
                    syntax_error(
                        path,
                        start + 1,
                        format!("the heredoc {word} has no line {name:?} that ends it"),
                    )
                })?;
                i = next;
                let t = token(heredocs.len());
                rewritten.push_str(&joined[search_from..at]);
                rewritten.push_str(&t);
                search_from = at + word.len();
                heredocs.insert(
                    t,
                    SyntaxHeredoc {
                        name,
                        marker: word,
                        expand,
                        chomp,
                        fd,
                        content,
                    },
                );
            }
            rewritten.push_str(&joined[search_from..]);
            joined = rewritten;
        }
        out.push(joined);
        out.extend(std::iter::repeat_n(String::new(), i - start - 1));
    }
    Ok(Prepared {
        text: out.join("\n"),
        heredocs,
    })
}

/// The body of a heredoc that starts at `lines[from]` and ends at the line `name`; the index
/// after that line.
fn read_heredoc(lines: &[&str], from: usize, name: &str, chomp: bool) -> Option<(String, usize)> {
    let mut content = String::new();
    for (k, line) in lines.iter().enumerate().skip(from) {
        let line = line.trim_end_matches('\r');
        let line = if chomp {
            line.trim_start_matches('\t')
        } else {
            line
        };
        if line == name {
            return Some((content, k + 1));
        }
        content.push_str(line);
        content.push('\n');
    }
    None
}

/// Parse a Dockerfile. `path` is only used in error messages.
pub fn parse(path: &str, text: &str) -> Result<SyntaxTree, DockerfileError> {
    let directives = directives(path, text)?;
    let prepared = prepare(path, text, directives.escape)?;
    let file = pd::parse(&prepared.text)
        .map_err(|e| syntax_error(path, e.line(), strip_position(&e.to_string())))?;
    let line_of = LineIndex::new(&prepared.text);
    let mut instructions = Vec::with_capacity(file.instructions.len());
    for instruction in &file.instructions {
        instructions.push(convert(instruction, &prepared, &line_of, path)?);
    }
    Ok(SyntaxTree {
        escape: directives.escape,
        syntax: directives.syntax,
        instructions,
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(p) => message[..p].to_string(),
        None => message.to_string(),
    }
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

fn restore(text: &str, prepared: &Prepared) -> (String, Vec<SyntaxHeredoc>) {
    let mut text = text.to_string();
    let mut docs = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(TOKEN_PREFIX).map(|a| a + from) {
        let after = at + TOKEN_PREFIX.len();
        let Some(end) = text[after..].find("@@").map(|e| after + e + 2) else {
            break;
        };
        let Some(doc) = prepared.heredocs.get(&text[at..end]) else {
            from = after;
            continue;
        };
        text.replace_range(at..end, &doc.marker);
        from = at + doc.marker.len();
        docs.push(doc.clone());
    }
    (text, docs)
}

fn flags(flags: &[pd::Flag<'_>]) -> Vec<SyntaxFlag> {
    flags
        .iter()
        .map(|f| SyntaxFlag {
            name: f.name.value.to_string(),
            value: f.value.as_ref().map(|v| v.value.to_string()),
        })
        .collect()
}

fn command(c: &pd::Command<'_>, prepared: &Prepared) -> SyntaxCommand {
    match c {
        pd::Command::Exec(args) => {
            SyntaxCommand::Exec(args.value.iter().map(|a| a.value.to_string()).collect())
        }
        pd::Command::Shell(s) => {
            let (text, heredocs) = restore(s.value, prepared);
            SyntaxCommand::Shell { text, heredocs }
        }
        _ => SyntaxCommand::Exec(Vec::new()),
    }
}

fn files<'a>(
    src: &[pd::Source<'a>],
    dest: &pd::UnescapedString<'a>,
    prepared: &Prepared,
) -> SyntaxArgs {
    let sources = src
        .iter()
        .map(|s| match s {
            pd::Source::Path(p) => match prepared.heredocs.get(p.value.as_ref()) {
                Some(doc) => SyntaxSource::Heredoc(doc.clone()),
                None => SyntaxSource::Path(restore(&p.value, prepared).0),
            },
            pd::Source::HereDoc(h) => SyntaxSource::Heredoc(SyntaxHeredoc {
                name: String::new(),
                marker: String::new(),
                expand: h.expand,
                chomp: false,
                fd: 0,
                content: h.value.to_string(),
            }),
            _ => SyntaxSource::Path(String::new()),
        })
        .collect();
    SyntaxArgs::Files {
        sources,
        dest: dest.value.to_string(),
    }
}

fn text(s: &pd::UnescapedString<'_>) -> String {
    s.value.to_string()
}

fn convert(
    instruction: &pd::Instruction<'_>,
    prepared: &Prepared,
    line_of: &LineIndex,
    path: &str,
) -> Result<SyntaxInstruction, DockerfileError> {
    let Some((keyword, at, flags)) = head(instruction) else {
        return Err(syntax_error(
            path,
            0,
            "an instruction rcross does not know (parse-dockerfile is newer than rcross)",
        ));
    };
    Ok(SyntaxInstruction {
        line: line_of.line(at.span.start),
        keyword: keyword.to_string(),
        flags,
        args: args(instruction, prepared, line_of),
    })
}

/// The keyword, where it is, and the flags.
fn head<'i>(
    instruction: &'i pd::Instruction<'_>,
) -> Option<(&'static str, &'i pd::Keyword, Vec<SyntaxFlag>)> {
    use pd::Instruction as I;
    Some(match instruction {
        I::Add(i) => ("ADD", &i.add, flags(&i.options)),
        I::Copy(i) => ("COPY", &i.copy, flags(&i.options)),
        I::Run(i) => ("RUN", &i.run, flags(&i.options)),
        I::From(i) => ("FROM", &i.from, flags(&i.options)),
        I::Healthcheck(i) => ("HEALTHCHECK", &i.healthcheck, flags(&i.options)),
        I::Arg(i) => ("ARG", &i.arg, vec![]),
        I::Env(i) => ("ENV", &i.env, vec![]),
        I::Label(i) => ("LABEL", &i.label, vec![]),
        I::User(i) => ("USER", &i.user, vec![]),
        I::Workdir(i) => ("WORKDIR", &i.workdir, vec![]),
        I::Stopsignal(i) => ("STOPSIGNAL", &i.stopsignal, vec![]),
        I::Maintainer(i) => ("MAINTAINER", &i.maintainer, vec![]),
        I::Cmd(i) => ("CMD", &i.cmd, vec![]),
        I::Entrypoint(i) => ("ENTRYPOINT", &i.entrypoint, vec![]),
        I::Expose(i) => ("EXPOSE", &i.expose, vec![]),
        I::Volume(i) => ("VOLUME", &i.volume, vec![]),
        I::Shell(i) => ("SHELL", &i.shell, vec![]),
        I::Onbuild(i) => ("ONBUILD", &i.onbuild, vec![]),
        _ => return None,
    })
}

/// The arguments, by shape.
fn args(instruction: &pd::Instruction<'_>, prepared: &Prepared, line_of: &LineIndex) -> SyntaxArgs {
    use pd::Instruction as I;
    match instruction {
        I::Add(i) => files(&i.src, &i.dest, prepared),
        I::Copy(i) => files(&i.src, &i.dest, prepared),
        I::Arg(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::Env(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::Label(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::User(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::Workdir(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::Stopsignal(i) => SyntaxArgs::Text(text(&i.arguments)),
        I::Maintainer(i) => SyntaxArgs::Text(text(&i.name)),
        I::Cmd(i) => SyntaxArgs::Command(command(&i.arguments, prepared)),
        I::Entrypoint(i) => SyntaxArgs::Command(command(&i.arguments, prepared)),
        I::Run(i) => SyntaxArgs::Command(command(&i.arguments, prepared)),
        I::Expose(i) => SyntaxArgs::Words(i.arguments.iter().map(text).collect()),
        I::Volume(i) => match &i.arguments {
            pd::JsonOrStringArray::Json(a) => SyntaxArgs::Json(a.value.iter().map(text).collect()),
            pd::JsonOrStringArray::String(a) => SyntaxArgs::Words(a.iter().map(text).collect()),
        },
        I::Shell(i) => SyntaxArgs::Json(i.arguments.iter().map(text).collect()),
        I::From(i) => SyntaxArgs::From {
            image: text(&i.image),
            stage_name: i.as_.as_ref().map(|(_, n)| text(n)),
        },
        I::Healthcheck(i) => match &i.arguments {
            pd::HealthcheckArguments::Cmd { arguments, .. } => {
                SyntaxArgs::Healthcheck(Some(command(arguments, prepared)))
            }
            _ => SyntaxArgs::Healthcheck(None),
        },
        I::Onbuild(i) => {
            // The trigger's text: the rest of the (joined) line after the keyword.
            let line_start = line_of.starts[line_of.line(i.onbuild.span.start) - 1];
            let line_end = prepared.text[line_start..]
                .find('\n')
                .map_or(prepared.text.len(), |e| e + line_start);
            let after = &prepared.text[i.onbuild.span.end.min(line_end)..line_end];
            let (trigger, heredocs) = restore(after.trim(), prepared);
            SyntaxArgs::Onbuild { trigger, heredocs }
        }
        _ => SyntaxArgs::Text(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> SyntaxTree {
        parse("Dockerfile", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn shell(i: &SyntaxInstruction) -> (&str, &[SyntaxHeredoc]) {
        match &i.args {
            SyntaxArgs::Command(SyntaxCommand::Shell { text, heredocs }) => (text, heredocs),
            other => panic!("not a shell command: {other:?}"),
        }
    }

    #[test]
    fn heredoc_marker_on_a_continued_line() {
        let t = parse_ok("FROM a\nRUN a \\\n  && cat <<EOF\nhi $X\nEOF\nENV B=1\n");
        let (text, docs) = shell(&t.instructions[1]);
        assert_eq!(text, "a   && cat <<EOF");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].content, "hi $X\n");
        assert!(docs[0].expand);
        assert_eq!(t.instructions[1].line, 2);
        assert_eq!(
            t.instructions[2].line, 6,
            "line numbers after the heredoc stay"
        );
    }

    #[test]
    fn heredocs_anywhere_in_run_and_several_of_them() {
        let t = parse_ok(
            "FROM a\nRUN python3 <<EOF\nprint(1)\nEOF\nRUN <<A cat >x && <<-\"B\" cat\n1\nA\n\t2\n\tB\n",
        );
        let (text, docs) = shell(&t.instructions[1]);
        assert_eq!(text, "python3 <<EOF");
        assert_eq!(docs[0].content, "print(1)\n");
        let (text, docs) = shell(&t.instructions[2]);
        assert_eq!(text, "<<A cat >x && <<-\"B\" cat");
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (docs[1].content.as_str(), docs[1].expand, docs[1].chomp),
            ("2\n", false, true)
        );
    }

    /// BuildKit allows spaces between `<<` and the delimiter since moby/buildkit 0b77373ab
    /// ("dockerfile: allow whitespace in heredocs", 2025-05); older notes say otherwise.
    #[test]
    fn heredoc_marker_with_a_space() {
        let t = parse_ok("FROM a\nRUN cat << EOF\nx\nEOF\n");
        let (text, docs) = shell(&t.instructions[1]);
        assert_eq!((text, docs[0].name.as_str()), ("cat << EOF", "EOF"));
        // `<<<` is a here-string, not a heredoc.
        let t = parse_ok("FROM a\nRUN cat <<<EOF\n");
        assert!(shell(&t.instructions[1]).1.is_empty());
    }

    #[test]
    fn copy_heredoc_source() {
        let t = parse_ok("FROM a\nCOPY <<EOF <<'RAW' /dst/\n$A\nEOF\n$B\nRAW\n");
        let SyntaxArgs::Files { sources, dest } = &t.instructions[1].args else {
            panic!()
        };
        assert_eq!(dest, "/dst/");
        let SyntaxSource::Heredoc(a) = &sources[0] else {
            panic!()
        };
        let SyntaxSource::Heredoc(b) = &sources[1] else {
            panic!()
        };
        assert_eq!(
            (a.name.as_str(), a.expand, b.name.as_str(), b.expand),
            ("EOF", true, "RAW", false)
        );
    }

    #[test]
    fn continuation_drops_comment_and_empty_lines() {
        let t = parse_ok("FROM a\nRUN echo a \\\n  # c\n\n  && echo b\nUSER x\n");
        assert_eq!(shell(&t.instructions[1]).0, "echo a   && echo b");
        assert_eq!(t.instructions[2].line, 6);
    }

    #[test]
    fn unterminated_heredoc_names_the_line() {
        let e = parse("Df", "FROM a\n\nRUN cat <<EOF\nx\n").unwrap_err();
        assert_eq!((e.line, e.kind), (3, DockerfileErrorKind::Syntax));
        assert!(e.to_string().starts_with("Df:3: "), "{e}");
    }

    #[test]
    fn syntax_directive_accepts_dockerfile_1_only() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker.io/docker/dockerfile:1.4.3",
            "docker/dockerfile",
            "docker/dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
        ] {
            assert!(check_frontend(ok).is_ok(), "{ok}");
        }
        for bad in [
            "docker/dockerfile:1-labs",
            "docker/dockerfile:1.7-labs",
            "docker/dockerfile:2",
            "docker/dockerfile:master",
            "tonistiigi/dockerfile:x",
            "example.com/docker/dockerfile:1",
            "docker/dockerfile@sha256:1234",
        ] {
            let e = check_frontend(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("docker/dockerfile:1"), "{e}");
        }
        let e = parse("Df", "# syntax=foo/bar\nFROM a\n").unwrap_err();
        assert_eq!((e.kind, e.line), (DockerfileErrorKind::Directive, 1));
    }

    #[test]
    fn escape_directive() {
        let t = parse_ok("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo x\n");
        assert_eq!(t.escape, '`');
        assert_eq!(shell(&t.instructions[1]).0, "dir c:\\   && echo x");
        assert!(parse("Df", "# escape=x\nFROM a\n").is_err());
        // Not at the top: a comment.
        assert_eq!(parse_ok("FROM a\n# escape=`\n").escape, '\\');
    }
}
