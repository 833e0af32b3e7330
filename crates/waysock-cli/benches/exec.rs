//! What `waysock exec -- CLIENT` costs over starting CLIENT directly, measured in one run.
//!
//! CLIENT is the smallest Wayland client there is (`examples/roundtrip.rs`, included here as a
//! module; this binary re-execs itself as the client with `--roundtrip-client`): connect, one
//! `wl_display.sync`, wait for `done`, exit. The server is a thread of this process answering
//! `sync` on a socket bound by `waysock::Binder` in a scratch runtime dir (and on an abstract
//! socket). Each timed sample is spawn → exit of one process tree, wall clock:
//!
//! - `direct`: the client with `WAYLAND_DISPLAY=/abs/path` (what a user who knows the path does);
//! - `exec, WAYLAND_DISPLAY set`: `waysock exec` validating the given display, then `execvp`;
//! - `exec, XDG_RUNTIME_DIR only`: discovery on (registry, then the runtime dir scanned);
//! - `exec --endpoint abstract:…`: connect in `waysock`, hand over `WAYLAND_SOCKET`.
//!
//! The variants run interleaved (one of each per round) so drift hits all alike; the table
//! shows median, 10th and 90th percentile, and the median's ratio to `direct`. With `--bench`
//! (`cargo bench --bench exec`) 50 rounds; otherwise (`cargo test --benches`) a 3-round smoke.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use waysock::{Binder, Endpoint, Environment, Strategy};
use waysock_testkit::percentile;

#[path = "../examples/roundtrip.rs"]
#[allow(dead_code)]
mod roundtrip;

const BIN: &str = env!("CARGO_BIN_EXE_waysock");
const CLIENT_FLAG: &str = "--roundtrip-client";

fn main() -> ExitCode {
    if std::env::args().any(|a| a == CLIENT_FLAG) {
        return match roundtrip::roundtrip() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("roundtrip client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let full = std::env::args().any(|a| a == "--bench");
    match bench(if full { 50 } else { 3 }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exec bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Answers `wl_display.sync` (with `wl_callback.done` and `wl_display.delete_id`) until the
/// client hangs up. Enough of a compositor for a client that only does a roundtrip.
fn serve(mut s: UnixStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut serial = 0u32;
    loop {
        let mut header = [0u8; 8];
        if s.read_exact(&mut header).is_err() {
            return;
        }
        let object = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
        let word = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
        let (size, opcode) = ((word >> 16) as usize, word & 0xffff);
        if !(8..=4096).contains(&size) {
            return;
        }
        let mut body = vec![0u8; size - 8];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        if object == 1 && opcode == 0 && body.len() == 4 {
            let callback = u32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            serial += 1;
            let mut out = Vec::with_capacity(24);
            for (obj, op, arg) in [(callback, 0u32, serial), (1, 1, callback)] {
                out.extend_from_slice(&obj.to_ne_bytes());
                out.extend_from_slice(&((12u32 << 16) | op).to_ne_bytes());
                out.extend_from_slice(&arg.to_ne_bytes());
            }
            if s.write_all(&out).is_err() {
                return;
            }
        }
    }
}

fn accept_forever(listener: UnixListener) {
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
}

struct Variant {
    name: &'static str,
    cmd: Command,
    samples: Vec<Duration>,
}

/// Times one spawn → exit; the client must succeed.
fn time(v: &mut Variant) -> Result<(), String> {
    let start = Instant::now();
    let out = v
        .cmd
        .output()
        .map_err(|e| format!("{}: spawn: {e}", v.name))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{}: {} ({})",
            v.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    v.samples.push(took);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench(rounds: usize) -> Result<(), String> {
    let scratch = Scratch::new()?;
    let rt = scratch.0.join("rt");
    std::fs::create_dir(&rt).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| e.to_string())?;

    let mut env = Environment::from_process();
    env.xdg_runtime_dir = Some(rt.clone().into());
    env.wayland_display = None;
    env.wayland_socket = None;
    let unix = Binder::new(env.clone())
        .strategies(vec![Strategy::RuntimeDir])
        .bind()
        .map_err(|e| format!("bind in {}: {e}", rt.display()))?;
    let socket = match unix.endpoint() {
        Endpoint::Unix(p) => p.clone(),
        other => return Err(format!("unexpected endpoint {other}")),
    };
    let abs_name = format!("bench{}", std::process::id());
    let abs = Binder::new(env)
        .strategies(vec![Strategy::Abstract])
        .display(Some(abs_name))
        .bind()
        .map_err(|e| format!("abstract bind: {e}"))?;
    let abs_ep = abs.endpoint().to_string();
    let (unix_l, _unix_lock, _) = unix.into_parts();
    let (abs_l, _abs_lock, _) = abs.into_parts();
    accept_forever(unix_l);
    accept_forever(abs_l);

    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let base = |program: &Path| {
        let mut c = Command::new(program);
        c.env_remove("WAYLAND_DISPLAY")
            .env_remove("WAYLAND_SOCKET")
            .env_remove("WAYSOCK_STATE_FD")
            .env_remove("WAYSOCK_LOG")
            .env("XDG_RUNTIME_DIR", &rt)
            .stdin(Stdio::null());
        c
    };
    let mut direct = base(&me);
    direct.env("WAYLAND_DISPLAY", &socket).arg(CLIENT_FLAG);
    let mut exec_display = base(Path::new(BIN));
    exec_display
        .env("WAYLAND_DISPLAY", &socket)
        .arg("exec")
        .arg("--")
        .arg(&me)
        .arg(CLIENT_FLAG);
    let mut exec_scan = base(Path::new(BIN));
    exec_scan.arg("exec").arg("--").arg(&me).arg(CLIENT_FLAG);
    let mut exec_abs = base(Path::new(BIN));
    exec_abs
        .args(["exec", "--endpoint", &abs_ep, "--"])
        .arg(&me)
        .arg(CLIENT_FLAG);
    let mut variants = [
        ("direct (WAYLAND_DISPLAY=/abs/path)", direct),
        ("waysock exec, WAYLAND_DISPLAY set", exec_display),
        ("waysock exec, XDG_RUNTIME_DIR only", exec_scan),
        ("waysock exec --endpoint abstract:…", exec_abs),
    ]
    .map(|(name, cmd)| Variant {
        name,
        cmd,
        samples: Vec::new(),
    });

    // Warm up the page cache and the dynamic loader for every program.
    for v in variants.iter_mut() {
        for _ in 0..3 {
            time(v)?;
        }
        v.samples.clear();
    }
    for _ in 0..rounds {
        for v in variants.iter_mut() {
            time(v)?;
        }
    }

    let median = |v: &Variant| {
        let q = |p| percentile(&v.samples, p).expect("samples");
        (q(0.5), q(0.1), q(0.9))
    };
    let (base_median, _, _) = median(&variants[0]);
    println!(
        "waysock exec overhead: spawn → exit of a client doing one wl_display.sync roundtrip \
         ({rounds} rounds, interleaved)"
    );
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>8}",
        "variant", "median ms", "p10 ms", "p90 ms", "ratio"
    );
    for v in &variants {
        let (m, p10, p90) = median(v);
        println!(
            "{:<38} {:>10.3} {:>10.3} {:>10.3} {:>7.2}x",
            v.name,
            ms(m),
            ms(p10),
            ms(p90),
            m.as_secs_f64() / base_median.as_secs_f64()
        );
    }
    let (exec_median, _, _) = median(&variants[1]);
    println!(
        "waysock exec adds {:.3} ms per client start (median, WAYLAND_DISPLAY set): {:.2}x a \
         direct start",
        ms(exec_median.saturating_sub(base_median)),
        exec_median.as_secs_f64() / base_median.as_secs_f64()
    );
    Ok(())
}

/// A 0700 scratch dir under `/var/tmp`, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let p = std::path::PathBuf::from(format!(
            "/var/tmp/waysock-bench-exec-{}",
            std::process::id()
        ));
        std::fs::create_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
