//! What `benches/bridge.rs` and `benches/link.rs` share, included by each with `mod common;`
//! (cargo builds no bench from `benches/common/`): the helper processes of a transport
//! (`waysock bridge` ends, waypipe behind socat), CPU accounting, the report's pieces and the
//! rewriting of a bench's generated part of `docs/PERFORMANCE.md`.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use waysock_testkit::proc::descendants;

pub mod wayland;

pub const BIN: &str = env!("CARGO_BIN_EXE_waysock");

/// Runs `bench` (the full run with `--bench`, otherwise the smoke run) and turns what it says
/// into the exit code, naming the bench in what it prints.
pub fn run(name: &str, bench: fn(bool) -> io::Result<bool>) -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    match bench(full) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{name} bench: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name} bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- processes and counters --------------------------------------------------------------

/// CPU seconds used so far by this process and all its descendants.
pub fn cpu_seconds() -> f64 {
    waysock_testkit::proc::tree_cpu_seconds(std::process::id())
}

/// Whether something listens on 127.0.0.1:`port` (from `/proc/net/tcp`).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}

/// Helper processes of one transport; killed (with their descendants, by pid) on drop.
pub struct Procs {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Procs {
    pub fn new() -> Procs {
        Procs {
            children: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Starts `cmd` as `name` (logging to `dir/name.log`) and waits at most 10 s until
    /// `ready` (`what` names it in the error), failing if any of the processes exits.
    fn spawn(
        &mut self,
        dir: &Path,
        name: &str,
        cmd: &mut Command,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let log = dir.join(format!("{name}.log"));
        let f = File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        self.children.push(child);
        self.logs.push(log);
        waysock_testkit::wait_for(Duration::from_secs(10), || {
            (ready() || self.check_alive().is_err()).then_some(())
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting for {what}"),
            )
        })?;
        self.check_alive()
    }

    /// An error with its log if any of the processes has exited.
    pub fn check_alive(&mut self) -> io::Result<()> {
        for (c, log) in self.children.iter_mut().zip(&self.logs) {
            if let Ok(Some(st)) = c.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{} exited ({st}):\n{text}",
                    log.display()
                )));
            }
        }
        Ok(())
    }

    /// The two ends of `waysock bridge` (each with `args`): the compositor end listening on a
    /// free loopback port for TCP and connecting to `compositor`, and the client end listening
    /// on a Unix socket in `dir` and dialing the port `hop` returns for the compositor end's
    /// (the same port, or a relay's in front of it). Returns the client end's socket.
    pub fn bridge(
        &mut self,
        dir: &Path,
        compositor: &Path,
        token: &Path,
        args: &[&str],
        hop: impl FnOnce(u16) -> io::Result<u16>,
    ) -> io::Result<PathBuf> {
        let port = waysock_testkit::free_port()?;
        let display = dir.join("wayland-bridge");
        let _ = std::fs::remove_file(&display);
        self.spawn(
            dir,
            "bridge-compositor-end",
            Command::new(BIN)
                .arg("bridge")
                .arg(format!("--listen=tcp:127.0.0.1:{port}"))
                .arg(format!("--connect=unix:{}", compositor.display()))
                .arg("--token-file")
                .arg(token)
                .args(args),
            "the compositor end",
            || listening(port),
        )?;
        let port = hop(port)?;
        self.spawn(
            dir,
            "bridge-client-end",
            Command::new(BIN)
                .arg("bridge")
                .arg(format!("--listen=unix:{}", display.display()))
                .arg(format!("--connect=tcp:127.0.0.1:{port}"))
                .arg("--token-file")
                .arg(token)
                .args(args),
            "the client end",
            || display.exists(),
        )?;
        Ok(display)
    }

    /// waypipe `wp` (`--no-gpu` and `args`) across TCP through a socat pair (`nodelay` on both
    /// TCP ends if asked): on the compositor side waypipe client on a Unix socket and socat
    /// from a free loopback port to it; on the client side socat from a Unix socket to the port
    /// `hop` returns for socat's (the same port, or a relay's in front of it) and waypipe
    /// server. Its files in `dir` are named after `tag`. Returns waypipe server's display.
    #[allow(clippy::too_many_arguments)]
    pub fn waypipe(
        &mut self,
        dir: &Path,
        compositor: &Path,
        wp: &Path,
        tag: &str,
        args: &[&str],
        nodelay: bool,
        hop: impl FnOnce(u16) -> io::Result<u16>,
    ) -> io::Result<PathBuf> {
        let nodelay = if nodelay { ",nodelay" } else { "" };
        let port = waysock_testkit::free_port()?;
        let client_sock = dir.join(format!("{tag}-client.sock"));
        let server_sock = dir.join(format!("{tag}-server.sock"));
        let display_name = format!("wayland-{tag}");
        let display = dir.join(&display_name);
        for p in [&client_sock, &server_sock, &display] {
            let _ = std::fs::remove_file(p);
        }
        let comp_name = compositor
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        // Compositor side: waypipe client on a Unix socket, socat from TCP to it.
        self.spawn(
            dir,
            &format!("{tag}-client"),
            Command::new(wp)
                .env("XDG_RUNTIME_DIR", dir)
                .env("WAYLAND_DISPLAY", &comp_name)
                .arg("--no-gpu")
                .args(args)
                .arg("--socket")
                .arg(&client_sock)
                .arg("client"),
            "waypipe client",
            || client_sock.exists(),
        )?;
        self.spawn(
            dir,
            &format!("{tag}-socat-listen"),
            Command::new("socat")
                .arg(format!(
                    "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork{nodelay}"
                ))
                .arg(format!("UNIX-CONNECT:{}", client_sock.display())),
            "socat",
            || listening(port),
        )?;
        let port = hop(port)?;
        // Client side: socat from a Unix socket to TCP, and waypipe server.
        self.spawn(
            dir,
            &format!("{tag}-socat-connect"),
            Command::new("socat")
                .arg(format!("UNIX-LISTEN:{},fork", server_sock.display()))
                .arg(format!("TCP:127.0.0.1:{port}{nodelay}")),
            "socat",
            || server_sock.exists(),
        )?;
        self.spawn(
            dir,
            &format!("{tag}-server"),
            Command::new(wp)
                .env("XDG_RUNTIME_DIR", dir)
                .arg("--no-gpu")
                .args(args)
                .arg("--socket")
                .arg(&server_sock)
                .arg("--display")
                .arg(&display_name)
                .arg("server")
                .arg("--")
                .args(["sleep", "600"]),
            "waypipe server",
            || display.exists(),
        )?;
        Ok(display)
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            for pid in descendants(c.id()) {
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- setup and report --------------------------------------------------------------------

/// A fresh 0700 directory `waysock-bench-NAME-PID-NANOS` in the temp dir, holding a 0600 token
/// file for `waysock bridge`; returns the directory and the token's path.
pub fn scratch_dir(name: &str) -> io::Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!(
        "waysock-bench-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let token = dir.join("token");
    std::fs::write(&token, b"waysock-bench-token-0123456789abcdef")?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    Ok((dir, token))
}

/// `name` as found in `PATH`.
pub fn in_path(name: &str) -> Option<PathBuf> {
    waysock_testkit::program(name).ok()
}

/// The version a waypipe binary states.
pub fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("waypipe ").map(|v| v.trim().to_string()))
}

/// The load average now (1, 5 and 15 minutes).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPUs, their model and the kernel, then `load average {load}`.
pub fn machine(load: &str) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}, Linux {kernel}, load average {load}")
}

pub fn human_bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// Replaces what stands in `docs/PERFORMANCE.md` between the marker lines `begin` and `end`
/// with a blank line and `body`; the rest of the file (hand-written) stays as it is.
pub fn write_generated(begin: &str, end: &str, body: &str) -> io::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/PERFORMANCE.md");
    let doc = std::fs::read_to_string(&path)?;
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        return Err(io::Error::other(format!(
            "{}: the marker lines {begin:?} and {end:?} are missing",
            path.display()
        )));
    };
    if e < b {
        return Err(io::Error::other(format!(
            "{}: the marker lines {begin:?} and {end:?} are out of order",
            path.display()
        )));
    }
    let md = format!("{}\n\n{body}{}", &doc[..b + begin.len()], &doc[e..]);
    std::fs::write(&path, md)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
