use crate::binfmt::Catalog;
use crate::cli::SetupArgs;
use crate::exit::{self, Failure};
use crate::host::linux::LinuxHost;
use crate::platform::Platform;
use crate::setup::{self, Action, Options, SelfTest, SetupError, SetupOutcome, SetupPlan};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Report<'a> {
    host: Platform,
    binfmt_misc: &'a std::path::Path,
    mounted: bool,
    uninstall: bool,
    results: &'a [SetupOutcome],
    ok: bool,
}

pub fn run(args: SetupArgs, json: bool) -> exit::Result<u8> {
    let host = LinuxHost;
    let platforms = super::parse_platforms(&args.platforms)?;
    let opts = Options {
        platforms: (!platforms.is_empty()).then_some(platforms),
        force: args.force,
        credentials: args.credentials,
        fix_binary: !args.no_fix_binary,
        persist: args.persist,
        uninstall: args.uninstall,
        all_owners: args.all_owners,
        dry_run: args.dry_run,
        root: args.root.clone(),
    };
    let catalog = Catalog::load(&args.paths.binfmt_dir).map_err(Failure::usage)?;
    let facts = setup::gather(&host, &catalog, &args.paths.binfmt_misc, &args.root)
        .map_err(Failure::env)?;
    let plan = setup::plan(&facts, &catalog, &opts).map_err(|e| match e {
        SetupError::NoHandler(..) => Failure::usage(e),
        _ => Failure::env(e),
    })?;
    if args.dry_run {
        if json {
            super::print_json(&plan)?;
        } else {
            print_dry_run(&plan);
        }
        return Ok(exit::OK);
    }
    let outcomes =
        setup::apply(&host, &plan, !args.no_test && !args.uninstall).map_err(Failure::env)?;
    let ok = !outcomes.iter().any(SetupOutcome::failed);
    if json {
        super::print_json(&Report {
            host: facts.host_platform,
            binfmt_misc: &plan.binfmt_misc,
            mounted: plan.mount,
            uninstall: args.uninstall,
            results: &outcomes,
            ok,
        })?;
    } else {
        print_outcomes(&plan, &outcomes);
    }
    Ok(if ok { exit::OK } else { exit::CHECK_FAILED })
}

fn platforms(ps: &[Platform]) -> String {
    ps.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_dry_run(plan: &SetupPlan) {
    let dir = plan.binfmt_misc.display();
    if plan.mount {
        println!("mount -t binfmt_misc binfmt_misc {dir}");
    }
    for i in &plan.items {
        println!(
            "# {} ({}): {}",
            i.handler,
            platforms(&i.platforms),
            describe(&i.action)
        );
        match &i.action {
            Action::Register { line, remove, .. } => {
                for r in remove {
                    println!("echo -1 > {dir}/{r}");
                }
                println!("printf '%s' '{line}' > {dir}/register");
            }
            Action::Remove { entries } => {
                for r in entries {
                    println!("echo -1 > {dir}/{r}");
                }
            }
            _ => {}
        }
        if let Some(f) = &i.persist_write {
            println!("cat > {} <<'EOF'\n{}EOF", f.path.display(), f.content);
        }
        if let Some(p) = &i.persist_remove {
            println!("rm {}", p.display());
        }
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::Register { remove, .. } if remove.is_empty() => "register".into(),
        Action::Register { remove, .. } => format!("replace {}", remove.join(", ")),
        Action::Unchanged { .. } => "already registered, unchanged".into(),
        Action::Native => "runs natively, no handler needed".into(),
        Action::Conflict {
            entry, interpreter, flags,
        } => format!(
            "left alone: another tool's entry {entry} ({interpreter}, flags {flags}) handles it; --force replaces it"
        ),
        Action::Skip { reason } => format!("skipped: {reason}"),
        Action::Refuse { reason } => format!("refused: {reason}"),
        Action::Remove { entries } => format!("remove {}", entries.join(", ")),
    }
}

fn print_outcomes(plan: &SetupPlan, outcomes: &[SetupOutcome]) {
    if plan.mount {
        println!("mounted binfmt_misc at {}", plan.binfmt_misc.display());
    }
    for o in outcomes {
        let i = &o.item;
        let what = match (&o.error, &i.action) {
            (Some(e), _) => format!("FAILED: {e}"),
            (
                None,
                Action::Register {
                    interpreter,
                    flags,
                    remove,
                    ..
                },
            ) => {
                let verb = if remove.is_empty() {
                    "registered"
                } else {
                    "replaced"
                };
                format!("{verb} {} -> {interpreter} [{flags}]", i.kernel_name)
            }
            (None, Action::Unchanged { interpreter, flags }) => {
                format!("unchanged {} -> {interpreter} [{flags}]", i.kernel_name)
            }
            (None, Action::Remove { entries }) => format!("removed {}", entries.join(", ")),
            (None, a) => describe(a),
        };
        let test = match &o.self_test {
            SelfTest::Ok => " · self-test ok".to_string(),
            SelfTest::Failed(w) => format!(" · self-test FAILED: {w}"),
            SelfTest::Skipped(_) => String::new(),
        };
        println!("{:<12} {what}{test}", i.handler);
        println!("{:<12}   platforms {}", "", platforms(&i.platforms));
        if let Some(f) = &i.persist_write {
            if o.error.is_none() {
                println!("{:<12}   persisted {}", "", f.path.display());
            }
        }
        if let Some(p) = &i.persist_remove {
            if o.error.is_none() {
                println!("{:<12}   removed {}", "", p.display());
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    if failed > 0 {
        eprintln!("rcross: {failed} requested handler(s) not working; see above");
    }
}
