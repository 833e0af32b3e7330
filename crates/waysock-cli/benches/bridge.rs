//! Wayland across a transport, measured in one run: a direct Unix socket, `waysock bridge`
//! over loopback TCP, and waypipe over socat TCP (Debian's 0.8.x from `PATH`; the Rust 0.11.x
//! if `WAYPIPE_011` names its binary).
//!
//! The compositor is a thread of this process (`wayland-server`, pure-Rust backend) offering
//! `wl_compositor` v4 and `wl_shm`. On every `wl_surface.commit` it reads the damaged rows of
//! the attached buffer from its own mapping of the pool and checks that each pixel is the
//! current frame's (frame n = the surface's n-th commit); then it releases the buffer and fires
//! the frame callbacks at once, so the transport is the bottleneck. Stale or wrong pixels are
//! counted, and any makes the run fail.
//!
//! The client is the main thread (`wayland-client`): one 1920×1080 XRGB8888 buffer in a memfd
//! pool, one frame in flight (it waits for the frame callback before drawing the next). Per
//! transport it measures
//! - `wl_display.sync` roundtrips (median of up to 1000, at most a few seconds);
//! - frames/s with 10 % of the rows (a band that moves every frame) and with 100 % rewritten
//!   and damaged with `damage_buffer`, each for ~3 s after a short warm-up;
//! - bytes on the TCP wire per frame: the kernel's `bytes_sent + bytes_received` of the one
//!   TCP connection (`ss -ti`), so nothing is interposed and both TCP transports are counted
//!   alike;
//! - CPU seconds per frame: `utime + stime` of this process (compositor and client) and of all
//!   its descendants (bridge ends, waypipe, socat and their forks), from `/proc`.
//!
//! With `--bench` (`cargo bench --bench bridge`) the full run, whose figures (the machine
//! line, the table, the targets) replace the generated part of `docs/PERFORMANCE.md`, between
//! its marker lines; the prose around it is hand-written and states no figures, so no run can
//! contradict it. Otherwise (`cargo test --benches`) a short smoke run that still checks every
//! pixel.

mod common;

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waysock_testkit::median;

use common::wayland::{self, Buffer, Rect, H, W};
use common::{cpu_seconds, human_bytes, in_path, version_of, Procs};

/// Frame `frame`'s pixel at (`x`, `y`): 24 pseudo-random bits shared by 4 neighbouring pixels,
/// so the content compresses about as well as real window content (lz4 ≈ 2.5×) and no two
/// frames agree.
fn pixel(frame: u32, y: u32, x4: u32) -> u32 {
    let mut h = frame.wrapping_mul(0x9E37_79B1)
        ^ y.wrapping_mul(0x85EB_CA77)
        ^ x4.wrapping_mul(0xC2B2_AE3D).rotate_left(7);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h & 0x00FF_FFFF
}

fn fill_row(row: &mut [u32], frame: u32, y: u32) {
    for (x4, group) in row.chunks_exact_mut(4).enumerate() {
        group.fill(pixel(frame, y, x4 as u32));
    }
}

// ---- the compositor's check --------------------------------------------------------------

/// What the compositor saw, over all clients.
#[derive(Default)]
struct Checks {
    rows_checked: AtomicU64,
    bad_rows: AtomicU64,
    first_bad: Mutex<Option<String>>,
}

/// Checks that every damaged row is the current frame's (frame n = the surface's n-th commit).
struct RowCheck {
    checks: Arc<Checks>,
    scratch: Vec<u32>,
}

impl wayland::Check for RowCheck {
    type Surface = ();

    fn new_surface(&mut self) {}

    fn commit(&mut self, _: &(), frame: u32, b: &Buffer, damage: &[Rect]) {
        // The rows the damage spans.
        let r0 = damage.iter().map(|r| r.y).min().unwrap_or(0).min(b.height);
        let r1 = damage
            .iter()
            .map(|r| r.y + r.h)
            .max()
            .unwrap_or(0)
            .min(b.height);
        let bad = b.with_words(|mem| {
            self.scratch.resize(b.width, 0);
            let mut bad = 0u64;
            for y in r0..r1 {
                let Some(row) = b.row(mem, y, 0, b.width) else {
                    bad += 1;
                    continue;
                };
                fill_row(&mut self.scratch, frame, y as u32);
                if row != &self.scratch[..] {
                    bad += 1;
                    let mut first = self.checks.first_bad.lock().unwrap();
                    if first.is_none() {
                        let at = row
                            .iter()
                            .zip(&self.scratch)
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        *first = Some(format!(
                            "frame {frame}, row {y}, x {at}: got {:08x}, want {:08x}",
                            row[at], self.scratch[at]
                        ));
                    }
                }
            }
            bad
        });
        let Some(bad) = bad else { return };
        self.checks
            .rows_checked
            .fetch_add((r1.saturating_sub(r0)) as u64, Ordering::Relaxed);
        self.checks.bad_rows.fetch_add(bad, Ordering::Relaxed);
    }
}

// ---- the client --------------------------------------------------------------------------

/// The client, drawing frame after frame.
struct Client {
    wl: wayland::Client,
    frame: u32,
}

impl Client {
    fn connect(path: &Path) -> io::Result<Client> {
        let mut c = Client {
            wl: wayland::Client::connect(path)?,
            frame: 0,
        };
        // The first frame: everything.
        c.draw(0, H)?;
        Ok(c)
    }

    /// Draws the next frame into rows `r0..r1`, damages them, commits, and waits for the
    /// frame callback.
    fn draw(&mut self, r0: usize, r1: usize) -> io::Result<()> {
        let frame = self.frame;
        let mem = self.wl.pixels();
        for y in r0..r1 {
            fill_row(&mut mem[y * W..(y + 1) * W], frame, y as u32);
        }
        let r = Rect {
            x: 0,
            y: r0,
            w: W,
            h: r1 - r0,
        };
        self.wl.present(r, || {})?;
        self.frame += 1;
        Ok(())
    }
}

// ---- processes and counters --------------------------------------------------------------

/// Payload bytes both ways on the established TCP connections to `port` (the dialing end's
/// socket: `bytes_sent + bytes_received` from `ss -ti`).
fn wire_bytes(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    let mut seen = false;
    for word in text.split_whitespace() {
        for key in ["bytes_sent:", "bytes_received:"] {
            if let Some(v) = word.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()) {
                total += v;
                seen = true;
            }
        }
    }
    seen.then_some(total)
}

// ---- transports --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Waysock,
    Waypipe08,
    Waypipe011,
}

struct Transport {
    kind: Kind,
    title: String,
    /// Why it was not measured.
    skip: Option<String>,
    waypipe: Option<PathBuf>,
    /// socat with `nodelay` on its TCP ends (otherwise socat's defaults, Nagle on).
    nodelay: bool,
    /// Extra arguments for both `waysock bridge` ends.
    bridge_args: &'static [&'static str],
}

/// A running transport: where the client connects and which TCP port carries it.
struct Running {
    display: PathBuf,
    port: Option<u16>,
    procs: Procs,
}

fn start(t: &Transport, dir: &Path, compositor: &Path, token: &Path) -> io::Result<Running> {
    let mut procs = Procs::new();
    let (display, port) = match t.kind {
        Kind::Direct => (compositor.to_path_buf(), None),
        Kind::Waysock => {
            let mut port = None;
            let display = procs.bridge(dir, compositor, token, t.bridge_args, |p| {
                port = Some(p);
                Ok(p)
            })?;
            (display, port)
        }
        Kind::Waypipe08 | Kind::Waypipe011 => {
            let wp = t.waypipe.clone().unwrap_or_default();
            let tag = match (t.kind, t.nodelay) {
                (Kind::Waypipe08, false) => "wp08",
                (Kind::Waypipe08, true) => "wp08nd",
                (_, false) => "wp011",
                (_, true) => "wp011nd",
            };
            let mut port = None;
            let display = procs.waypipe(dir, compositor, &wp, tag, &[], t.nodelay, |p| {
                port = Some(p);
                Ok(p)
            })?;
            (display, port)
        }
    };
    Ok(Running {
        display,
        port,
        procs,
    })
}

// ---- measurement -------------------------------------------------------------------------

struct Phase {
    frames: u64,
    fps: f64,
    wire_per_frame: Option<f64>,
    cpu_per_frame: f64,
}

#[derive(Default)]
struct Result_ {
    roundtrip_us: Option<f64>,
    roundtrips: usize,
    phases: Vec<Phase>,
    rows_checked: u64,
    bad_rows: u64,
    error: Option<String>,
}

struct Plan {
    roundtrips: usize,
    roundtrip_cap: Duration,
    phase: Duration,
    warmup: Duration,
}

const DAMAGE: [(&str, usize); 2] = [("10 %", H / 10), ("100 %", H)];

fn measure(
    plan: &Plan,
    t: &Transport,
    dir: &Path,
    compositor_path: &Path,
    token: &Path,
    checks: &Checks,
) -> io::Result<Result_> {
    let mut running = start(t, dir, compositor_path, token)?;
    let checked0 = checks.rows_checked.load(Ordering::Relaxed);
    let bad0 = checks.bad_rows.load(Ordering::Relaxed);
    let mut client = Client::connect(&running.display)?;
    let mut r = Result_::default();

    let samples = client.wl.roundtrips(plan.roundtrips, plan.roundtrip_cap)?;
    r.roundtrips = samples.len();
    r.roundtrip_us = median(&samples);

    for (_, rows) in DAMAGE {
        let band = |c: &mut Client| {
            let r0 = (c.frame as usize * rows) % H;
            let r1 = (r0 + rows).min(H);
            c.draw(r0, r1)
        };
        let w = Instant::now();
        while w.elapsed() < plan.warmup {
            band(&mut client)?;
        }
        let wire0 = running.port.and_then(wire_bytes);
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut frames = 0u64;
        while start.elapsed() < plan.phase {
            band(&mut client)?;
            frames += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let wire1 = running.port.and_then(wire_bytes);
        r.phases.push(Phase {
            frames,
            fps: frames as f64 / secs,
            wire_per_frame: match (wire0, wire1) {
                (Some(a), Some(b)) => Some((b - a) as f64 / frames as f64),
                _ => None,
            },
            cpu_per_frame: cpu / frames as f64,
        });
    }
    running.procs.check_alive()?;
    drop(client);
    r.rows_checked = checks.rows_checked.load(Ordering::Relaxed) - checked0;
    r.bad_rows = checks.bad_rows.load(Ordering::Relaxed) - bad0;
    Ok(r)
}

// ---- report ------------------------------------------------------------------------------

fn cell(r: &Result_, f: impl Fn(&Result_) -> Option<String>) -> String {
    if r.error.is_some() {
        return "failed".into();
    }
    f(r).unwrap_or_else(|| "n/a".into())
}

fn table(transports: &[Transport], results: &[Result_]) -> String {
    let mut s = String::from("| |");
    for t in transports {
        let _ = write!(s, " {} |", t.title);
    }
    s.push_str("\n|---|");
    for _ in transports {
        s.push_str("---:|");
    }
    s.push('\n');
    type Row<'a> = (String, Box<dyn Fn(&Result_) -> Option<String> + 'a>);
    let mut rows: Vec<Row<'_>> = vec![(
        "`wl_display.sync` roundtrip, median µs".into(),
        Box::new(|r: &Result_| {
            r.roundtrip_us
                .map(|v| format!("{v:.0} (n={})", r.roundtrips))
        }),
    )];
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("frames/s, {label} damage"),
            Box::new(move |r: &Result_| r.phases.get(i).map(|p| format!("{:.1}", p.fps))),
        ));
    }
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("TCP bytes/frame, {label} damage"),
            Box::new(move |r: &Result_| {
                r.phases
                    .get(i)
                    .and_then(|p| p.wire_per_frame)
                    .map(human_bytes)
            }),
        ));
    }
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("CPU ms/frame (all processes), {label} damage"),
            Box::new(move |r: &Result_| {
                r.phases
                    .get(i)
                    .map(|p| format!("{:.2}", p.cpu_per_frame * 1e3))
            }),
        ));
    }
    rows.push((
        "frames measured (10 % / 100 %)".into(),
        Box::new(|r: &Result_| {
            (r.phases.len() == 2)
                .then(|| format!("{} / {}", r.phases[0].frames, r.phases[1].frames))
        }),
    ));
    rows.push((
        "rows checked by the compositor / stale or wrong".into(),
        Box::new(|r: &Result_| Some(format!("{} / {}", r.rows_checked, r.bad_rows))),
    ));
    for (label, f) in &rows {
        let _ = write!(s, "| {label} |");
        for (t, r) in transports.iter().zip(results) {
            let c = match &t.skip {
                Some(why) => why.clone(),
                None => cell(r, f),
            };
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

/// The targets, against waypipe 0.11 measured in the same run (each socat variant).
fn targets(transports: &[Transport], results: &[Result_]) -> String {
    let measured = |t: &Transport, r: &Result_| t.skip.is_none() && r.error.is_none();
    let Some(ws) = transports
        .iter()
        .zip(results)
        .find(|(t, r)| t.kind == Kind::Waysock && measured(t, r))
        .map(|(_, r)| r)
    else {
        return "Targets not evaluated: the waysock bridge was not measured.\n".into();
    };
    let mut s = String::new();
    for (t, wp) in transports.iter().zip(results) {
        if t.kind != Kind::Waypipe011 || !measured(t, wp) {
            continue;
        }
        let _ = writeln!(
            s,
            "| target vs {} | waysock | waypipe | ratio | met? |\n|---|---:|---:|---:|---|",
            t.title
        );
        let mut line = |name: &str, ours: f64, theirs: f64, ok: bool, unit: &str| {
            let _ = writeln!(
                s,
                "| {name} | {ours:.1}{unit} | {theirs:.1}{unit} | {:.2}× | {} |",
                ours / theirs,
                if ok { "met" } else { "**not met**" }
            );
        };
        if let (Some(a), Some(b)) = (ws.roundtrip_us, wp.roundtrip_us) {
            line("roundtrip ≤ 0.33×", a, b, a <= 0.33 * b, " µs");
        }
        for (i, (label, _)) in DAMAGE.iter().enumerate() {
            let (Some(a), Some(b)) = (ws.phases.get(i), wp.phases.get(i)) else {
                continue;
            };
            let need = if i == 0 { 10.0 } else { 3.0 };
            line(
                &format!("frames/s at {label} ≥ {need}×"),
                a.fps,
                b.fps,
                a.fps >= need * b.fps,
                "",
            );
        }
        for (i, (label, _)) in DAMAGE.iter().enumerate() {
            let (Some(a), Some(b)) = (
                ws.phases.get(i).and_then(|p| p.wire_per_frame),
                wp.phases.get(i).and_then(|p| p.wire_per_frame),
            ) else {
                continue;
            };
            line(&format!("bytes/frame at {label} ≤ 1×"), a, b, a <= b, " B");
        }
        s.push('\n');
    }
    if s.is_empty() {
        s = "Targets not evaluated: waypipe 0.11 was not measured in this run \
             (set `WAYPIPE_011`).\n"
            .into();
    }
    s
}

// ---- main --------------------------------------------------------------------------------

fn bench(full: bool) -> io::Result<bool> {
    let plan = if full {
        Plan {
            roundtrips: 1000,
            roundtrip_cap: Duration::from_secs(3),
            phase: Duration::from_secs(3),
            warmup: Duration::from_millis(300),
        }
    } else {
        Plan {
            roundtrips: 50,
            roundtrip_cap: Duration::from_millis(500),
            phase: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
        }
    };
    let (dir, token) = common::scratch_dir("bridge")?;
    let compositor_path = dir.join("wayland-compositor");
    let checks = Arc::new(Checks::default());
    let compositor = wayland::start(
        UnixListener::bind(&compositor_path)?,
        RowCheck {
            checks: Arc::clone(&checks),
            scratch: Vec::new(),
        },
    )?;

    let have_socat = in_path("socat").is_some();
    let mut transports = vec![
        Transport {
            kind: Kind::Direct,
            title: "direct Unix socket".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &[],
        },
        Transport {
            kind: Kind::Waysock,
            title: "waysock bridge, TCP".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &[],
        },
        // What the busy poll buys (and costs): the same bridge sleeping at once in every read.
        Transport {
            kind: Kind::Waysock,
            title: "waysock bridge, TCP, `--busy-poll-us 0`".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &["--busy-poll-us", "0"],
        },
    ];
    let wp08 = in_path("waypipe");
    let wp011 = std::env::var_os("WAYPIPE_011").map(PathBuf::from);
    for (kind, bin, missing) in [
        (Kind::Waypipe08, wp08, "no `waypipe` in PATH"),
        (Kind::Waypipe011, wp011, "set WAYPIPE_011"),
    ] {
        let version = bin.as_deref().and_then(version_of).unwrap_or_else(|| {
            if kind == Kind::Waypipe08 {
                "0.8"
            } else {
                "0.11"
            }
            .into()
        });
        for nodelay in [false, true] {
            transports.push(Transport {
                kind,
                title: format!(
                    "waypipe {version} + socat{}",
                    if nodelay { " (nodelay)" } else { "" }
                ),
                skip: match (&bin, have_socat) {
                    (None, _) => Some(format!("not measured ({missing})")),
                    (Some(p), _) if !p.is_file() => {
                        Some(format!("not measured ({} missing)", p.display()))
                    }
                    (_, false) => Some("not measured (no `socat` in PATH)".into()),
                    _ => None,
                },
                waypipe: bin.clone(),
                nodelay,
                bridge_args: &[],
            });
        }
    }

    // `BRIDGE_BENCH_ONLY=direct,waysock` measures only the columns whose titles contain one of
    // the words (for quick iterations); such a partial run never rewrites docs/PERFORMANCE.md.
    let only = std::env::var("BRIDGE_BENCH_ONLY").ok();
    if let Some(words) = &only {
        for t in &mut transports {
            let title = t.title.to_lowercase();
            if t.skip.is_none() && !words.split(',').any(|w| title.contains(w.trim())) {
                t.skip = Some("not measured (BRIDGE_BENCH_ONLY)".into());
            }
        }
    }

    let started = Instant::now();
    let mut results = Vec::new();
    for t in &transports {
        if t.skip.is_some() {
            eprintln!("{}: skipped", t.title);
            results.push(Result_::default());
            continue;
        }
        eprintln!("{}: measuring…", t.title);
        let r = measure(&plan, t, &dir, &compositor_path, &token, &checks).unwrap_or_else(|e| {
            Result_ {
                error: Some(e.to_string()),
                ..Result_::default()
            }
        });
        if let Some(e) = &r.error {
            eprintln!("{}: FAILED: {e}", t.title);
        }
        results.push(r);
    }
    let elapsed = started.elapsed();
    let first_bad = checks.first_bad.lock().ok().and_then(|f| f.clone());
    drop(compositor);

    let table = table(&transports, &results);
    let targets = targets(&transports, &results);
    let machine = common::machine(&format!("{} at the end", common::load()));
    println!("\n{table}\n{targets}");
    println!(
        "machine: {machine}; measured in {:.0} s",
        elapsed.as_secs_f64()
    );

    let mut ok = true;
    let bad: u64 = results.iter().map(|r| r.bad_rows).sum();
    if bad > 0 {
        eprintln!(
            "STALE OR WRONG PIXELS: {bad} rows did not carry the current frame's pattern; \
             first: {}",
            first_bad.unwrap_or_default()
        );
        ok = false;
    }
    for (t, r) in transports.iter().zip(&results) {
        if t.skip.is_none() && r.error.is_some() {
            ok = false;
        }
        // The bridge itself must always work.
        if t.kind == Kind::Waysock && t.skip.is_none() && r.rows_checked == 0 {
            ok = false;
        }
    }
    if full && ok && only.is_none() {
        write_doc(&transports, &machine, &table, &targets, elapsed)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

/// The line that opens the part of `docs/PERFORMANCE.md` this bench writes.
const BEGIN: &str =
    "<!-- generated by crates/waysock-cli/benches/bridge.rs: edits below are overwritten -->";
/// The line that closes it.
const END: &str = "<!-- end of the generated part -->";

/// Replaces the generated part of `docs/PERFORMANCE.md` (between [`BEGIN`] and [`END`]) with
/// what this run measured: the machine line, the table, the targets and the columns not
/// measured. The prose around it is hand-written and states no figures.
fn write_doc(
    transports: &[Transport],
    machine: &str,
    table: &str,
    targets: &str,
    elapsed: Duration,
) -> io::Result<()> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {machine}. Whole run {:.0} s.\n",
        elapsed.as_secs_f64()
    );
    md.push_str(table);
    md.push('\n');
    md.push_str(targets);
    let skipped: Vec<&str> = transports
        .iter()
        .filter(|t| t.skip.is_some())
        .map(|t| t.title.as_str())
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(md, "\nNot measured in this run: {}.", skipped.join(", "));
    }
    md.push('\n');
    common::write_generated(BEGIN, END, &md)
}

fn main() -> ExitCode {
    common::run("bridge", bench)
}
