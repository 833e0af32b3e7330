//! What the preload shim costs on the calls it interposes, measured in one run.
//!
//! The shim can only be measured in a process started with `LD_PRELOAD`, so this binary re-execs
//! itself as a child three ways, the same loops each time:
//! - `no preload`: no shim;
//! - `pass-through`: `LD_PRELOAD` set, no `WAYSOCK_PRELOAD_DIR` (every call passes through);
//! - `mapped`: `LD_PRELOAD` and `WAYSOCK_PRELOAD_DIR` set, so the socket path maps to an
//!   abstract name (what `waysock run` does when nothing is writable).
//!
//! Loops (std's `UnixStream`/`UnixListener`, which call libc's `socket`/`connect`/`bind`/`listen`
//! through the PLT, so the shim sees them):
//! - `connect+close`: `socket` + `connect` to a listener + `close`, in batches; the listener
//!   accepts each batch outside the timed region;
//! - `bind+listen+close`: `socket` + `bind` + `listen` + `close` + `unlink` of the path (a no-op
//!   through the shim when mapped; libwayland unlinks the same way).
//!
//! Each child prints its median ns per iteration; the parent runs the three configurations in
//! interleaved rounds and prints the median of the rounds with ratios to `no preload`. Without
//! `--bench` (e.g. `cargo test --benches`) it runs a short smoke version.

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use waysock_testkit::median;

const SHIM: &str = "libwaysock_preload.so";
const CHILD: &str = "WAYSOCK_BENCH_PRELOAD_CHILD";
const BATCH: usize = 64;

/// Picks one loop's number out of a [`Sample`].
type Metric = fn(&Sample) -> f64;

/// One child's result: median ns per iteration of each loop, and what it saw of the shim.
#[derive(Debug, Clone, Copy)]
struct Sample {
    connect_ns: f64,
    bind_ns: f64,
    abstract_bound: bool,
    shim_loaded: bool,
}

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(CHILD) {
        return child(Path::new(&dir));
    }
    let full = std::env::args().any(|a| a == "--bench");
    match parent(full) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("preload bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Median of `samples` timed batches of `f`, in ns per iteration; `after` runs untimed after
/// each batch.
fn median_ns(samples: usize, mut f: impl FnMut(), mut after: impl FnMut()) -> f64 {
    let v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            let ns = t.elapsed().as_nanos() as f64 / BATCH as f64;
            after();
            ns
        })
        .collect();
    median(&v).expect("samples")
}

/// The child: both loops on paths under `dir` (the shim's `WAYSOCK_PRELOAD_DIR` when mapped).
fn child(dir: &Path) -> ExitCode {
    let samples: usize = std::env::var("WAYSOCK_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(101);
    let pid = std::process::id();
    let path = dir.join(format!("wayland-bench-c{pid}"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the connect target");
    let abstract_bound = listener
        .local_addr()
        .is_ok_and(|a| a.as_abstract_name().is_some());
    let connect_ns = median_ns(
        samples,
        || drop(UnixStream::connect(&path).expect("connect")),
        || {
            for _ in 0..BATCH {
                drop(listener.accept().expect("accept"));
            }
        },
    );
    drop(listener);
    let _ = std::fs::remove_file(&path);

    let path = dir.join(format!("wayland-bench-b{pid}"));
    let _ = std::fs::remove_file(&path);
    let bind_ns = median_ns(
        samples,
        || {
            drop(UnixListener::bind(&path).expect("bind"));
            std::fs::remove_file(&path).expect("unlink");
        },
        || {},
    );
    let shim_loaded = std::fs::read_to_string("/proc/self/maps").is_ok_and(|m| m.contains(SHIM));
    println!(
        "connect_ns={connect_ns:.1} bind_ns={bind_ns:.1} abstract={} shim={}",
        abstract_bound as u8, shim_loaded as u8
    );
    ExitCode::SUCCESS
}

/// The shim this build made: in our `deps/` dir (bench binaries live there) or next to it,
/// the newer one.
fn find_shim() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe.parent().ok_or("no parent dir")?;
    let mut candidates = vec![deps.join(SHIM)];
    if let Some(up) = deps.parent() {
        candidates.push(up.join(SHIM));
    }
    candidates
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| {
            format!(
                "{SHIM} not found next to {} (waysock-cli dev-depends on waysock-preload, so \
                 cargo bench builds it into deps/)",
                exe.display()
            )
        })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    PassThrough,
    Mapped,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::None, Mode::PassThrough, Mode::Mapped];
}

fn run_child(mode: Mode, shim: &Path, dir: &Path, samples: usize) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD, dir)
        .env("WAYSOCK_BENCH_SAMPLES", samples.to_string())
        .env_remove("LD_PRELOAD")
        .env_remove("WAYSOCK_PRELOAD_DIR")
        .env_remove("WAYSOCK_LOG")
        .env_remove("WAYSOCK_ALLOW_UIDS");
    if mode != Mode::None {
        cmd.env("LD_PRELOAD", OsString::from(shim));
    }
    if mode == Mode::Mapped {
        cmd.env("WAYSOCK_PRELOAD_DIR", dir);
    }
    let out = cmd.output().map_err(|e| format!("spawn child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let get = |k: &str| -> Result<f64, String> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("child printed no {k}: {text}"))
    };
    Ok(Sample {
        connect_ns: get("connect_ns")?,
        bind_ns: get("bind_ns")?,
        abstract_bound: get("abstract")? == 1.0,
        shim_loaded: get("shim")? == 1.0,
    })
}

fn parent(full: bool) -> Result<(), String> {
    let shim = find_shim()?;
    let dir = std::env::temp_dir().join(format!("waysock-bench-preload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (rounds, samples) = if full { (5, 201) } else { (1, 5) };
    let started = Instant::now();
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); Mode::ALL.len()];
    let outcome = (|| {
        for _ in 0..rounds {
            for (i, mode) in Mode::ALL.iter().enumerate() {
                results[i].push(run_child(*mode, &shim, &dir, samples)?);
            }
        }
        Ok::<(), String>(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    // Each configuration must have been what it claims.
    for (i, mode) in Mode::ALL.iter().enumerate() {
        for s in &results[i] {
            let want_shim = *mode != Mode::None;
            let want_abstract = *mode == Mode::Mapped;
            if s.shim_loaded != want_shim || s.abstract_bound != want_abstract {
                return Err(format!(
                    "configuration {} is not what it claims: {s:?}",
                    name(*mode)
                ));
            }
        }
    }
    let med = |i: usize, f: Metric| {
        median(&results[i].iter().map(f).collect::<Vec<_>>()).expect("rounds")
    };
    println!(
        "waysock-preload: median ns per iteration ({samples} batches of {BATCH}, median of \
         {rounds} interleaved child runs per configuration; {})",
        shim.display()
    );
    println!(
        "{:<30} {:>12} {:>24} {:>24}",
        "loop", "no preload", "pass-through", "mapped (abstract)"
    );
    let loops: [(&str, Metric); 2] = [
        ("connect+close", |s| s.connect_ns),
        ("bind+listen+close+unlink", |s| s.bind_ns),
    ];
    for (label, f) in loops {
        let base = med(0, f);
        let cell = |i: usize| {
            let v = med(i, f);
            format!("{v:.0} ns ({:.2}x)", v / base)
        };
        println!(
            "{label:<30} {:>12} {:>24} {:>24}",
            format!("{base:.0} ns"),
            cell(1),
            cell(2)
        );
    }
    println!(
        "(mapped: the path is rewritten to an abstract name, no file is created or unlinked; \
         total {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn name(mode: Mode) -> &'static str {
    match mode {
        Mode::None => "no preload",
        Mode::PassThrough => "pass-through",
        Mode::Mapped => "mapped",
    }
}
