//! `rcross login` / `rcross logout`: parse, call `crate::registry::login`, print, exit.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::PathBuf;

use crate::cli::{LoginArgs, LogoutArgs};
use crate::exit::{self, Failure};
use crate::registry::login::{self, LoginError};
use crate::registry::{Client, ClientOptions, Credentials, DockerConfig, ProcessRunner};

/// Passwords longer than this on stdin are refused (a token is a few KiB at most).
const MAX_PASSWORD_BYTES: u64 = 64 * 1024;

fn failure(e: LoginError) -> Failure {
    Failure {
        code: e.exit_code(),
        error: e.into(),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn config_path() -> exit::Result<PathBuf> {
    let env = |k: &str| std::env::var(k).ok();
    DockerConfig::default_path(env("DOCKER_CONFIG").as_deref(), env("HOME").as_deref()).ok_or_else(
        || {
            Failure::env(anyhow::anyhow!(
                "neither DOCKER_CONFIG nor HOME is set: set DOCKER_CONFIG to the directory for config.json"
            ))
        },
    )
}

pub fn run_login(args: LoginArgs, json: bool) -> exit::Result<u8> {
    let registry = login::registry_name(args.registry.as_deref()).map_err(failure)?;
    // At a terminal, what is missing is asked for, as docker login does; in a pipeline it is
    // an error that says which flag gives it.
    let interactive = !args.password_stdin && std::io::stdin().is_terminal();
    let username = match args.username.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None if interactive => prompt("Username: ", false)?,
        None => {
            return Err(Failure::usage(anyhow::anyhow!(
                "rcross login {registry} needs a user name: -u USER (and the password on stdin with --password-stdin)"
            )))
        }
    };
    if username.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "rcross login {registry}: the user name is empty"
        )));
    }
    let password = match (args.password_stdin, args.password) {
        (true, _) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_PASSWORD_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::env(anyhow::anyhow!("cannot read the password from stdin: {e}")))?;
            if bytes.len() as u64 > MAX_PASSWORD_BYTES {
                return Err(Failure::usage(anyhow::anyhow!(
                    "the password on stdin is longer than {MAX_PASSWORD_BYTES} bytes"
                )));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| Failure::usage(anyhow::anyhow!("the password on stdin is not UTF-8")))?;
            // As docker: one trailing newline (from `echo`) is not part of the password.
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.strip_suffix('\r').unwrap_or(text).to_string()
        }
        (false, Some(p)) => {
            eprintln!(
                "WARNING! Using --password on the command line is insecure (other users see it in ps, \
                 the shell keeps it in its history). Use --password-stdin."
            );
            p
        }
        (false, None) if interactive => prompt("Password: ", true)?,
        (false, None) => {
            return Err(Failure::usage(anyhow::anyhow!(
                "no password: pipe it in with --password-stdin, e.g. `echo \"$TOKEN\" | rcross login {registry} -u {username} --password-stdin`"
            )))
        }
    };
    if password.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "the password for {registry} is empty"
        )));
    }
    let credentials = Credentials {
        username: username.clone(),
        password,
    };
    let options = ClientOptions {
        insecure_registries: if args.insecure {
            vec![registry.clone()]
        } else {
            Vec::new()
        },
        ..ClientOptions::default()
    };
    // The check runs with only these credentials: whatever is stored now plays no part.
    let client = Client::new(options, DockerConfig::default());
    login::check(&client, &registry, &credentials).map_err(failure)?;
    let path = config_path()?;
    let stored =
        login::store(&path, &registry, &credentials, &ProcessRunner::default()).map_err(failure)?;
    if json {
        super::print_json(&serde_json::json!({
            "registry": registry,
            "username": username,
            "stored_in": stored,
            "config": path,
        }))?;
    } else {
        eprintln!("credentials for {username} at {registry} stored in {stored}");
        println!("Login Succeeded");
    }
    Ok(exit::OK)
}

/// One line from the terminal on stdin, after `label` on stderr; with `hidden` the terminal does
/// not echo it (its settings are put back afterwards).
fn prompt(label: &str, hidden: bool) -> exit::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    let saved = if hidden {
        let saved = tcgetattr(&stdin)
            .map_err(|e| Failure::env(anyhow::anyhow!("cannot read the terminal settings: {e}")))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| Failure::env(anyhow::anyhow!("cannot turn the terminal echo off: {e}")))?;
        Some(saved)
    } else {
        None
    };
    eprint!("{label}");
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| Failure::env(anyhow::anyhow!("cannot read from the terminal: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn run_logout(args: LogoutArgs, json: bool) -> exit::Result<u8> {
    let registry = login::registry_name(args.registry.as_deref()).map_err(failure)?;
    let path = config_path()?;
    let erased = login::erase(&path, &registry, &ProcessRunner::default()).map_err(failure)?;
    if json {
        super::print_json(&serde_json::json!({
            "registry": registry,
            "logged_out": erased.any(),
            "helper": erased.helper,
            "file_entries": erased.file_entries,
            "config": path,
        }))?;
    } else if erased.any() {
        let mut from = Vec::new();
        if erased.helper_had_credentials {
            from.extend(erased.helper.clone());
        }
        if !erased.file_entries.is_empty() {
            from.push(path.display().to_string());
        }
        println!(
            "Removing login credentials for {registry} (from {})",
            from.join(" and ")
        );
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(exit::OK)
}
