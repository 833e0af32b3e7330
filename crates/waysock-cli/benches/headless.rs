//! What `waysock headless -- true` costs over doing its job by hand, measured in one run.
//!
//! - `by hand`: start weston's headless backend (the arguments `headless` gives it) in a fresh
//!   0700 runtime dir, try to connect to its socket every 10 ms until that works, run `true`,
//!   then stop weston (SIGTERM) and wait for it to exit;
//! - `waysock headless -- true`: the same weston, found by the strategy chain in the same kind
//!   of runtime dir, ready when it answers a Wayland roundtrip, `true` run against it, weston
//!   stopped, everything removed.
//!
//! Each sample is wall time from the first spawn to the last exit. The two run interleaved
//! (one of each per round) so drift hits both alike; the table shows median, 10th and 90th
//! percentile, and the ratio of the medians (target: at most 1.1). With `--bench`
//! (`cargo bench --bench headless`) 20 rounds; otherwise (`cargo test --benches`) a 2-round
//! smoke. Without weston it says so and exits 0.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use waysock_testkit::{percentile, Scratch};

const BIN: &str = env!("CARGO_BIN_EXE_waysock");
const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    if let Err(why) = waysock_testkit::program("weston") {
        println!("headless bench: not run: {why}");
        return ExitCode::SUCCESS;
    }
    let full = std::env::args().any(|a| a == "--bench");
    match bench(if full { 20 } else { 2 }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headless bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn base(program: &str, rt: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .env_remove("WAYSOCK_STATE_FD")
        .env_remove("WAYSOCK_STRATEGIES")
        .env_remove("WAYSOCK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env("XDG_RUNTIME_DIR", rt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// weston by hand: start, poll its socket every 10 ms, `true`, stop.
fn by_hand(rt: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut weston = base("weston", rt)
        .args([
            "--backend=headless-backend.so",
            "--idle-time=0",
            "--no-config",
            "--width=1280",
            "--height=720",
        ])
        .spawn()
        .map_err(|e| format!("weston: {e}"))?;
    let socket = rt.join("wayland-1");
    let up = loop {
        if UnixStream::connect(&socket).is_ok() {
            break true;
        }
        if start.elapsed() > LIMIT || weston.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(POLL);
    };
    let ran = up
        && base("true", rt)
            .env("WAYLAND_DISPLAY", &socket)
            .status()
            .is_ok_and(|s| s.success());
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(weston.id() as i32).expect("a pid"),
        rustix::process::Signal::TERM,
    );
    let _ = weston.wait();
    let took = start.elapsed();
    match (up, ran) {
        (true, true) => Ok(took),
        (false, _) => Err(format!("weston did not listen on {}", socket.display())),
        (true, false) => Err("true failed".into()),
    }
}

/// `waysock headless -- true`.
fn headless(rt: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let out = base(BIN, rt)
        .args(["headless", "--compositor", "weston", "--", "true"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("waysock headless: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "waysock headless -- true: {} ({})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One way of doing the job: a fresh runtime dir in, the wall time out.
type Variant = fn(&Path) -> Result<Duration, String>;

fn bench(rounds: usize) -> Result<(), String> {
    let variants: [(&str, Variant); 2] = [
        (
            "by hand (weston, poll socket every 10 ms, true, stop)",
            by_hand,
        ),
        ("waysock headless -- true", headless),
    ];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // Each run in a fresh 0700 runtime dir under /var/tmp, removed after it.
    let run = |f: &Variant| f(Scratch::new("bench-headless").path());
    // One warm-up of each (page cache, dynamic loader), not counted.
    for (_, f) in &variants {
        run(f)?;
    }
    for _ in 0..rounds {
        for ((_, f), samples) in variants.iter().zip(&mut samples) {
            samples.push(run(f)?);
        }
    }
    let q = |s: &[Duration], p| percentile(s, p).expect("samples");
    println!(
        "waysock headless overhead: wall time of start → ready → `true` → stop, weston \
         headless ({rounds} rounds, interleaved)"
    );
    println!(
        "{:<56} {:>10} {:>10} {:>10} {:>8}",
        "variant", "median ms", "p10 ms", "p90 ms", "ratio"
    );
    let base = q(&samples[0], 0.5);
    for ((name, _), s) in variants.iter().zip(&samples) {
        println!(
            "{:<56} {:>10.1} {:>10.1} {:>10.1} {:>7.2}x",
            name,
            ms(q(s, 0.5)),
            ms(q(s, 0.1)),
            ms(q(s, 0.9)),
            q(s, 0.5).as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}
