//! `waysock headless -- CMD`: Wayland's `xvfb-run`. Starts a headless compositor where the
//! strategy chain finds a place (a directory, or an abstract socket through the shim), waits
//! until it answers a roundtrip, runs CMD with an environment that reaches exactly that
//! display, and tears everything down again. CMD's status is ours.
//!
//! It is `run`'s pipeline (plan, launch, ready, one cleanup guard; nothing published: the
//! display is CMD's alone) with a client at
//! the end, and these differences:
//! - the compositor's output goes to a pipe: kept in `--log FILE` if asked, and its last lines
//!   shown when it cannot start (exit 125, with the verdict `doctor` gives here);
//! - our SIGINT/SIGTERM/SIGHUP go to CMD (not to the compositor); the compositor is stopped
//!   after CMD ends, and a signal makes ours 128+N;
//! - `--screenshot FILE` captures the output just before teardown (weston's screenshooter;
//!   `grim` through wlr-screencopy on sway and cage).
//!
//! Parallel jobs never meet: each compositor takes its own name under libwayland's lock, and
//! CMD is handed that display by path (or by the shim's mapping), not left to discovery.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waysock::{Binder, Endpoint, Environment};

use super::envfile::EnvFile;
use super::run::cleanup::Cleanup;
use super::run::launch;
use super::run::plan::{self, Place};
use super::run::ready::{self, Ready};

/// `headless`'s status when the compositor cannot start (CMD never ran).
pub const COMPOSITOR_FAILED: u8 = 125;

/// How many of the compositor's last log lines are shown when it fails.
const TAIL: usize = 20;

/// Which compositor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The first of weston, sway (not as root: it refuses), cage that is installed.
    Auto,
    /// weston's headless backend.
    Weston,
    /// sway on wlroots' headless backend.
    Sway,
    /// cage on wlroots' headless backend.
    Cage,
}

/// Arguments of `waysock headless`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compositor to start.
    #[arg(long, value_enum, default_value = "auto")]
    compositor: Which,
    /// Output size (weston and sway; cage keeps wlroots' 1280x720).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Keep the compositor's log in FILE (a fresh file of ours; an existing FILE that is not
    /// provably ours is refused).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Write a PNG of the output to FILE just before teardown.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// Strategy order (comma-separated); default: WAYSOCK_STRATEGIES or the full chain.
    #[arg(long, value_name = "S,..", value_parser = super::parse_chain)]
    strategy: Option<super::Chain>,
    /// Seconds to wait for the compositor to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    ready_timeout: u64,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<OsString>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not WIDTHxHEIGHT (e.g. 1280x720)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(16..=16384).contains(&w) || !(16..=16384).contains(&h) {
        return Err(format!("{s}: each side must be 16 to 16384 pixels"));
    }
    Ok((w, h))
}

/// A compositor command line, ready to plan.
struct Compositor {
    which: Which,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    /// sway's config, written once its directory is known.
    sway_config: Option<String>,
}

fn installed(name: &str) -> bool {
    super::preload::resolve(std::ffi::OsStr::new(name)).is_some()
}

/// The compositor to start, or why none can be.
fn compositor(
    which: Which,
    size: Option<(u32, u32)>,
    screenshot: bool,
) -> Result<Compositor, String> {
    let root = rustix::process::geteuid().is_root();
    let which = match which {
        Which::Auto => [Which::Weston, Which::Sway, Which::Cage]
            .into_iter()
            .find(|w| installed(name(*w)) && !(root && *w != Which::Weston))
            .ok_or_else(|| {
                format!(
                    "no headless compositor found: install weston{}",
                    if root {
                        " (sway and cage refuse root)"
                    } else {
                        ", sway or cage"
                    }
                )
            })?,
        w => w,
    };
    if !installed(name(which)) {
        return Err(format!("{} is not installed", name(which)));
    }
    let (w, h) = size.unwrap_or((1280, 720));
    let wlroots = |env: &mut Vec<(&'static str, OsString)>| {
        env.push(("WLR_BACKENDS", "headless".into()));
        env.push(("WLR_LIBINPUT_NO_DEVICES", "1".into()));
        env.push(("WLR_RENDERER", "pixman".into()));
    };
    let mut env = Vec::new();
    let mut sway_config = None;
    let args: Vec<OsString> = match which {
        Which::Weston | Which::Auto => {
            let mut a: Vec<OsString> = vec![
                "--backend=headless-backend.so".into(),
                "--idle-time=0".into(),
                "--no-config".into(),
                format!("--width={w}").into(),
                format!("--height={h}").into(),
            ];
            if screenshot {
                // The screenshooter needs real pixels and weston's debug protocols.
                a.push("--use-pixman".into());
                a.push("--debug".into());
            }
            a
        }
        Which::Sway => {
            if root {
                return Err("sway refuses to run as root: use --compositor weston".into());
            }
            wlroots(&mut env);
            sway_config = Some(format!(
                "output HEADLESS-1 mode {w}x{h}\nxwayland disable\n"
            ));
            Vec::new()
        }
        Which::Cage => {
            if root {
                return Err("cage refuses to run as root: use --compositor weston".into());
            }
            if size.is_some() {
                return Err("cage cannot set its output size: leave out --size".into());
            }
            wlroots(&mut env);
            vec!["--".into(), "sleep".into(), "infinity".into()]
        }
    };
    Ok(Compositor {
        which,
        program: name(which).into(),
        args,
        env,
        sway_config,
    })
}

fn name(which: Which) -> &'static str {
    match which {
        Which::Auto | Which::Weston => "weston",
        Which::Sway => "sway",
        Which::Cage => "cage",
    }
}

/// sway's config, in the compositor's own private directory (sway resolves the path, so a
/// memfd's `/proc/self/fd/N` does not do): removed when it goes.
struct SwayConfig(PathBuf);

impl SwayConfig {
    fn write(dir: &Path, text: &str) -> std::io::Result<SwayConfig> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(format!(".waysock-sway-{}.conf", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        Ok(SwayConfig(path))
    }
}

impl Drop for SwayConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `headless`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let chain = match super::strategies(args.strategy) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let signals = launch::watch_signals();
    let env = Environment::from_process();
    let open = |p: &Option<PathBuf>, what: &str| -> Result<Option<EnvFile>, ExitCode> {
        match p.as_deref().map(|p| EnvFile::prepare(p, env.uid)) {
            None => Ok(None),
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(e)) => Err(super::usage(format!("{what} {e}"))),
        }
    };
    let mut log_file = match open(&args.log, "--log") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let mut shot_file = match open(&args.screenshot, "--screenshot") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let comp = match compositor(args.compositor, args.size, shot_file.is_some()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("waysock headless: {e}");
            return Ok(ExitCode::from(COMPOSITOR_FAILED));
        }
    };
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command given"))?;

    // The compositor, planned and placed exactly as `run` would.
    let mut cleanup = Cleanup::new(None);
    let input = plan::Input {
        program: &comp.program,
        args: &comp.args,
        chain: &chain,
        uid: env.uid,
        display: None,
        allow_uid: &[],
        ld_preload: std::env::var_os("LD_PRELOAD"),
    };
    let binder = Binder::new(env.clone()).strategies(chain.clone());
    let mut plan = match super::run::plan_in_chain(&env, &binder, input, &mut cleanup) {
        Ok(p) => p,
        Err(refused) => {
            eprint!("{}", refused.text);
            return Ok(ExitCode::from(if refused.code == 2 {
                2
            } else {
                COMPOSITOR_FAILED
            }));
        }
    };
    for (k, v) in &comp.env {
        plan.env.push((k, Some(v.clone())));
    }
    // sway's config goes in its own private dir; on an abstract socket there is none, and it
    // runs with its default config (its size cannot be set there).
    let sway_config = match (&comp.sway_config, &plan.place) {
        (Some(text), Place::Dir { dir, .. }) => match SwayConfig::write(dir, text) {
            Ok(c) => {
                plan.args.push("-c".into());
                plan.args.push(c.0.clone().into());
                Some(c)
            }
            Err(e) => {
                eprintln!(
                    "waysock headless: cannot write sway's config in {}: {e}",
                    dir.display()
                );
                return Ok(ExitCode::from(COMPOSITOR_FAILED));
            }
        },
        (Some(_), Place::Abstract { .. }) if args.size.is_some() => {
            eprintln!(
                "waysock headless: no writable directory for sway's config here, so its size \
                 cannot be set: leave out --size, or use --compositor weston"
            );
            return Ok(ExitCode::from(COMPOSITOR_FAILED));
        }
        _ => None,
    };
    for k in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        plan.env.push((k, None));
    }
    let log = match log_file.as_mut().map(EnvFile::create_open) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return Ok(super::usage(format!("--log {e}"))),
    };
    if let Some(f) = log_file.as_mut() {
        f.keep();
    }
    let mut compositor = match launch::launch_with(&plan, &[], None, |c| {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }) {
        Ok(c) => c,
        Err(_) => return Ok(ExitCode::from(COMPOSITOR_FAILED)),
    };
    let tail = collect_output(&mut compositor, log);

    let up = match ready::wait(
        &mut compositor,
        &plan.place,
        env.uid,
        None,
        Duration::from_secs(args.ready_timeout),
    ) {
        Ready::Up(up) => up,
        other => {
            compositor.terminate(Duration::from_secs(5));
            let status = compositor.wait().ok();
            let how = match (&other, status) {
                (Ready::TimedOut, _) => {
                    format!("did not answer within {} s", args.ready_timeout)
                }
                (_, Some(s)) => format!("exited ({}) before answering", launch::describe(s)),
                _ => "exited before answering".into(),
            };
            eprintln!(
                "waysock headless: {} {how}; {} did not run.",
                plan.name(),
                program.to_string_lossy()
            );
            let lines = tail.last_lines();
            if !lines.is_empty() {
                eprintln!("its last {} log lines:", lines.len());
                for l in lines {
                    eprintln!("  {l}");
                }
            }
            eprintln!("{}", doctor_verdict(&env, &chain));
            drop(sway_config);
            drop(cleanup);
            return Ok(ExitCode::from(COMPOSITOR_FAILED));
        }
    };
    cleanup.display(&up.display);
    // Not published: the display is CMD's alone (handed to it by path), and no other job's
    // discovery should see it.
    tracing::info!(endpoint = %up.endpoint, compositor = %plan.name(), "up");

    // CMD, reaching exactly this display; our signals go to it.
    let mut cmd = Command::new(program);
    cmd.args(rest);
    client_env(&mut cmd, &up.endpoint, &plan.place, &env);
    let client = launch::spawn(cmd, &program.to_string_lossy(), signals, "waysock headless");
    let (status, signal) = match client {
        Ok(mut c) => {
            let status = c.wait_in_place().ok();
            (status, c.signal())
        }
        Err(code) => {
            stop(&mut compositor);
            drop(sway_config);
            drop(cleanup);
            return Ok(code);
        }
    };

    if let Some(file) = shot_file.as_mut() {
        match screenshot(comp.which, &up.endpoint, &plan.place, &env, file) {
            Ok(()) => file.keep(),
            Err(e) => eprintln!("waysock headless: --screenshot: {e}"),
        }
    }
    stop(&mut compositor);
    // Before the guard, which removes the compositor's directory only when it is empty.
    drop(sway_config);
    drop(cleanup);
    if let Some(sig) = signal {
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    Ok(match status {
        Some(s) => launch::exit_code(s),
        None => ExitCode::from(1),
    })
}

/// Stops the compositor and reaps it.
fn stop(compositor: &mut launch::Launched) {
    compositor.terminate(Duration::from_secs(5));
    let _ = compositor.wait_in_place();
}

/// Reads the compositor's stdout and stderr on two threads: every line goes to the log file
/// (if any), the last [`TAIL`] are kept for the failure message.
fn collect_output(compositor: &mut launch::Launched, log: Option<std::fs::File>) -> Output {
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
    let log = Arc::new(Mutex::new(log));
    let (out, err) = compositor.take_output();
    let readers: Vec<Box<dyn Read + Send>> = [
        out.map(|o| Box::new(o) as Box<dyn Read + Send>),
        err.map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut threads = Vec::new();
    for r in readers {
        let (tail, log) = (Arc::clone(&tail), Arc::clone(&log));
        threads.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    if let Some(f) = l.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                }
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        }));
    }
    Output { tail, threads }
}

/// The compositor's output as it is read.
struct Output {
    tail: Arc<Mutex<VecDeque<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Output {
    /// The last lines, once the readers have seen the end of the output (a child of the
    /// compositor may keep the pipe open: at most a second is waited for).
    fn last_lines(self) -> Vec<String> {
        let until = std::time::Instant::now() + Duration::from_secs(1);
        while self.threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// What `doctor` would say here, in one line: where `run` would put a stock compositor, or
/// that nothing works.
fn doctor_verdict(env: &Environment, chain: &[waysock::Strategy]) -> String {
    let report = Binder::new(env.clone())
        .strategies(chain.to_vec())
        .for_stock_compositor(true)
        .diagnose();
    match report.ok().and_then(|r| r.choice) {
        Some(c) => format!(
            "doctor: a stock compositor can bind here ({} on {}): the failure is the \
             compositor's own (see its log above); `waysock doctor` has the details",
            c.strategy, c.endpoint
        ),
        None => "doctor: no strategy works here; `waysock doctor` says why for each and what to \
                 do"
        .into(),
    }
}

/// The variables that reach exactly this display: the shim from the plan when the compositor
/// itself runs under it.
fn client_env(cmd: &mut Command, endpoint: &Endpoint, place: &Place, env: &Environment) {
    let shim = match place {
        Place::Abstract { dir, shim } => Some((shim.as_path(), dir.as_path())),
        Place::Dir { .. } => None,
    };
    super::display_env(cmd, endpoint, shim, env);
}

/// Captures the output to `file`.
fn screenshot(
    which: Which,
    endpoint: &Endpoint,
    place: &Place,
    env: &Environment,
    file: &mut EnvFile,
) -> Result<(), String> {
    let mut cmd = match which {
        Which::Weston | Which::Auto => Command::new("weston-screenshooter"),
        Which::Sway | Which::Cage => {
            let mut c = Command::new("grim");
            c.arg("-");
            c
        }
    };
    client_env(&mut cmd, endpoint, place, env);
    if matches!(which, Which::Weston | Which::Auto) {
        // weston-screenshooter writes wayland-screenshot-DATE.png in its working directory:
        // a private one, read back and removed.
        let dir = private_tmp_dir(file).map_err(|e| format!("a directory for weston: {e}"))?;
        let out = cmd
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("weston-screenshooter: {e}"));
        let png = std::fs::read_dir(&dir)
            .ok()
            .and_then(|rd| {
                rd.flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".png"))
            })
            .and_then(|e| std::fs::read(e.path()).ok());
        let _ = std::fs::remove_dir_all(&dir);
        let out = out?;
        let png = png.ok_or_else(|| {
            format!(
                "weston-screenshooter wrote no PNG ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        return file.write_bytes(&png);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("grim: {e}"))?;
    if !out.status.success() || !out.stdout.starts_with(b"\x89PNG") {
        return Err(format!(
            "grim failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    file.write_bytes(&out.stdout)
}

/// A fresh 0700 directory of ours beside the screenshot's file.
fn private_tmp_dir(file: &EnvFile) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = file.dir_path();
    for n in 0..100u32 {
        let p = parent.join(format!(".waysock-shot-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1280x720"), Ok((1280, 720)));
        assert!(parse_size("1280").is_err());
        assert!(parse_size("0x10").is_err());
        assert!(parse_size("axb").is_err());
    }
}
