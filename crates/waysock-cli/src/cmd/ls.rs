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

/// Our abstract displays, `(display, abstract name)`: every listening stream socket in
/// `/proc/net/unix` named `wayland-UID-*` (any name: `wayland-UID-kiosk` is display
/// `wayland-kiosk`), or, where that cannot be read, `wayland-UID-0..32`.
fn abstract_displays(uid: u32) -> Vec<(String, String)> {
    let prefix = waysock::abstract_display_name(uid, "wayland-");
    let display = |name: &str| waysock::names::display_for_abstract(uid, name);
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return waysock::names::DisplayNames::ALL
            .iter()
            .map(|d| (d.clone(), waysock::abstract_display_name(uid, &d)))
            .collect();
    };
    let mut out: Vec<(String, String)> = listening_abstract(&table)
        .filter(|n| n.len() > prefix.len() && n.starts_with(prefix.as_str()))
        .map(|n| (display(n), n.to_string()))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out.dedup();
    out
}

/// The names of the listening abstract stream sockets in a `/proc/net/unix` table (`Num
/// RefCount Protocol Flags Type St Inode Path`: flags `00010000` is `__SO_ACCEPTCON`, type
/// `0001` is `SOCK_STREAM`, an abstract path starts with `@`).
fn listening_abstract(table: &str) -> impl Iterator<Item = &str> {
    table.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.splitn(8, ' ').collect();
        let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
        let listening = flags & 0x0001_0000 != 0;
        (listening && *f.get(4)? == "0001")
            .then(|| f.get(7)?.trim_end().strip_prefix('@'))
            .flatten()
    })
}

/// The record `run` sealed for the compositor `pid` (its inherited `WAYSOCK_STATE_FD`, read
/// through `/proc/PID/fd`), if it is the one for `ep`.
fn state_record(pid: u32, ep: &Endpoint) -> Option<waysock::Record> {
    use std::os::fd::AsRawFd;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let n = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"WAYSOCK_STATE_FD="))
        .and_then(|v| std::str::from_utf8(v).ok())?
        .parse::<u32>()
        .ok()?;
    let file = std::fs::File::open(format!("/proc/{pid}/fd/{n}")).ok()?;
    let ours = file.as_raw_fd().to_string();
    let record = waysock::registry::StateFd::read_inherited(ours.as_ref()).ok()?;
    (record.endpoint == *ep && record.pid == pid).then_some(record)
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
    // Abstract displays of ours that are not in the registry (it may be unusable there): any
    // name under our prefix, served by our uid, answering a roundtrip; published when their
    // compositor holds run's sealed record (WAYSOCK_STATE_FD).
    for (display, name) in abstract_displays(env.uid) {
        let ep = Endpoint::Abstract(name);
        if entries.iter().any(|e| e.endpoint == ep) {
            continue;
        }
        let Ok(mut stream) = waysock::discover::accepts(&ep) else {
            continue;
        };
        let holder = waysock::probe::server_pid(&stream);
        if waysock::probe::roundtrip(&mut stream, std::time::Duration::from_secs(1)).is_err() {
            continue; // not a Wayland display (sway's IPC socket mapped by the shim, …)
        }
        let record = holder.and_then(|pid| state_record(pid, &ep));
        entries.push(Entry {
            display: record.as_ref().map_or(display, |r| r.display.clone()),
            endpoint: ep,
            pid: holder,
            command: holder.and_then(command_of),
            strategy: record
                .as_ref()
                .map_or(Some(Strategy::Abstract), |r| r.strategy),
            age_seconds: record.as_ref().map(|r| now().saturating_sub(r.unix_time)),
            published: record.is_some(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_abstract_stream_sockets_are_read() {
        let table = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 101 @wayland-1000-kiosk
0000000000000000: 00000002 00000000 00010000 0001 01 102 /run/user/1000/wayland-1
0000000000000000: 00000003 00000000 00000000 0001 03 103 @wayland-1000-1
0000000000000000: 00000002 00000000 00010000 0002 01 104 @wayland-1000-dgram
0000000000000000: 00000002 00000000 00010000 0001 01 105 @wayland-1000-with space
0000000000000000: 00000002 00000000 00010000 0001 01 106
";
        let names: Vec<&str> = listening_abstract(table).collect();
        assert_eq!(names, ["wayland-1000-kiosk", "wayland-1000-with space"]);
    }
}
