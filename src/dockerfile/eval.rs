//! From the syntax tree to the build graph: ARG scoping, stage selection, and each
//! instruction's arguments expanded exactly where BuildKit expands them (dockerfile2llb).
//!
//! Expanded (BuildKit's `Expand` methods and dispatchers): FROM image and `--platform` (global
//! ARGs only), ARG defaults, ENV and LABEL keys and values, EXPOSE (then split into words),
//! VOLUME, USER, WORKDIR, STOPSIGNAL, COPY/ADD sources, destination, `--chown`, `--chmod`,
//! COPY/ADD heredoc bodies with an unquoted delimiter (quotes left as they are), `RUN --mount`
//! option values. Not expanded: RUN, CMD, ENTRYPOINT, HEALTHCHECK and SHELL text (the shell
//! expands at run time; exec form never), ONBUILD triggers (kept as text), MAINTAINER, ARG names,
//! `RUN --network`; `COPY --from` and mount `from` must not contain a variable (BuildKit's
//! errors).

use std::collections::BTreeSet;

use super::error::{DockerfileError, DockerfileErrorKind, Place};
use super::graph::*;
use super::lex::{Lexer, Vars};
use super::syntax::{
    SyntaxArgs, SyntaxCommand, SyntaxFlag, SyntaxInstruction, SyntaxSource, SyntaxTree,
};
use super::{mounts, values};
use crate::image::platform::OciPlatform;
use crate::platform::Platform;

/// The automatic platform ARGs and their values for this build (BuildKit's `defaultArgs`):
/// variants as containerd normalises them (none for amd64 and arm64, `v7` for arm/v7).
pub fn platform_args(target: Platform, build: Platform) -> Vec<(&'static str, String)> {
    let t = OciPlatform::from(target).normalized();
    let b = OciPlatform::from(build).normalized();
    vec![
        ("BUILDPLATFORM", b.display()),
        ("BUILDOS", b.os.clone()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", t.display()),
        ("TARGETOS", t.os.clone()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone().unwrap_or_default()),
    ]
}

/// A stage's FROM line, evaluated.
struct StageHead<'t> {
    index: usize,
    name: Option<String>,
    line: usize,
    base: StageBase,
    platform: Option<Platform>,
    body: &'t [SyntaxInstruction],
}

struct Ctx<'a> {
    path: &'a str,
    escape: char,
    options: &'a BuildOptions,
    global: Vars,
}

impl Ctx<'_> {
    fn place<'p>(&'p self, i: &'p SyntaxInstruction) -> Place<'p> {
        Place {
            path: self.path,
            line: i.line,
            instruction: &i.keyword,
        }
    }

    fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }

    fn expand(&self, word: &str, vars: &Vars, p: &Place<'_>) -> Result<String, DockerfileError> {
        self.lexer()
            .expand_word(word, vars)
            .map_err(|e| p.error(DockerfileErrorKind::Expansion, format!("{word:?}: {e}")))
    }
}

pub fn evaluate(
    path: &str,
    tree: &SyntaxTree,
    options: &BuildOptions,
) -> Result<BuildGraph, DockerfileError> {
    let first_from = tree
        .instructions
        .iter()
        .position(|i| i.keyword == "FROM")
        .ok_or_else(|| DockerfileError {
            kind: DockerfileErrorKind::Syntax,
            path: path.to_string(),
            line: 0,
            instruction: String::new(),
            message: "no FROM instruction: a Dockerfile starts with FROM (after ARGs)".to_string(),
        })?;
    let mut ctx = Ctx {
        path,
        escape: tree.escape,
        options,
        global: Vars::new(),
    };
    for (k, v) in platform_args(options.target_platform, options.build_platform) {
        let v = options.build_args.get(k).cloned().unwrap_or(v);
        ctx.global.set(k, &v);
    }
    for i in &tree.instructions[..first_from] {
        if i.keyword != "ARG" {
            return Err(ctx
                .place(i)
                .invalid("only ARG may come before the first FROM (and comments and directives)"));
        }
        for (key, default) in arg_pairs(&ctx, i)? {
            let value = match (options.build_args.get(&key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(ctx.expand(&d, &ctx.global, &ctx.place(i))?),
                (None, None) => None,
            };
            if let Some(v) = value {
                ctx.global.set(&key, &v);
            }
        }
    }
    let heads = stage_heads(&ctx, &tree.instructions[first_from..])?;
    let target = target_index(&ctx, &heads)?;
    let reachable = reachable(&ctx, &heads, target)?;
    let mut stages: Vec<Stage> = Vec::new();
    for head in heads.iter().filter(|h| reachable.contains(&h.index)) {
        let stage = eval_stage(&ctx, head, &heads, &stages)?;
        stages.push(stage);
    }
    let target = stages.iter().position(|s| s.index == target).unwrap_or(0);
    Ok(BuildGraph {
        syntax: tree.syntax.clone(),
        stages,
        target,
    })
}

/// ARG's `name[=default]` words (not expanded: BuildKit expands only the default, when used).
fn arg_pairs(
    ctx: &Ctx<'_>,
    i: &SyntaxInstruction,
) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
    let SyntaxArgs::Text(text) = &i.args else {
        return Ok(vec![]);
    };
    let words = values::parse_words(text, ctx.escape);
    if words.is_empty() {
        return Err(ctx.place(i).invalid("ARG requires at least one argument"));
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(ctx
                .place(i)
                .invalid(format!("ARG names can not be blank: {w:?}"))),
            Some((k, v)) => Ok((k.to_string(), Some(v.to_string()))),
            None => Ok((w, None)),
        })
        .collect()
}

fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// `os/arch[/variant]` with containerd's normalisation, as a platform rcross knows.
fn parse_platform(s: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let oci = match parts.as_slice() {
        [os, arch] => OciPlatform::new(os, arch, None),
        [os, arch, variant] => OciPlatform::new(os, arch, Some(variant)),
        _ => return s.parse::<Platform>().map_err(|e| e.to_string()),
    };
    oci.to_platform().map_err(|e| e.to_string())
}

fn stage_heads<'t>(
    ctx: &Ctx<'_>,
    instructions: &'t [SyntaxInstruction],
) -> Result<Vec<StageHead<'t>>, DockerfileError> {
    let mut heads: Vec<StageHead<'t>> = Vec::new();
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    for (index, &at) in froms.iter().enumerate() {
        let i = &instructions[at];
        let end = froms.get(index + 1).copied().unwrap_or(instructions.len());
        let p = ctx.place(i);
        let SyntaxArgs::From { image, stage_name } = &i.args else {
            continue;
        };
        let name = match stage_name {
            Some(n) => {
                let lower = n.to_ascii_lowercase();
                if !is_valid_stage_name(&lower) {
                    return Err(p.invalid(format!(
                        "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                    )));
                }
                if heads.iter().any(|h| h.name.as_deref() == Some(&lower)) {
                    return Err(p.invalid(format!("duplicate stage name {lower:?}")));
                }
                Some(lower)
            }
            None => None,
        };
        let mut platform = None;
        for flag in &i.flags {
            match flag.name.as_str() {
                "platform" => {
                    let raw = flag.value.clone().unwrap_or_default();
                    let v = ctx.expand(&raw, &ctx.global, &p)?;
                    if v.is_empty() {
                        return Err(
                            p.invalid(format!("empty platform value from expression {raw}"))
                        );
                    }
                    platform = Some(parse_platform(&v).map_err(|e| {
                        p.invalid(format!("failed to parse platform {raw} ({v}): {e}"))
                    })?);
                }
                other => return Err(unknown_flag(&p, other, &["platform"])),
            }
        }
        let expanded = ctx.expand(image, &ctx.global, &p)?;
        if expanded.is_empty() {
            return Err(p.invalid(format!("base name ({image}) should not be blank")));
        }
        let lower = expanded.to_ascii_lowercase();
        let base = if expanded == "scratch" {
            StageBase::Scratch
        } else if let Some(h) = heads.iter().find(|h| h.name.as_deref() == Some(&lower)) {
            StageBase::Stage(h.index)
        } else if name.as_deref() == Some(&lower)
            || froms[index + 1..]
                .iter()
                .any(|&f| stage_name_of(&instructions[f]).as_deref() == Some(&lower))
        {
            return Err(p.refused(format!(
                "FROM {expanded}: the stage is defined at or after this line; rcross builds \
                 stages from earlier ones only: move it above"
            )));
        } else {
            StageBase::Image(expanded)
        };
        heads.push(StageHead {
            index,
            name,
            line: i.line,
            base,
            platform,
            body: &instructions[at + 1..end],
        });
    }
    Ok(heads)
}

fn stage_name_of(i: &SyntaxInstruction) -> Option<String> {
    match &i.args {
        SyntaxArgs::From {
            stage_name: Some(n),
            ..
        } => Some(n.to_ascii_lowercase()),
        _ => None,
    }
}

fn unknown_flag(p: &Place<'_>, name: &str, known: &[&str]) -> DockerfileError {
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known
            .iter()
            .map(|k| format!("--{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    p.refused(format!(
        "unknown or unsupported flag --{name} (rcross supports here: {known})"
    ))
}

fn target_index(ctx: &Ctx<'_>, heads: &[StageHead<'_>]) -> Result<usize, DockerfileError> {
    let Some(target) = &ctx.options.target else {
        return Ok(heads.len().saturating_sub(1));
    };
    let lower = target.to_ascii_lowercase();
    heads
        .iter()
        .find(|h| h.name.as_deref() == Some(&lower))
        .map(|h| h.index)
        .ok_or_else(|| {
            let names: Vec<&str> = heads.iter().filter_map(|h| h.name.as_deref()).collect();
            DockerfileError {
                kind: DockerfileErrorKind::Target,
                path: ctx.path.to_string(),
                line: 0,
                instruction: String::new(),
                message: format!(
                    "target stage {target:?} could not be found; the stages are: {}",
                    if names.is_empty() {
                        "(none has a name)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            }
        })
}

/// A `--from` value (COPY or a mount) → a stage or an image; `current` is the referring stage.
fn stage_ref(
    value: &str,
    heads: &[StageHead<'_>],
    current: usize,
    p: &Place<'_>,
) -> Result<StageRef, DockerfileError> {
    let lower = value.to_ascii_lowercase();
    let found = match value.parse::<usize>() {
        Ok(n) => {
            if n >= heads.len() {
                return Err(p.invalid(format!(
                    "--from={value}: there is no stage {n} (the Dockerfile has {})",
                    heads.len()
                )));
            }
            Some(n)
        }
        Err(_) => heads
            .iter()
            .find(|h| h.name.as_deref() == Some(&lower))
            .map(|h| h.index),
    };
    match found {
        Some(n) if n >= current => Err(p.refused(format!(
            "--from={value} names this stage or a later one; only earlier stages can be used"
        ))),
        Some(n) => Ok(StageRef::Stage(n)),
        None => Ok(StageRef::Image(value.to_string())),
    }
}

/// COPY `--from`: BuildKit refuses variables there.
fn copy_from_value(ctx: &Ctx<'_>, value: &str, p: &Place<'_>) -> Result<(), DockerfileError> {
    match ctx.lexer().expand_word(value, &Vars::new()) {
        Ok(v) if v == value => Ok(()),
        _ => Err(p.invalid(format!(
            "--from={value}: variable expansion is not supported for --from, define a new stage \
             with FROM using ARG from global scope as a workaround"
        ))),
    }
}

/// Stage indexes the target needs: its base chain, COPY --from and RUN --mount from.
fn reachable(
    ctx: &Ctx<'_>,
    heads: &[StageHead<'_>],
    target: usize,
) -> Result<BTreeSet<usize>, DockerfileError> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(n) = todo.pop() {
        if !seen.insert(n) {
            continue;
        }
        let head = &heads[n];
        if let StageBase::Stage(b) = head.base {
            todo.push(b);
        }
        for i in head.body {
            let p = ctx.place(i);
            for from in raw_froms(i) {
                if i.keyword == "COPY" {
                    copy_from_value(ctx, &from, &p)?;
                } else if from.find('$').is_some_and(|d| d + 1 != from.len()) {
                    return Err(p.invalid(format!(
                        "'from' doesn't support variable expansion ({from}), define alias stage instead"
                    )));
                }
                if let StageRef::Stage(s) = stage_ref(&from, heads, n, &p)? {
                    todo.push(s);
                }
            }
        }
    }
    Ok(seen)
}

/// The unexpanded `--from` of COPY and `from=` of RUN mounts.
fn raw_froms(i: &SyntaxInstruction) -> Vec<String> {
    let mut out = Vec::new();
    for f in &i.flags {
        match (i.keyword.as_str(), f.name.as_str()) {
            ("COPY", "from") => out.push(f.value.clone().unwrap_or_default()),
            ("RUN", "mount") => {
                let fields =
                    values::csv_fields(f.value.as_deref().unwrap_or("")).unwrap_or_default();
                for field in fields {
                    if let Some((k, v)) = field.split_once('=') {
                        if k.eq_ignore_ascii_case("from") && !v.is_empty() {
                            out.push(v.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A stage's state while its instructions are evaluated.
struct StageState {
    /// What expansion and RUN see: the image Env plus ARG values.
    vars: Vars,
    config: ImageConfig,
    cmd_set: bool,
}

fn eval_stage(
    ctx: &Ctx<'_>,
    head: &StageHead<'_>,
    heads: &[StageHead<'_>],
    done: &[Stage],
) -> Result<Stage, DockerfileError> {
    // The platform: a base stage's (BuildKit's dispatchState.init overrides --platform), the
    // target's for scratch (emptyImage), else --platform or the target's.
    let (mut state, platform, triggers) = match &head.base {
        StageBase::Stage(b) => {
            let Some(base) = done.iter().find(|s| s.index == *b) else {
                return Err(DockerfileError {
                    kind: DockerfileErrorKind::Invalid,
                    path: ctx.path.to_string(),
                    line: head.line,
                    instruction: "FROM".to_string(),
                    message: format!("stage {b} was not evaluated before stage {}", head.index),
                });
            };
            let triggers: Vec<String> = base
                .steps
                .iter()
                .filter_map(|s| match &s.instruction {
                    Instruction::Onbuild(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            let mut config = base.config.clone();
            config.onbuild.clear();
            (
                StageState {
                    vars: base_vars(base),
                    config,
                    cmd_set: false,
                },
                base.platform,
                triggers,
            )
        }
        StageBase::Image(r) => {
            let mut config = ctx.options.base_configs.get(r).cloned().unwrap_or_default();
            let triggers = std::mem::take(&mut config.onbuild);
            (
                start_state(config),
                head.platform.unwrap_or(ctx.options.target_platform),
                triggers,
            )
        }
        // BuildKit's empty image has WorkingDir "/" (dockerfile2llb emptyImage).
        StageBase::Scratch => (
            start_state(ImageConfig {
                working_dir: "/".to_string(),
                ..ImageConfig::default()
            }),
            ctx.options.target_platform,
            Vec::new(),
        ),
    };
    let mut steps = Vec::with_capacity(head.body.len() + triggers.len());
    // The base's ONBUILD triggers run right after FROM, as if written there (BuildKit's
    // dispatchOnBuildTriggers), and are not inherited further.
    for trigger in &triggers {
        // A trigger is one instruction; the parser reads whole Dockerfiles.
        let text = format!("FROM scratch\n{trigger}\n");
        let tree = super::syntax::parse(ctx.path, &text).map_err(|e| DockerfileError {
            line: head.line,
            instruction: "FROM".to_string(),
            message: format!("the base's ONBUILD trigger {trigger:?}: {}", e.message),
            ..e
        })?;
        for mut i in tree.instructions.into_iter().skip(1) {
            if matches!(i.keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(DockerfileError {
                    kind: DockerfileErrorKind::Invalid,
                    path: ctx.path.to_string(),
                    line: head.line,
                    instruction: "FROM".to_string(),
                    message: format!("{} isn't allowed as an ONBUILD trigger", i.keyword),
                });
            }
            i.line = head.line;
            let instruction = eval_instruction(ctx, &i, &mut state, heads, head.index)?;
            steps.push(Step {
                line: head.line,
                instruction,
            });
        }
    }
    for i in head.body {
        let instruction = eval_instruction(ctx, i, &mut state, heads, head.index)?;
        steps.push(Step {
            line: i.line,
            instruction,
        });
    }
    Ok(Stage {
        index: head.index,
        name: head.name.clone(),
        line: head.line,
        base: head.base.clone(),
        platform,
        platform_from_flag: head.platform.is_some() && matches!(head.base, StageBase::Image(_)),
        steps,
        config: state.config,
    })
}

/// The vars a stage built FROM `base` starts with: everything `base` ended with (its ARGs too).
fn base_vars(base: &Stage) -> Vars {
    let mut vars = Vars::from_env_strings(&base.config.env);
    for step in &base.steps {
        match &step.instruction {
            Instruction::Arg(pairs) => {
                for (k, v) in pairs {
                    if let Some(v) = v {
                        vars.set(k, v);
                    }
                }
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    vars.set(k, v);
                }
            }
            _ => {}
        }
    }
    vars
}

fn start_state(mut config: ImageConfig) -> StageState {
    if !config.env.iter().any(|e| e.starts_with("PATH=")) {
        config.env.push(format!("PATH={DEFAULT_PATH}"));
    }
    StageState {
        vars: Vars::from_env_strings(&config.env),
        config,
        cmd_set: false,
    }
}

fn text_arg(i: &SyntaxInstruction) -> &str {
    match &i.args {
        SyntaxArgs::Text(t) => t,
        _ => "",
    }
}

fn no_flags(p: &Place<'_>, flags: &[SyntaxFlag]) -> Result<(), DockerfileError> {
    match flags.first() {
        Some(f) => Err(unknown_flag(p, &f.name, &[])),
        None => Ok(()),
    }
}

fn command_form(c: &SyntaxCommand) -> CommandForm {
    match c {
        SyntaxCommand::Exec(args) => CommandForm::Exec(args.clone()),
        SyntaxCommand::Shell { text, .. } => CommandForm::Shell(text.clone()),
    }
}

fn with_shell(config: &ImageConfig, form: &CommandForm) -> Vec<String> {
    match form {
        CommandForm::Exec(a) => a.clone(),
        CommandForm::Shell(t) => {
            let mut v = current_shell(config);
            v.push(t.clone());
            v
        }
    }
}

fn current_shell(config: &ImageConfig) -> Vec<String> {
    config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

fn set_env(config: &mut ImageConfig, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match config
        .env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => config.env.push(entry),
    }
}

fn eval_instruction(
    ctx: &Ctx<'_>,
    i: &SyntaxInstruction,
    state: &mut StageState,
    heads: &[StageHead<'_>],
    current: usize,
) -> Result<Instruction, DockerfileError> {
    let p = ctx.place(i);
    if i.keyword == "ARG" {
        return arg(ctx, &p, i, state);
    }
    let instruction = expand_instruction(ctx, &p, i, state, heads, current)?;
    apply(state, &instruction);
    Ok(instruction)
}

/// ARG inside a stage (BuildKit's dispatchArg): a build arg wins, else the default expanded
/// with what is set so far (earlier names of the same ARG included), else the global value.
fn arg(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    i: &SyntaxInstruction,
    state: &mut StageState,
) -> Result<Instruction, DockerfileError> {
    let mut out = Vec::new();
    for (key, default) in arg_pairs(ctx, i)? {
        let value = match (ctx.options.build_args.get(&key), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => Some(ctx.expand(&d, &state.vars, p)?),
            (None, None) => ctx.global.get(&key).map(str::to_string),
        };
        if let Some(v) = &value {
            state.vars.set(&key, v);
        }
        out.push((key, value));
    }
    Ok(Instruction::Arg(out))
}

/// The typed instruction, its arguments expanded with the state before it (one snapshot).
fn expand_instruction(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    i: &SyntaxInstruction,
    state: &StageState,
    heads: &[StageHead<'_>],
    current: usize,
) -> Result<Instruction, DockerfileError> {
    let vars = &state.vars;
    let ex = |w: &str| ctx.expand(w, vars, p);
    if !matches!(i.keyword.as_str(), "RUN" | "COPY" | "ADD" | "HEALTHCHECK") {
        no_flags(p, &i.flags)?;
    }
    Ok(match (i.keyword.as_str(), &i.args) {
        ("ENV", SyntaxArgs::Text(text)) => Instruction::Env(name_values(ctx, p, text, vars)?),
        ("LABEL", SyntaxArgs::Text(text)) => Instruction::Label(name_values(ctx, p, text, vars)?),
        ("EXPOSE", SyntaxArgs::Words(words)) => Instruction::Expose(expose(ctx, p, words, vars)?),
        ("VOLUME", SyntaxArgs::Words(words) | SyntaxArgs::Json(words)) => {
            let vols = words.iter().map(|w| ex(w)).collect::<Result<Vec<_>, _>>()?;
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err(p.invalid("VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(vols)
        }
        ("USER", _) => Instruction::User(ex(text_arg(i))?),
        ("WORKDIR", _) => {
            let w = ex(text_arg(i))?;
            if w.is_empty() {
                return Err(p.invalid("WORKDIR requires a path"));
            }
            Instruction::Workdir(values::join_workdir(&state.config.working_dir, &w))
        }
        ("STOPSIGNAL", _) => {
            let s = ex(text_arg(i))?;
            values::check_signal(&s).map_err(|e| p.invalid(e))?;
            Instruction::StopSignal(s)
        }
        ("MAINTAINER", _) => Instruction::Maintainer(text_arg(i).to_string()),
        ("CMD", SyntaxArgs::Command(c)) => Instruction::Cmd(command_form(c)),
        ("ENTRYPOINT", SyntaxArgs::Command(c)) => Instruction::Entrypoint(command_form(c)),
        ("SHELL", SyntaxArgs::Json(words)) => {
            if words.is_empty() {
                return Err(p.invalid("SHELL requires at least one argument"));
            }
            Instruction::Shell(words.clone())
        }
        ("ONBUILD", SyntaxArgs::Onbuild { trigger, heredocs }) => {
            let first = trigger.split_whitespace().next().unwrap_or("");
            let first = first.to_ascii_uppercase();
            if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(p.invalid(format!("{first} isn't allowed as an ONBUILD trigger")));
            }
            // Heredoc bodies follow the trigger line as in a Dockerfile, so it reads back.
            let mut text = trigger.clone();
            for h in heredocs {
                text.push('\n');
                text.push_str(&h.content);
                text.push_str(&h.name);
            }
            Instruction::Onbuild(text)
        }
        ("HEALTHCHECK", SyntaxArgs::Healthcheck(c)) => {
            Instruction::Healthcheck(healthcheck(p, &i.flags, c.as_ref())?)
        }
        ("RUN", SyntaxArgs::Command(c)) => {
            Instruction::Run(run(ctx, p, i, c, state, heads, current)?)
        }
        ("COPY", SyntaxArgs::Files { sources, dest }) => {
            Instruction::Copy(copy(ctx, p, i, sources, dest, vars, heads, current)?)
        }
        ("ADD", SyntaxArgs::Files { sources, dest }) => {
            Instruction::Add(copy(ctx, p, i, sources, dest, vars, heads, current)?)
        }
        (k, _) => return Err(p.invalid(format!("{k}: arguments of an unexpected shape"))),
    })
}

/// ENV/LABEL pairs, keys and values expanded.
fn name_values(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    text: &str,
    vars: &Vars,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let pairs = values::parse_name_values(text, ctx.escape).map_err(|e| p.invalid(e))?;
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let (k, v) = (ctx.expand(&k, vars, p)?, ctx.expand(&v, vars, p)?);
        if k.is_empty() {
            return Err(p.invalid(format!("{} names can not be blank", p.instruction)));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// EXPOSE: each word expanded and split into words (BuildKit's ProcessWords), then normalised.
fn expose(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    words: &[String],
    vars: &Vars,
) -> Result<Vec<String>, DockerfileError> {
    let mut ports = Vec::new();
    for w in words {
        let split = ctx
            .lexer()
            .expand_words(w, vars)
            .map_err(|e| p.error(DockerfileErrorKind::Expansion, format!("{w:?}: {e}")))?;
        for s in split {
            ports.extend(values::parse_ports(&s).map_err(|e| p.invalid(e))?);
        }
    }
    Ok(ports)
}

/// What an instruction does to the stage's variables and image config.
fn apply(state: &mut StageState, instruction: &Instruction) {
    let config = &mut state.config;
    match instruction {
        Instruction::Env(pairs) => {
            for (k, v) in pairs {
                state.vars.set(k, v);
                set_env(config, k, v);
            }
        }
        Instruction::Label(pairs) => config.labels.extend(pairs.iter().cloned()),
        Instruction::Expose(ports) => config.exposed_ports.extend(ports.iter().cloned()),
        Instruction::Volume(vols) => config.volumes.extend(vols.iter().cloned()),
        Instruction::User(u) => config.user = u.clone(),
        Instruction::Workdir(w) => config.working_dir = w.clone(),
        Instruction::StopSignal(s) => config.stop_signal = Some(s.clone()),
        Instruction::Maintainer(m) => config.author = Some(m.clone()),
        Instruction::Shell(words) => config.shell = Some(words.clone()),
        Instruction::Onbuild(t) => config.onbuild.push(t.clone()),
        Instruction::Healthcheck(h) => config.healthcheck = Some(h.clone()),
        Instruction::Cmd(form) => {
            config.cmd = Some(with_shell(config, form));
            state.cmd_set = true;
        }
        Instruction::Entrypoint(form) => {
            config.entrypoint = Some(with_shell(config, form));
            if !state.cmd_set {
                config.cmd = None;
            }
        }
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Arg(_) => {}
    }
}

fn healthcheck(
    p: &Place<'_>,
    flags: &[SyntaxFlag],
    c: Option<&SyntaxCommand>,
) -> Result<Healthcheck, DockerfileError> {
    let Some(c) = c else {
        if let Some(f) = flags.first() {
            return Err(p.invalid(format!("HEALTHCHECK NONE takes no options (--{})", f.name)));
        }
        return Ok(Healthcheck {
            test: vec!["NONE".to_string()],
            ..Healthcheck::default()
        });
    };
    let test = match c {
        SyntaxCommand::Exec(a) => std::iter::once("CMD".to_string())
            .chain(a.iter().cloned())
            .collect(),
        SyntaxCommand::Shell { text, .. } => vec!["CMD-SHELL".to_string(), text.clone()],
    };
    let mut h = Healthcheck {
        test,
        ..Healthcheck::default()
    };
    for f in flags {
        let v = f.value.as_deref().unwrap_or("");
        let dur =
            || values::parse_go_duration(v).map_err(|e| p.invalid(format!("--{}: {e}", f.name)));
        match f.name.as_str() {
            "interval" => h.interval = Some(dur()?),
            "timeout" => h.timeout = Some(dur()?),
            "start-period" => h.start_period = Some(dur()?),
            "start-interval" => h.start_interval = Some(dur()?),
            "retries" => {
                h.retries = Some(v.parse().map_err(|_| {
                    p.invalid(format!("--retries={v}: a whole number ≥ 0 is required"))
                })?)
            }
            other => {
                return Err(unknown_flag(
                    p,
                    other,
                    &[
                        "interval",
                        "timeout",
                        "start-period",
                        "start-interval",
                        "retries",
                    ],
                ))
            }
        }
    }
    Ok(h)
}

fn run(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    i: &SyntaxInstruction,
    c: &SyntaxCommand,
    state: &StageState,
    heads: &[StageHead<'_>],
    current: usize,
) -> Result<Run, DockerfileError> {
    let mut mounts = Vec::new();
    let mut network = Network::Default;
    for f in &i.flags {
        let v = f.value.as_deref().unwrap_or("");
        match f.name.as_str() {
            "mount" => mounts.push(mounts::parse(
                v,
                &state.config.working_dir,
                p,
                &|w| ctx.expand(w, &state.vars, p),
                &|from| stage_ref(from, heads, current, p),
            )?),
            "network" => {
                network = match v {
                    "default" => Network::Default,
                    "none" => Network::None,
                    other => {
                        return Err(p.refused(format!(
                            "--network={other} is not supported by rcross (default or none)"
                        )))
                    }
                }
            }
            other => return Err(unknown_flag(p, other, &["mount", "network"])),
        }
    }
    let heredocs = match c {
        SyntaxCommand::Shell { heredocs, .. } => heredocs.clone(),
        SyntaxCommand::Exec(_) => vec![],
    };
    Ok(Run {
        command: command_form(c),
        heredocs,
        mounts,
        network,
        env: state.vars.to_env_strings(),
        shell: current_shell(&state.config),
    })
}

fn is_remote(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("git@")
        || lower.starts_with("git://")
        || lower.starts_with("ssh://")
        || (lower.contains("://") && lower.contains(".git"))
}

#[allow(clippy::too_many_arguments)]
fn copy(
    ctx: &Ctx<'_>,
    p: &Place<'_>,
    i: &SyntaxInstruction,
    sources: &[SyntaxSource],
    dest: &str,
    vars: &Vars,
    heads: &[StageHead<'_>],
    current: usize,
) -> Result<Copy, DockerfileError> {
    let is_add = i.keyword == "ADD";
    let mut out = Copy {
        sources: Vec::new(),
        dest: ctx.expand(dest, vars, p)?,
        from: None,
        chown: None,
        chmod: None,
        link: false,
    };
    for f in &i.flags {
        let v = f.value.as_deref().unwrap_or("");
        match (f.name.as_str(), is_add) {
            ("from", false) => {
                copy_from_value(ctx, v, p)?;
                out.from = Some(stage_ref(v, heads, current, p)?);
            }
            ("chown", _) => out.chown = Some(ctx.expand(v, vars, p)?),
            ("chmod", _) => {
                let m = ctx.expand(v, vars, p)?;
                if u32::from_str_radix(&m, 8).is_err() {
                    return Err(p.refused(format!(
                        "--chmod={m}: rcross supports octal modes only (such as 0755)"
                    )));
                }
                out.chmod = Some(m);
            }
            ("link", _) => {
                out.link = match f.value.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(o) => return Err(p.invalid(format!("--link={o}: true or false"))),
                }
            }
            (other, _) => {
                let known: &[&str] = if is_add {
                    &["chown", "chmod", "link"]
                } else {
                    &["from", "chown", "chmod", "link"]
                };
                return Err(unknown_flag(p, other, known));
            }
        }
    }
    let body_lexer = Lexer {
        skip_quotes: true,
        ..Lexer::new('\\')
    };
    for s in sources {
        match s {
            SyntaxSource::Path(raw) => {
                let v = ctx.expand(raw, vars, p)?;
                if is_add && is_remote(&v) {
                    return Err(p.refused(format!(
                        "ADD {v}: adding a URL or a git repository is not supported by rcross yet; \
                         download it in a RUN step (curl, git clone) or put it in the context"
                    )));
                }
                out.sources.push(CopySource::Path(v));
            }
            SyntaxSource::Heredoc(h) => {
                let content = if h.expand {
                    body_lexer.expand_word(&h.content, vars).map_err(|e| {
                        p.error(
                            DockerfileErrorKind::Expansion,
                            format!("heredoc {}: {e}", h.name),
                        )
                    })?
                } else {
                    h.content.clone()
                };
                out.sources.push(CopySource::Heredoc {
                    name: h.name.clone(),
                    content,
                });
            }
        }
    }
    Ok(out)
}
