//! `waysock ls`: live displays of this user — published ones from the registry, and
//! unpublished ones found in the usual directories with their lock held.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;
use waysock::registry::{now, Registry};
use waysock::{Endpoint, Environment, Strategy};

/// Arguments of `waysock ls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    display: String,
    endpoint: Endpoint,
    pid: Option<u32>,
    command: Option<String>,
    strategy: Option<Strategy>,
    age_seconds: Option<u64>,
    published: bool,
}

fn command_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Runs `ls`. Exit 0 even when nothing is running (an empty list is an answer).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env = Environment::from_process();
    let mut entries = Vec::new();
    let registry = Registry::for_uid(env.uid);
    match registry.live() {
        Ok(records) => {
            for r in records {
                entries.push(Entry {
                    command: command_of(r.pid),
                    age_seconds: Some(now().saturating_sub(r.unix_time)),
                    display: r.display,
                    endpoint: r.endpoint,
                    pid: Some(r.pid),
                    strategy: r.strategy,
                    published: true,
                });
            }
        }
        Err(e) => eprintln!("waysock ls: registry: {e}"),
    }
    // Displays nobody published: sockets with a held lock in the usual directories.
    let mut seen_dirs = Vec::new();
    for s in Strategy::DEFAULT_CHAIN
        .into_iter()
        .filter(|s| s.is_directory())
    {
        let Ok(dir) = env.directory_for(s) else {
            continue;
        };
        // Only our own private dirs: a planted one must not pass off sockets as ours.
        if !waysock::discover::usable_runtime_dir(&dir, env.uid) {
            continue;
        }
        let Ok(canon) = std::fs::canonicalize(&dir) else {
            continue;
        };
        if seen_dirs.contains(&canon) {
            continue;
        }
        seen_dirs.push(canon);
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = read
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.ends_with(".lock"))
            .map(|n| n.trim_end_matches(".lock").to_string())
            .collect();
        names.sort();
        for name in names {
            let ep = Endpoint::Unix(dir.join(&name));
            if entries.iter().any(|e| e.endpoint == ep) {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let Ok(md) = std::fs::metadata(dir.join(format!("{name}.lock"))) else {
                continue;
            };
            let holder = waysock::probe::flock_holder(md.dev(), md.ino());
            if holder.is_none() || waysock::discover::accepts(&ep).is_err() {
                continue;
            }
            entries.push(Entry {
                display: name,
                endpoint: ep,
                pid: holder,
                command: holder.and_then(command_of),
                strategy: Some(s),
                age_seconds: None,
                published: false,
            });
        }
    }
    // Abstract displays of ours nobody published (the registry may be unusable there).
    for display in waysock::names::DisplayNames::ALL.iter() {
        let ep = Endpoint::Abstract(waysock::abstract_display_name(env.uid, &display));
        if entries.iter().any(|e| e.endpoint == ep) {
            continue;
        }
        let Ok(stream) = waysock::discover::accepts(&ep) else {
            continue;
        };
        let holder = waysock::probe::server_pid(&stream);
        entries.push(Entry {
            display,
            endpoint: ep,
            pid: holder,
            command: holder.and_then(command_of),
            strategy: Some(Strategy::Abstract),
            age_seconds: None,
            published: false,
        });
    }
    if args.json {
        crate::output::print(&(serde_json::to_string_pretty(&entries)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<48} {:>7} {:>7} {:<14} COMMAND",
        "DISPLAY", "ENDPOINT", "PID", "AGE", "STRATEGY"
    );
    for e in &entries {
        let _ = writeln!(
            out,
            "{:<12} {:<48} {:>7} {:>7} {:<14} {}{}",
            e.display,
            e.endpoint.to_string(),
            e.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            e.age_seconds
                .map(|a| format!("{a}s"))
                .unwrap_or_else(|| "-".into()),
            e.strategy.map(|s| s.name()).unwrap_or("-"),
            e.command.as_deref().unwrap_or("-"),
            if e.published {
                ""
            } else {
                "  (not published by waysock)"
            }
        );
    }
    crate::output::print(&out)?;
    Ok(ExitCode::SUCCESS)
}
