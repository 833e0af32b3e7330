//! Test fixtures for waysock: hostile environments made for real.
//!
//! - [`Sandbox`] runs one command in a fresh mount namespace (`unshare -m`), after root-side
//!   setup (read-only tmpfs mounts, planted files), optionally dropped to the unprivileged test
//!   user with `setpriv`. The test binary itself stays untouched and multi-threaded.
//! - [`skip`] reports a test that cannot get what it needs: it prints `SKIPPED: test: reason`
//!   straight to stderr (not captured by the test harness) and appends it to
//!   `$CARGO_TARGET_TMPDIR/../waysock-skipped.txt`, which `.ci/run` lists at the end.
//! - [`Run`] keeps argv, environment, status and output, and dumps all of it when an
//!   assertion fails.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The unprivileged user `.ci/run` creates.
pub const TEST_USER: &str = "wstest";

/// Reports a skipped test loudly. Returns nothing; the caller then returns from the test.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let path = skip_log();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Where skips are collected: `target/waysock-skipped.txt`.
pub fn skip_log() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target")
                .to_path_buf()
        });
    target.join("waysock-skipped.txt")
}

/// Are we root?
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Can we make mount namespaces (root, `unshare` present, not forbidden by a seccomp filter)?
/// `Err` carries the reason, ready for [`skip`].
pub fn namespaces() -> Result<(), String> {
    if !is_root() {
        return Err("needs root for mount namespaces (CI runs as root)".into());
    }
    match Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "unshare -m failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

/// A program on `PATH`, or the reason it is missing.
pub fn program(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "{name} is not installed (.ci/run installs it: apt-get install weston wayland-utils)"
    ))
}

/// The test user's uid and gid, or the reason it cannot be used.
pub fn test_user() -> Result<(u32, u32), String> {
    user(TEST_USER)
}

/// The second unprivileged account: the other local user who attacks [`TEST_USER`] in the
/// security tests.
pub const INTRUDER: &str = "wsintruder";

/// The intruder's uid and gid, or the reason it cannot be used.
pub fn intruder() -> Result<(u32, u32), String> {
    user(INTRUDER)
}

fn user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2].parse().map_err(|_| "bad uid".to_string())?;
            let gid = f[3].parse().map_err(|_| "bad gid".to_string())?;
            return Ok((uid, gid));
        }
    }
    Err(format!(
        "user {name} does not exist (.ci/run creates it: useradd -m {name})"
    ))
}

/// A unique name for this test run (pid + counter), for scratch dirs and namespaces.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Makes `/var/tmp/waysock-test-…` (0700). `/var/tmp` because tests make `/tmp` read-only.
    pub fn new(prefix: &str) -> Scratch {
        let path = Path::new("/var/tmp").join(unique(&format!("waysock-test-{prefix}")));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        set_mode(&path, 0o700);
        Scratch { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `chmod`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Leaves a stale Unix socket file at `path`: a stream socket is bound there and closed
/// without ever listening.
///
/// Binding with `UnixListener::bind` and dropping it is not the same: the socket listens for a
/// moment, and another test thread forking a child in that moment keeps a copy of the fd until
/// the child execs, so a connect probe can still be accepted. A socket that never listened
/// refuses every connect (`ECONNREFUSED`), whoever holds it.
pub fn stale_socket(path: &Path) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = SocketAddrUnix::new(path).expect("socket path fits sun_path");
    rustix::net::bind(&fd, &addr).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
}

/// One command in a fresh mount namespace.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    setup: Vec<String>,
    user: Option<String>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    private_network: bool,
    private_pids: bool,
}

impl Sandbox {
    /// An empty sandbox: a private mount namespace and nothing else.
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// A root-side shell line run inside the namespace before the command (`set -e`).
    pub fn sh(mut self, line: impl Into<String>) -> Self {
        self.setup.push(line.into());
        self
    }

    /// Also a private network namespace (`unshare -n`) with `lo` up. Abstract Unix sockets are
    /// per network namespace: with this, tests binding abstract names cannot collide.
    pub fn private_network(mut self) -> Self {
        self.private_network = true;
        self.sh("ip link set lo up 2>/dev/null || true")
    }

    /// Also a private pid namespace with its own `/proc` (`unshare -p --fork --kill-child
    /// --mount-proc`): when the command (pid 1 there) ends, or the test kills `unshare`, every
    /// process it left behind (a background compositor) is killed by the kernel.
    pub fn private_pids(mut self) -> Self {
        self.private_pids = true;
        self
    }

    /// Mounts an empty read-only tmpfs over `path`.
    pub fn read_only(self, path: &str) -> Self {
        self.sh(format!("mount -t tmpfs -o ro,mode=755 none {path}"))
    }

    /// Mounts an empty writable tmpfs over `path`.
    pub fn tmpfs(self, path: &str) -> Self {
        self.sh(format!("mount -t tmpfs -o mode=1777 none {path}"))
    }

    /// Drops to `user` (with `setpriv`) for the command.
    pub fn as_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Sets a variable for the command.
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), Some(v.into())));
        self
    }

    /// Removes a variable for the command.
    pub fn env_remove(mut self, k: impl Into<OsString>) -> Self {
        self.env.push((k.into(), None));
        self
    }

    /// Starts from an empty environment (plus `PATH`), like `env -i`.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// The full command line, for running or spawning.
    pub fn command(&self, program: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut script = String::from("set -e\n");
        for line in &self.setup {
            script.push_str(line);
            script.push('\n');
        }
        script.push_str("exec \"$@\"\n");
        let mut cmd = Command::new("unshare");
        cmd.arg("-m");
        if self.private_network {
            cmd.arg("-n");
        }
        if self.private_pids {
            cmd.args(["-p", "--fork", "--kill-child", "--mount-proc"]);
        }
        cmd.args(["--propagation", "private", "sh", "-c", &script, "sh"]);
        if let Some(user) = &self.user {
            cmd.args([
                "setpriv",
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
            ]);
        }
        cmd.arg(program.as_ref());
        cmd.args(args);
        if self.clear_env {
            cmd.env_clear();
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs to completion (killed after `timeout`) and captures everything.
    pub fn run(&self, program: impl AsRef<Path>, args: &[&str], timeout: Duration) -> Run {
        run_command(self.command(program, args), timeout)
    }
}

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

/// Every entry under `root` (recursive, symlinks not followed), one line each:
/// `relative/path kind mode uid inode [-> target]`, sorted. Two equal snapshots mean nothing was
/// created, removed, replaced, re-owned or chmod-ed; regular files also carry their length.
pub fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let ft = md.file_type();
            let kind = file_kind(&ft);
            let mut line = format!(
                "{rel} {kind} {:04o} uid={} ino={}",
                md.mode() & 0o7777,
                md.uid(),
                md.ino()
            );
            if ft.is_file() {
                let _ = write!(line, " len={}", md.len());
            }
            if ft.is_symlink() {
                if let Ok(t) = std::fs::read_link(&path) {
                    let _ = write!(line, " -> {}", t.display());
                }
            }
            out.push(line);
            if ft.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A word for a file type: `dir`, `file`, `symlink`, `socket`, `fifo`, `other`.
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "other"
    }
}

/// `st_mode & 0o7777` of `path` (not following a symlink).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Panics unless `path` is a directory with mode exactly 0700.
pub fn assert_mode_0700(path: &Path) {
    let md =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    assert!(md.is_dir(), "{} is not a directory", path.display());
    assert_eq!(
        mode_of(path),
        0o700,
        "{} has mode {:04o}, expected 0700",
        path.display(),
        mode_of(path)
    );
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
        // The shim: the newer of deps/ (cargo test) and next to the binary (cargo build).
        let parent = src.parent().unwrap_or(Path::new("/"));
        let shim = "libwaysock_preload.so";
        let newest = [parent.join("deps").join(shim), parent.join(shim)]
            .into_iter()
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .max()
            .map(|(_, p)| p);
        if let Some(p) = newest {
            if std::fs::copy(&p, dir.join(shim)).is_ok() {
                set_mode(&dir.join(shim), 0o755);
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

/// Splits a script's stdout at its marker lines (`@@name` alone on a line) into named
/// sections, each trimmed.
pub fn sections(stdout: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            current = Some(name.to_string());
            out.insert(name.to_string(), String::new());
        } else if let Some(name) = &current {
            if let Some(s) = out.get_mut(name) {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    for v in out.values_mut() {
        *v = v.trim().to_string();
    }
    out
}
