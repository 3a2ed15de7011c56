//! Why a binary of a Dockerfile build has the wrong architecture. rcross knows which step's
//! layer last wrote every path of the image, which stage a `COPY --from` took it from, and on
//! which platform that stage ran, so a verification finding names the stage and the classic
//! cause: an automatic platform ARG never declared in the stage (empty there), a default that
//! shadows an automatic ARG (`ARG TARGETARCH=amd64`), or a private ARG (`ARG ARCH`) that nothing
//! sets. BuildKit builds all three without a word and ships the wrong binary.

use super::stage::{stage_name, BuiltLayer};
use crate::dockerfile::{platform_args, BuildGraph, CommandForm, Instruction, Stage};
use crate::elf::Finding;
use crate::platform::Platform;
use std::collections::BTreeMap;

/// What rcross knows about one platform's build, for explanations.
pub struct Provenance<'a> {
    pub target: Platform,
    pub build: Platform,
    pub graph: &'a BuildGraph,
    pub layers: &'a [BuiltLayer],
    pub build_args: &'a BTreeMap<String, String>,
    /// The base image of the target stage's chain, as written.
    pub base: Option<&'a str>,
    pub dockerfile: &'a str,
}

impl Provenance<'_> {
    /// The finding's message with where the file came from and why it has that architecture.
    pub fn explain(&self, finding: &Finding) -> String {
        let path = finding.path.trim_start_matches('/');
        let head = format!("{path} in {} is {}", self.target, finding.found);
        let Some(layer) = self
            .layers
            .iter()
            .rev()
            .find(|l| l.paths.iter().any(|p| p == path))
        else {
            return match self.base {
                Some(b) => format!(
                    "{head}; it comes from the base image {b}, whose {} image holds it: use a \
                     base built for {}",
                    self.target, self.target
                ),
                None => format!("{head}: {}", finding.message),
            };
        };
        let producer = layer.copied_from.unwrap_or(layer.stage);
        let Some(stage) = self.graph.stage(producer) else {
            return format!("{head}: {}", finding.message);
        };
        let how = if layer.copied_from.is_some() {
            format!(
                " (copied by {}:{} from stage `{}`)",
                self.dockerfile,
                layer.line,
                stage_name(stage)
            )
        } else {
            String::new()
        };
        if stage.platform == self.target {
            return format!(
                "{head}{how}; it was built in stage `{}`, which runs on {} itself, so the \
                 command there produced a {} binary (a compiler for another target?): {}",
                stage_name(stage),
                stage.platform,
                finding.found,
                finding.message
            );
        }
        let from = if stage.platform_from_flag {
            " (`FROM --platform=$BUILDPLATFORM`)"
        } else {
            ""
        };
        format!(
            "{head}{how}; it was built in stage `{}`, which runs on {}{from}, and {}",
            stage_name(stage),
            stage.platform,
            self.cause(stage)
        )
    }

    /// Why a stage on the build platform made a binary for it: the first classic mistake it
    /// shows.
    fn cause(&self, stage: &Stage) -> String {
        let automatic: BTreeMap<&str, String> = platform_args(self.target, self.build)
            .into_iter()
            .filter(|(k, _)| k.starts_with("TARGET"))
            .collect();
        let mut declared_automatic = Vec::new();
        for step in &stage.steps {
            let Instruction::Arg(args) = &step.instruction else {
                continue;
            };
            for (name, value) in args {
                match automatic.get(name.as_str()) {
                    Some(auto) => {
                        if value.as_deref() != Some(auto.as_str())
                            && !self.build_args.contains_key(name)
                        {
                            return format!(
                                "`ARG {name}={}` ({}:{}) gives {name} a default, which shadows \
                                 the automatic value ({auto}): every target is built for {}. \
                                 Remove the default: write `ARG {name}`",
                                value.clone().unwrap_or_default(),
                                self.dockerfile,
                                step.line,
                                value.clone().unwrap_or_default(),
                            );
                        }
                        declared_automatic.push(name.clone());
                    }
                    None if value.is_none() => {
                        return format!(
                            "`ARG {name}` ({}:{}) is declared but nothing sets it (no default, no \
                             --build-arg), so it is empty: use the automatic `ARG TARGETARCH` \
                             (and TARGETOS, TARGETVARIANT) instead, which rcross sets per target",
                            self.dockerfile, step.line
                        );
                    }
                    None => {}
                }
            }
        }
        if declared_automatic.is_empty() {
            let used: Vec<&str> = automatic
                .keys()
                .copied()
                .filter(|name| self.mentions(stage, name))
                .collect();
            if let Some(name) = used.first() {
                return format!(
                    "the stage uses ${name} but never declares `ARG {name}`, so it is empty \
                     there (automatic ARGs are global: a stage sees one only after declaring \
                     it): add `ARG {name}` to stage `{}`",
                    stage_name(stage)
                );
            }
            return "nothing passed the target to the compiler: declare `ARG TARGETARCH` in \
                    that stage and build with GOARCH=$TARGETARCH (or a cross compiler chosen \
                    by it)"
                .to_string();
        }
        format!(
            "the stage declares {} but its commands did not hand the target to the compiler \
             (e.g. GOARCH=$TARGETARCH, or a cross compiler chosen by it)",
            declared_automatic
                .iter()
                .map(|n| format!("`ARG {n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Whether a RUN of the stage names `$name` or `${name}`.
    fn mentions(&self, stage: &Stage, name: &str) -> bool {
        stage.steps.iter().any(|s| match &s.instruction {
            Instruction::Run(r) => {
                let text = match &r.command {
                    CommandForm::Shell(t) => t.clone(),
                    CommandForm::Exec(v) => v.join(" "),
                };
                let bodies: String = r.heredocs.iter().map(|h| h.content.as_str()).collect();
                [text, bodies]
                    .iter()
                    .any(|t| t.contains(&format!("${name}")) || t.contains(&format!("${{{name}")))
            }
            _ => false,
        })
    }
}
