//! Processes: run one to completion ([`run_command`], [`Run`]), keep one running ([`Proc`],
//! [`Weston`]), wait for something ([`wait_for`]), and the binary under test where sandboxes
//! can reach it ([`relocated`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fs::set_mode;
use crate::needs::program;

/// Runs `cmd` with output captured, killing it after `timeout`.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Run {
    let argv = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {argv}: {e}"));
    let start = Instant::now();
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                timed_out = true;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait {argv}: {e}"),
        }
    }
    let output = child.wait_with_output().expect("collect output");
    Run {
        argv,
        output,
        timed_out,
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => {
                let _ = write!(s, "{}={:?} ", k.to_string_lossy(), v);
            }
            None => {
                let _ = write!(s, "-u {} ", k.to_string_lossy());
            }
        }
    }
    let _ = write!(s, "{}", cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let _ = write!(s, " {:?}", a);
    }
    s
}

/// A finished command and everything needed to explain a failure.
#[derive(Debug)]
pub struct Run {
    /// The command line with its environment changes.
    pub argv: String,
    /// Status and captured output.
    pub output: Output,
    /// Killed by the timeout?
    pub timed_out: bool,
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Everything, for a failure message.
    pub fn context(&self) -> String {
        format!(
            "--- command: {}\n--- status: {:?}{}\n--- stdout:\n{}\n--- stderr:\n{}\n--- ns: {}",
            self.argv,
            self.output.status,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout(),
            self.stderr(),
            namespaces_of_self()
        )
    }

    /// Panics with the full context unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit code\n{}",
            self.context()
        );
        self
    }
}

fn namespaces_of_self() -> String {
    ["mnt", "net", "user"]
        .iter()
        .map(|ns| {
            let l = std::fs::read_link(format!("/proc/self/ns/{ns}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.to_string());
            format!("{ns}={l}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until `f` returns `Some`, polling, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A headless weston 10 running in a runtime dir of the test's choosing, killed on drop
/// (`SIGTERM`, then `SIGKILL` after 2 s), whatever path the test takes out.
#[derive(Debug)]
pub struct Weston {
    child: Option<std::process::Child>,
    runtime_dir: PathBuf,
    log: PathBuf,
    status: Option<std::process::ExitStatus>,
}

impl Weston {
    /// Starts `weston --backend=headless-backend.so --idle-time=0 --no-config [--socket=NAME]`
    /// with `XDG_RUNTIME_DIR=runtime_dir` and `WAYLAND_DISPLAY` unset; stdout and stderr go to
    /// `log` (keep it outside the runtime dir so listings of that dir stay exact). `Err` when
    /// weston is not installed, ready for [`skip`].
    pub fn spawn(runtime_dir: &Path, socket: Option<&str>, log: &Path) -> Result<Weston, String> {
        let weston = program("weston")?;
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(weston);
        cmd.args([
            "--backend=headless-backend.so",
            "--idle-time=0",
            "--no-config",
        ]);
        if let Some(name) = socket {
            cmd.arg(format!("--socket={name}"));
        }
        cmd.env("XDG_RUNTIME_DIR", runtime_dir)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("WAYLAND_SOCKET")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().map_err(|e| format!("spawn weston: {e}"))?;
        Ok(Weston {
            child: Some(child),
            runtime_dir: runtime_dir.to_path_buf(),
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Its runtime dir.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Has it exited? Reaps it if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.status = Some(st);
                }
            }
        }
        self.status
    }

    /// Waits until weston accepts connections on `name` in its runtime dir. `Err` (with the
    /// log) if it exits first or `limit` passes.
    pub fn wait_listening(&mut self, name: &str, limit: Duration) -> Result<(), String> {
        let path = self.runtime_dir.join(name);
        let start = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "weston exited ({st}) before listening on {}\n--- weston log:\n{}",
                    path.display(),
                    self.log()
                ));
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "weston did not listen on {} within {limit:?}\n--- weston log:\n{}",
                    path.display(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for weston to exit by itself; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for(limit, || self.exited())
    }

    /// `SIGKILL`s it (no cleanup: its socket and lock file stay behind) and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            if let Ok(st) = child.wait() {
                self.status = Some(st);
            }
        }
    }
}

impl Drop for Weston {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `wayland-info` against `display` in `runtime_dir` (10 s limit). `Err` when it is not
/// installed, ready for [`skip`].
pub fn wayland_info(runtime_dir: &Path, display: &str) -> Result<Run, String> {
    let prog = program("wayland-info")?;
    let mut cmd = Command::new(prog);
    cmd.env("XDG_RUNTIME_DIR", runtime_dir)
        .env("WAYLAND_DISPLAY", display)
        .env_remove("WAYLAND_SOCKET")
        .stdin(Stdio::null());
    Ok(run_command(cmd, Duration::from_secs(10)))
}

/// A copy of `bin` (and the preload shim built beside it, if any) in
/// `/var/tmp/waysock-bin-PID/`, made once per test process. Sandboxes mount tmpfs over `/tmp`,
/// `/run`, `/dev/shm` and `HOME`, any of which may hold the build tree (CI clones anywhere);
/// `/var/tmp` is never masked, and the copy is reachable for the unprivileged test user.
/// The copy is removed when this test process exits; copies left by test processes that are
/// gone (killed before their cleaner ran) are removed too.
pub fn relocated(bin: &str) -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        if let Ok(rd) = std::fs::read_dir("/var/tmp") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("waysock-bin-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = Path::new("/var/tmp").join(format!("waysock-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create /var/tmp copy dir");
        remove_when_gone(&dir);
        set_mode(&dir, 0o755);
        let src = Path::new(bin);
        let name = src.file_name().expect("binary name");
        let dst = dir.join(name);
        std::fs::copy(src, &dst).expect("copy the binary under test");
        set_mode(&dst, 0o755);
        if let Some(p) = built_shim(src) {
            if std::fs::copy(&p, dir.join(SHIM)).is_ok() {
                set_mode(&dir.join(SHIM), 0o755);
            }
        }
        dst
    })
}

/// Removes `dir` once this test process has exited, however it ends (the test harness has no
/// teardown hook): a detached `sh` (started in the background by one we wait for) polls for our
/// pid, then deletes the copy. Its stdio is closed, so cargo never waits for it. If it cannot
/// start, the next run's sweep in [`relocated`] removes the copy.
fn remove_when_gone(dir: &Path) {
    let script = r#"(while [ -d "/proc/$1" ]; do sleep 0.5; done; rm -rf -- "$2") &"#;
    let _ = std::process::Command::new("/bin/sh")
        .args(["-c", script, "sh"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The preload shim's file name.
pub const SHIM: &str = "libwaysock_preload.so";

/// The shim this build made for `bin`: in `bin`'s `deps/` (what `cargo test` rebuilds) or next
/// to it (what `cargo build` refreshes), whichever is newer, as `waysock` itself chooses.
/// `None` when neither exists.
pub fn built_shim(bin: &Path) -> Option<PathBuf> {
    let dir = bin.parent().unwrap_or(Path::new("/"));
    [dir.join("deps").join(SHIM), dir.join(SHIM)]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// A running process whose stdout and stderr go to a log file, killed (with every process
/// below it) when dropped.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` (stdin from `/dev/null`, stdout and stderr to `log`); `what` names it in
    /// messages. Panics if it cannot start.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Proc {
        let out =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("dup the log fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            what: what.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The name it was given.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Has it exited? Reaps it if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until its log contains `needle`: `Ok`, or `Err` with the log if it exits first
    /// or `limit` passes.
    pub fn log_shows(&mut self, needle: &str, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                return Err(format!(
                    "{} exited ({st}) before logging {needle:?}\n--- log:\n{}",
                    self.what,
                    self.log()
                ));
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "{} did not log {needle:?} within {limit:?}\n--- log:\n{}",
                    self.what,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until its log contains `needle`; panics with the log if it exits first or
    /// `limit` passes.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) {
        if let Err(why) = self.log_shows(needle, limit) {
            panic!("{why}");
        }
    }

    /// Its exit status, waiting at most `limit` (then it is killed and `None` returned).
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let st = wait_for(limit, || self.exited());
        if st.is_none() {
            self.kill();
        }
        st
    }

    /// Kills every process below it (`SIGKILL`), gives it 2 s to end by itself (an `unshare
    /// --fork --kill-child` then reaps the namespace's init and exits), then kills it. Killing
    /// only an `unshare` would leave the namespace's init to be reaped by whoever our init
    /// is, which in a container may never happen.
    pub fn kill(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let below = descendants(self.child.id());
        for pid in &below {
            if let Some(p) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        if below.is_empty() || wait_for(Duration::from_secs(2), || self.exited()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `(pid, ppid, utime + stime in clock ticks)` of every process, from `/proc`.
pub fn processes() -> Vec<(u32, u32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some((ppid, ticks)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| stat_fields(&s))
        else {
            continue;
        };
        out.push((pid, ppid, ticks));
    }
    out
}

/// `(ppid, utime + stime in clock ticks)` from the text of a `/proc/…/stat` file (a process's
/// or a thread's).
pub fn stat_fields(stat: &str) -> Option<(u32, u64)> {
    // After "(comm) ": state ppid … utime(14) stime(15), counting from pid as field 1.
    let rest = stat.rfind(')').map(|i| &stat[i + 2..])?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Some((num(1) as u32, num(11) + num(12)))
}

/// Pids of every process below `root` (not `root`), children first.
pub fn descendants(root: u32) -> Vec<u32> {
    descendants_in(&processes(), root)
}

/// [`descendants`] in one snapshot of [`processes`].
fn descendants_in(procs: &[(u32, u32, u64)], root: u32) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid, _) in procs {
            if ppid == p && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// CPU seconds (user + system) `pids` have used so far.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    seconds_of(&processes(), pids)
}

/// CPU seconds (user + system) `root` and every process below it have used so far, from one
/// reading of `/proc`.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let procs = processes();
    let mut pids = descendants_in(&procs, root);
    pids.push(root);
    seconds_of(&procs, &pids)
}

fn seconds_of(procs: &[(u32, u32, u64)], pids: &[u32]) -> f64 {
    let ticks: u64 = procs
        .iter()
        .filter(|(pid, _, _)| pids.contains(pid))
        .map(|p| p.2)
        .sum();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}
