//! `waysock bridge` and `waysock exec --endpoint tcp:` for real (issue 5).
//!
//! - weston 10 runs in network namespace A and the clients in namespace B; the two are joined
//!   only by a veth pair with addresses the test assigns (`10.231.X.0/24`, X from the test's
//!   pid and a counter). Every process in B also gets an empty tmpfs over weston's runtime dir,
//!   so TCP through the bridge is the only way to the compositor. The compositor-side bridge
//!   runs in A, the client-side one in B.
//! - Every process is started as `ip netns exec NS unshare -p --fork --kill-child …`: killing
//!   that one process (the guards do, on every path) makes the kernel kill everything it left.
//!   Namespaces are deleted by a guard too, also when an assertion fails.
//! - The keymap case needs no network namespace: a `wayland-server` compositor in a thread
//!   advertises a seat with a keyboard, both bridge ends run as processes on loopback (each in
//!   a pid namespace of its own, so root is still needed), and a `wayland-client` in the test
//!   binds the keyboard and reads the keymap it is handed. The idle-CPU case uses the same rig.
//!
//! Skips (`SKIPPED: …`) when root, `ip`, `unshare`, weston or the clients are missing.

use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use waysock_testkit::proc::{cpu_seconds, descendants};
use waysock_testkit::{
    run_command, set_mode, skip, spawn_on_free_port, wait_for, Needs, Proc, Run, Scratch,
};

/// The binary under test, copied where no mount hides it (see `relocated`).
fn bin() -> String {
    waysock_testkit::relocated(env!("CARGO_BIN_EXE_waysock"))
        .display()
        .to_string()
}

/// Startup waits (weston, the bridges).
const STARTUP: Duration = Duration::from_secs(20);
/// One client run.
const CLIENT: Duration = Duration::from_secs(20);
/// The port the compositor-side bridge listens on in namespace A (a namespace of our own, so
/// nothing else can hold it).
const PORT: u16 = 7350;

// ---- processes ---------------------------------------------------------------------------

/// Where a command runs.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// This network namespace (only `unshare -p`).
    Here,
    /// `ip netns exec NAME`, with empty tmpfs mounts over `hide` (dirs the process must not
    /// reach).
    Netns(&'a str, &'a [PathBuf]),
}

/// `program args` in `place`, in a pid namespace of its own.
fn command(place: Place<'_>, env: &[(&str, &str)], program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(match place {
        Place::Here => "unshare",
        Place::Netns(..) => "ip",
    });
    let mut hide: Vec<String> = Vec::new();
    if let Place::Netns(ns, dirs) = place {
        // ip netns exec gives the command a mount namespace of its own (it remounts /sys):
        // the tmpfs mounts below stay there.
        cmd.args(["netns", "exec", ns, "unshare"]);
        hide = dirs.iter().map(|d| d.display().to_string()).collect();
    }
    cmd.args(["-p", "--fork", "--kill-child", "--", "sh", "-c"]);
    cmd.arg(
        r#"set -e
while [ "$1" != -- ]; do mount -t tmpfs -o mode=700 none "$1"; shift; done
shift
exec "$@""#,
    );
    cmd.arg("sh");
    cmd.args(&hide);
    cmd.arg("--");
    cmd.arg(program);
    cmd.args(args);
    cmd.env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .env_remove("DISPLAY")
        .env_remove("WAYSOCK_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts `program` in `place`, stdout and stderr to `log`; killed (with everything in its pid
/// namespace) when dropped.
fn spawn(
    what: &str,
    place: Place<'_>,
    env: &[(&str, &str)],
    program: &str,
    args: &[&str],
    log: &Path,
) -> Proc {
    Proc::spawn(what, command(place, env, program, args), log)
}

/// Runs `program` in `place` to completion (killed after `limit`), output captured.
fn run(
    place: Place<'_>,
    env: &[(&str, &str)],
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Run {
    run_command(command(place, env, program, args), limit)
}

// ---- network namespaces ------------------------------------------------------------------

/// A network namespace of ours, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair: A has `addr_a`, B has `addr_b`.
struct Net {
    a: Netns,
    b: Netns,
    addr_a: String,
}

static NET: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// `Err` (a reason to skip) when namespaces cannot be made here.
    fn new() -> Result<Net, String> {
        let n = NET.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let x = (pid.wrapping_mul(7).wrapping_add(n) % 250) + 1;
        let a = Netns(format!("wsbr-{pid}-{n}-a"));
        ip(&["netns", "add", &a.0])?;
        let b = Netns(format!("wsbr-{pid}-{n}-b"));
        ip(&["netns", "add", &b.0])?;
        // Made directly inside the namespaces: nothing is ever left in ours.
        let (va, vb) = (format!("wsa{pid}x{n}"), format!("wsb{pid}x{n}"));
        ip(&[
            "link", "add", &va, "netns", &a.0, "type", "veth", "peer", "name", &vb, "netns", &b.0,
        ])?;
        let (addr_a, addr_b) = (format!("10.231.{x}.1"), format!("10.231.{x}.2"));
        for (ns, dev, addr) in [(&a.0, &va, &addr_a), (&b.0, &vb, &addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(Net { a, b, addr_a })
    }

    fn endpoint(&self) -> String {
        format!("tcp:{}:{PORT}", self.addr_a)
    }
}

// ---- the rig: weston in A, both bridge ends -------------------------------------------------

/// Probes for what the loopback cases need (root for `unshare -p`); `false` after reporting
/// the skip.
fn can_run_loopback(test: &str) -> bool {
    Needs::new(test)
        .root("needs root for the bridges' pid namespaces (CI runs as root)")
        .programs(&["unshare"])
        .met()
}

/// Probes for root, `ip`, `unshare`, weston and the clients; `false` after reporting the skip.
fn can_run(test: &str) -> bool {
    Needs::new(test)
        .root("needs root for network namespaces (CI runs as root)")
        .programs(&[
            "ip",
            "unshare",
            "weston",
            "wayland-info",
            "weston-simple-shm",
            "timeout",
        ])
        .met()
}

/// The two namespaces joined by a veth pair, or `None` after reporting why the test skips.
fn network_for(test: &str) -> Option<Net> {
    if !can_run(test) {
        return None;
    }
    match Net::new() {
        Ok(n) => Some(n),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

fn write_token(path: &Path, content: &[u8], mode: u32) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(content).unwrap();
    set_mode(path, mode);
}

fn random_token() -> Vec<u8> {
    let mut t = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut t))
        .unwrap();
    t
}

/// weston in A behind the compositor-side bridge; the client-side bridge in B listening on
/// `wayland-9` in a private dir. Fields drop in order: clients' bridge, compositor's bridge,
/// weston, then the namespaces and the scratch dir.
struct Rig {
    client_bridge: Proc,
    compositor_bridge: Proc,
    _weston: Proc,
    net: Net,
    /// weston's runtime dir (hidden from B).
    rt: PathBuf,
    /// The client-side bridge's socket dir (0700), `XDG_RUNTIME_DIR` of clients in B.
    cdir: PathBuf,
    token: PathBuf,
    scratch: Scratch,
}

impl Rig {
    /// Everything up and listening in `net`. `client_token`: a different secret for the
    /// client-side bridge.
    fn new(net: Net, client_token: Option<&[u8]>) -> Rig {
        let scratch = Scratch::new("bridge");
        let rt = scratch.path().join("rt");
        let cdir = scratch.path().join("c");
        for d in [&rt, &cdir] {
            std::fs::create_dir(d).unwrap();
            set_mode(d, 0o700);
        }
        let token = scratch.path().join("token");
        write_token(&token, &random_token(), 0o600);
        let client_token_path = match client_token {
            Some(t) => {
                let p = scratch.path().join("client-token");
                write_token(&p, t, 0o600);
                p
            }
            None => token.clone(),
        };
        let rt_s = rt.display().to_string();
        let mut weston = spawn(
            "weston",
            Place::Netns(&net.a.0, &[]),
            &[("XDG_RUNTIME_DIR", &rt_s)],
            "weston",
            &[
                "--backend=headless-backend.so",
                "--idle-time=0",
                "--no-config",
                "--socket=wayland-1",
            ],
            &scratch.path().join("weston.log"),
        );
        let sock = rt.join("wayland-1");
        let up = wait_for(STARTUP, || {
            if UnixStream::connect(&sock).is_ok() {
                return Some(true);
            }
            weston.exited().map(|_| false)
        });
        assert_eq!(
            up,
            Some(true),
            "weston did not come up in {}\n--- log:\n{}",
            net.a.0,
            weston.log()
        );
        let w = bin();
        let mut compositor_bridge = spawn(
            "compositor-side bridge",
            Place::Netns(&net.a.0, &[]),
            &[("WAYSOCK_LOG", "info")],
            &w,
            &[
                "bridge",
                "--listen",
                &net.endpoint(),
                "--connect",
                &format!("unix:{}", sock.display()),
                "--token-file",
                &token.display().to_string(),
            ],
            &scratch.path().join("compositor-bridge.log"),
        );
        compositor_bridge.wait_log("waysock bridge: tcp:", STARTUP);
        let mut client_bridge = spawn(
            "client-side bridge",
            Place::Netns(&net.b.0, std::slice::from_ref(&rt)),
            &[("WAYSOCK_LOG", "info")],
            &w,
            &[
                "bridge",
                "--listen",
                &format!("unix:{}/wayland-9", cdir.display()),
                "--connect",
                &net.endpoint(),
                "--token-file",
                &client_token_path.display().to_string(),
            ],
            &scratch.path().join("client-bridge.log"),
        );
        client_bridge.wait_log("waysock bridge: unix:", STARTUP);
        Rig {
            client_bridge,
            compositor_bridge,
            _weston: weston,
            net,
            rt,
            cdir,
            token,
            scratch,
        }
    }

    /// `waysock exec --endpoint tcp:… --token-file TOKEN -- wayland-info` in B, straight to
    /// the compositor-side bridge.
    fn exec_info(&self, token: &Path) -> Run {
        let token = token.display().to_string();
        run(
            self.b(),
            &[],
            &bin(),
            &[
                "exec",
                "--endpoint",
                &self.net.endpoint(),
                "--token-file",
                &token,
                "--",
                "wayland-info",
            ],
            CLIENT,
        )
    }

    /// In B, with weston's dir hidden.
    fn b(&self) -> Place<'_> {
        Place::Netns(&self.net.b.0, std::slice::from_ref(&self.rt))
    }

    /// `program args` in B as a client of the client-side bridge.
    fn client(&self, program: &str, args: &[&str], limit: Duration) -> Run {
        let cdir = self.cdir.display().to_string();
        run(
            self.b(),
            &[("XDG_RUNTIME_DIR", &cdir), ("WAYLAND_DISPLAY", "wayland-9")],
            program,
            args,
            limit,
        )
    }

    /// Everything the rig logged, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- compositor-side bridge:\n{}\n--- client-side bridge:\n{}\n--- weston:\n{}",
            self.compositor_bridge.log(),
            self.client_bridge.log(),
            std::fs::read_to_string(self.scratch.path().join("weston.log")).unwrap_or_default()
        )
    }
}

fn saw_compositor(r: &Run) -> bool {
    r.code() == Some(0) && r.stdout().contains("interface: 'wl_compositor'")
}

// ---- tests -------------------------------------------------------------------------------

#[test]
fn weston_in_one_netns_clients_in_another_over_veth() {
    const T: &str = "weston_in_one_netns_clients_in_another_over_veth";
    let Some(net) = network_for(T) else {
        return;
    };
    let rig = Rig::new(net, None);

    // The isolation is real: weston's socket is out of B's reach, and no route leads back.
    let direct = rig.client("wayland-info", &[], CLIENT);
    assert!(
        saw_compositor(&direct),
        "wayland-info through the bridge\n{}\n{}",
        direct.context(),
        rig.logs()
    );
    let rt = rig.rt.join("wayland-1").display().to_string();
    let hidden = run(rig.b(), &[], "test", &["-e", &rt], CLIENT);
    assert_eq!(
        hidden.code(),
        Some(1),
        "weston's socket is visible from B\n{}",
        hidden.context()
    );

    let shm = rig.client("timeout", &["4", "weston-simple-shm"], CLIENT);
    assert_eq!(
        shm.code(),
        Some(124),
        "weston-simple-shm was not still drawing after 4 s\n{}\n{}",
        shm.context(),
        rig.logs()
    );

    // waysock exec straight to the compositor-side bridge.
    let exec = rig.exec_info(&rig.token);
    assert!(
        saw_compositor(&exec),
        "waysock exec --endpoint tcp:\n{}\n{}",
        exec.context(),
        rig.logs()
    );

    // Abstract sockets are per network namespace: one bound in A is not in B's table.
    let name = format!(
        "waysock-test-{}-{}",
        std::process::id(),
        NET.load(Ordering::Relaxed)
    );
    let (w, token) = (bin(), rig.token.display().to_string());
    let mut abs = spawn(
        "client-side bridge on an abstract socket in A",
        Place::Netns(&rig.net.a.0, &[]),
        &[],
        &w,
        &[
            "bridge",
            "--listen",
            &format!("abstract:{name}"),
            "--connect",
            &rig.net.endpoint(),
            "--token-file",
            &token,
        ],
        &rig.scratch.path().join("abstract.log"),
    );
    abs.wait_log("waysock bridge: abstract:", STARTUP);
    let needle = format!("@{name}");
    let in_a = run(
        Place::Netns(&rig.net.a.0, &[]),
        &[],
        "cat",
        &["/proc/net/unix"],
        CLIENT,
    );
    assert!(
        in_a.stdout().contains(&needle),
        "{needle} not bound in A\n{}",
        in_a.context()
    );
    let in_b = run(rig.b(), &[], "cat", &["/proc/net/unix"], CLIENT);
    assert_eq!(in_b.code(), Some(0), "{}", in_b.context());
    assert!(
        !in_b.stdout().contains(&needle),
        "{needle} is visible from B\n{}",
        in_b.context()
    );
}

#[test]
fn wrong_token_is_refused_and_nothing_is_relayed() {
    const T: &str = "wrong_token_is_refused_and_nothing_is_relayed";
    let Some(net) = network_for(T) else {
        return;
    };
    let rig = Rig::new(net, Some(b"not-the-same-secret-at-all-0123"));
    // wayland-info 1.21 exits 0 whatever its roundtrip says (it just lists nothing): what
    // counts is that it saw no global, fast, and printed the bridge's reason (libwayland
    // prints the wl_display.error the bridge sends).
    let start = Instant::now();
    let info = rig.client("wayland-info", &[], CLIENT);
    let took = start.elapsed();
    assert!(
        !info.stdout().contains("interface:"),
        "wayland-info got through with a wrong token\n{}\n{}",
        info.context(),
        rig.logs()
    );
    let reason = format!(
        "wl_display@1: error 3: waysock bridge: {}: the listener rejected our token",
        rig.net.endpoint()
    );
    assert!(
        info.stderr().contains(&reason),
        "wayland-info does not print {reason:?}\n{}",
        info.context()
    );
    assert!(
        took < Duration::from_secs(8) && !info.timed_out,
        "wayland-info took {took:?} to give up\n{}",
        info.context()
    );
    // A client that checks: weston-simple-shm fails at once (not 124: still drawing).
    let start = Instant::now();
    let shm = rig.client("timeout", &["8", "weston-simple-shm"], CLIENT);
    let took = start.elapsed();
    assert!(
        shm.code() == Some(1) && took < Duration::from_secs(6) && shm.stderr().contains(&reason),
        "weston-simple-shm with a wrong token: expected a quick failure saying {reason:?}, \
         took {took:?}\n{}\n{}",
        shm.context(),
        rig.logs()
    );

    // Also waysock exec with the wrong secret: it names the endpoint and the token.
    let exec = rig.exec_info(&rig.scratch.path().join("client-token"));
    exec.assert_code(1);
    let said = format!(
        "waysock exec: {}: the listener rejected our token",
        rig.net.endpoint()
    );
    assert!(exec.stderr().contains(&said), "{}", exec.context());
    assert!(
        !exec.stdout().contains("wl_compositor"),
        "{}",
        exec.context()
    );

    let log = wait_for(Duration::from_secs(5), || {
        let l = rig.compositor_bridge.log();
        (l.matches("refused").count() >= 3).then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "the compositor side did not log three refusals\n{}",
            rig.logs()
        )
    });
    assert!(
        !log.contains("relaying to the compositor"),
        "the compositor side relayed a connection that failed the proof\n{}",
        rig.logs()
    );
    assert!(
        rig.client_bridge.log().contains("token"),
        "the client side does not say why\n{}",
        rig.logs()
    );

    // The same setup with the right secret gets through: the refusal was the token's doing.
    let exec = rig.exec_info(&rig.token);
    assert!(saw_compositor(&exec), "{}\n{}", exec.context(), rig.logs());
    assert_eq!(
        rig.compositor_bridge
            .log()
            .matches("relaying to the compositor")
            .count(),
        1,
        "{}",
        rig.logs()
    );
}

#[test]
fn token_files_that_are_not_private_or_too_short_are_refused() {
    let scratch = Scratch::new("bridge-token");
    let w = bin();
    let cases: [(&str, &[u8], u32, &str); 3] = [
        ("open", b"0123456789abcdef0123", 0o644, "0644"),
        ("group", b"0123456789abcdef0123", 0o640, "0640"),
        ("short", b"0123456789", 0o600, "10 bytes"),
    ];
    for (name, content, mode, says) in cases {
        let f = scratch.path().join(name);
        write_token(&f, content, mode);
        let f = f.display().to_string();
        for args in [
            vec![
                "bridge",
                "--listen",
                "tcp:127.0.0.1:1",
                "--connect",
                "unix:/nonexistent/wayland-0",
                "--token-file",
                &f,
            ],
            vec![
                "bridge",
                "--listen",
                "unix:/nonexistent/wayland-9",
                "--connect",
                "tcp:127.0.0.1:1",
                "--token-file",
                &f,
            ],
            vec![
                "exec",
                "--endpoint",
                "tcp:127.0.0.1:1",
                "--token-file",
                &f,
                "--",
                "true",
            ],
        ] {
            let mut cmd = Command::new(&w);
            cmd.args(&args).stdin(Stdio::null());
            let r = run_command(cmd, CLIENT);
            r.assert_code(2);
            assert!(
                r.stderr().contains(says),
                "{name}: the message does not say {says:?}\n{}",
                r.context()
            );
            assert!(
                r.stderr().contains(&f),
                "{name}: the message does not name the file\n{}",
                r.context()
            );
        }
    }
}

#[test]
fn several_clients_at_once_and_one_killed_mid_session() {
    const T: &str = "several_clients_at_once_and_one_killed_mid_session";
    let Some(net) = network_for(T) else {
        return;
    };
    let rig = Rig::new(net, None);
    let cdir = rig.cdir.display().to_string();
    let env = [
        ("XDG_RUNTIME_DIR", cdir.as_str()),
        ("WAYLAND_DISPLAY", "wayland-9"),
    ];
    // Three drawing clients; the middle one is killed while the others draw.
    let mut drawing: Vec<Proc> = (0..3)
        .map(|i| {
            spawn(
                &format!("weston-simple-shm #{i}"),
                rig.b(),
                &env,
                "timeout",
                &["6", "weston-simple-shm"],
                &rig.scratch.path().join(format!("shm-{i}.log")),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for p in &mut drawing {
        assert!(
            p.exited().is_none(),
            "{} stopped early\n{}\n{}",
            p.what(),
            p.log(),
            rig.logs()
        );
    }
    drawing[1].kill();

    // Meanwhile three wayland-info at once.
    let infos: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| rig.client("wayland-info", &[], CLIENT)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &infos {
        assert!(
            saw_compositor(r),
            "a concurrent wayland-info failed\n{}\n{}",
            r.context(),
            rig.logs()
        );
    }
    for i in [0, 2] {
        let st = drawing[i].wait(Duration::from_secs(15));
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(124),
            "weston-simple-shm #{i} did not draw until its timeout after #1 was killed\n{}\n{}",
            drawing[i].log(),
            rig.logs()
        );
    }
    // Each client had its own session: five of them relayed, none ended in an error
    // but the killed one's (which may end either way).
    let log = rig.compositor_bridge.log();
    assert!(
        log.matches("relaying to the compositor").count() >= 6,
        "{}",
        rig.logs()
    );
}

// ---- keymap through both bridge processes, real Wayland libraries ---------------------------

mod keymap {
    use super::*;
    use wayland_server::protocol::{wl_keyboard, wl_seat};
    use wayland_server::{DataInit, Dispatch, DisplayHandle, GlobalDispatch, New};
    use waysock_testkit::compositor::{self, wayland_server};

    /// The keymap the compositor hands out (a NUL-terminated string, as xkbcommon writes).
    pub fn keymap() -> Vec<u8> {
        let mut k: Vec<u8> =
            b"xkb_keymap { xkb_keycodes \"waysock\" { minimum = 8; maximum = 255; }; };\n"
                .iter()
                .copied()
                .cycle()
                .take(60_000)
                .collect();
        k.push(0);
        k
    }

    pub struct Server {
        keymap: OwnedFd,
        size: u32,
    }

    impl GlobalDispatch<wl_seat::WlSeat, ()> for Server {
        fn bind(
            _: &mut Self,
            _: &DisplayHandle,
            _: &wayland_server::Client,
            resource: New<wl_seat::WlSeat>,
            _: &(),
            data_init: &mut DataInit<'_, Self>,
        ) {
            let seat = data_init.init(resource, ());
            seat.capabilities(wl_seat::Capability::Keyboard);
        }
    }

    impl Dispatch<wl_seat::WlSeat, ()> for Server {
        fn request(
            state: &mut Self,
            _: &wayland_server::Client,
            _: &wl_seat::WlSeat,
            request: wl_seat::Request,
            _: &(),
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            if let wl_seat::Request::GetKeyboard { id } = request {
                let kb = data_init.init(id, ());
                kb.keymap(
                    wl_keyboard::KeymapFormat::XkbV1,
                    state.keymap.as_fd(),
                    state.size,
                );
            }
        }
    }

    impl Dispatch<wl_keyboard::WlKeyboard, ()> for Server {
        fn request(
            _: &mut Self,
            _: &wayland_server::Client,
            _: &wl_keyboard::WlKeyboard,
            _: wl_keyboard::Request,
            _: &(),
            _: &DisplayHandle,
            _: &mut DataInit<'_, Self>,
        ) {
        }
    }

    /// The kit's in-process compositor offering a seat with a keyboard.
    pub type Compositor = compositor::Compositor<Server>;

    /// Starts it on `listener`.
    pub fn start(listener: UnixListener) -> Compositor {
        compositor::Compositor::start(listener, |dh| {
            let content = keymap();
            let fd = rustix::fs::memfd_create("keymap", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
            let mut f = std::fs::File::from(fd);
            f.write_all(&content).unwrap();
            dh.create_global::<Server, wl_seat::WlSeat, ()>(7, ());
            Server {
                keymap: f.into(),
                size: content.len() as u32,
            }
        })
        .expect("start the compositor")
    }

    /// The client: binds the seat, gets the keyboard, keeps the keymap it is sent.
    #[derive(Default)]
    pub struct Client {
        pub keymap: Option<(OwnedFd, u32)>,
    }

    use wayland_client::protocol::{wl_keyboard as ck, wl_seat as cs};
    use wayland_client::{Connection, QueueHandle};

    impl wayland_client::Dispatch<cs::WlSeat, ()> for Client {
        fn event(
            _: &mut Self,
            _: &cs::WlSeat,
            _: cs::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl wayland_client::Dispatch<ck::WlKeyboard, ()> for Client {
        fn event(
            state: &mut Self,
            _: &ck::WlKeyboard,
            event: ck::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            if let ck::Event::Keymap { fd, size, .. } = event {
                state.keymap = Some((fd, size));
            }
        }
    }

    /// Connects over `stream` and returns the keymap's bytes (read from the fd it got).
    pub fn fetch(stream: UnixStream) -> Result<Vec<u8>, String> {
        let conn = Connection::from_socket(stream).map_err(|e| e.to_string())?;
        let mut queue = conn.new_event_queue();
        let qh = queue.handle();
        let (registry, globals) = compositor::client::globals(&conn)?;
        for g in globals.iter().filter(|g| g.interface == "wl_seat") {
            let seat = registry.bind::<cs::WlSeat, _, _>(g.name, g.version.min(7), &qh, ());
            seat.get_keyboard(&qh, ());
        }
        let mut client = Client::default();
        for _ in 0..5 {
            queue.roundtrip(&mut client).map_err(|e| e.to_string())?;
            if client.keymap.is_some() {
                break;
            }
        }
        let (fd, size) = client.keymap.ok_or("no keymap event")?;
        let mut out = vec![0u8; size as usize];
        let mut got = 0;
        while got < out.len() {
            let n =
                rustix::io::pread(&fd, &mut out[got..], got as u64).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            got += n;
        }
        out.truncate(got);
        Ok(out)
    }
}

/// Both bridge ends as processes on loopback: the compositor side relaying to `comp_sock`,
/// the client side listening on `display`; `extra` goes to both.
fn loopback_bridges(
    scratch: &Scratch,
    comp_sock: &Path,
    display: &Path,
    extra: &[&str],
) -> (Proc, Proc) {
    let listen = format!("unix:{}", display.display());
    loopback_bridges_on(scratch, comp_sock, &listen, &[], extra)
}

/// [`loopback_bridges`] with the client side's `--listen` and environment given (`None`
/// removes a variable).
fn loopback_bridges_on(
    scratch: &Scratch,
    comp_sock: &Path,
    listen: &str,
    client_env: &[(&str, Option<&str>)],
    extra: &[&str],
) -> (Proc, Proc) {
    let token = scratch.path().join("token");
    write_token(&token, &random_token(), 0o600);
    let token = token.display().to_string();
    let w = bin();

    // The compositor side on a free loopback port (another process may take it between our
    // probe and the bind: then try another).
    let (compositor_bridge, port) = spawn_on_free_port(
        "compositor-side bridge",
        &scratch.path().join("compositor-bridge.log"),
        "waysock bridge: tcp:",
        STARTUP,
        |port| {
            command(
                Place::Here,
                &[("WAYSOCK_LOG", "info")],
                &w,
                &[
                    &[
                        "bridge",
                        "--listen",
                        &format!("tcp:127.0.0.1:{port}"),
                        "--connect",
                        &format!("unix:{}", comp_sock.display()),
                        "--token-file",
                        &token,
                    ],
                    extra,
                ]
                .concat(),
            )
        },
    );
    let mut cmd = command(
        Place::Here,
        &[("WAYSOCK_LOG", "info")],
        &w,
        &[
            &[
                "bridge",
                "--listen",
                listen,
                "--connect",
                &format!("tcp:127.0.0.1:{port}"),
                "--token-file",
                &token,
            ],
            extra,
        ]
        .concat(),
    );
    for (k, v) in client_env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut client_bridge = Proc::spawn(
        "client-side bridge",
        cmd,
        &scratch.path().join("client-bridge.log"),
    );
    client_bridge.wait_log("waysock bridge: unix:", STARTUP);
    (compositor_bridge, client_bridge)
}

/// The loopback rig: a `wayland-server` compositor with a keyboard in this process, both
/// bridge ends as processes (`extra` to both), clients connect to `display`.
struct LoopbackRig {
    display: PathBuf,
    // Dropped in this order: the bridges first, then the compositor, then the files.
    server_end: Proc,
    client_end: Proc,
    _compositor: keymap::Compositor,
    _scratch: Scratch,
}

impl LoopbackRig {
    fn start(name: &str, extra: &[&str]) -> LoopbackRig {
        let scratch = Scratch::new(name);
        let comp_dir = scratch.path().join("comp");
        let cdir = scratch.path().join("c");
        for d in [&comp_dir, &cdir] {
            std::fs::create_dir(d).unwrap();
            set_mode(d, 0o700);
        }
        let comp_sock = comp_dir.join("wayland-7");
        let compositor = keymap::start(UnixListener::bind(&comp_sock).unwrap());
        let display = cdir.join("wayland-9");
        let (server_end, client_end) = loopback_bridges(&scratch, &comp_sock, &display, extra);
        LoopbackRig {
            display,
            server_end,
            client_end,
            _compositor: compositor,
            _scratch: scratch,
        }
    }
}

#[test]
fn keymap_reaches_a_real_client_through_both_bridge_processes() {
    if !can_run_loopback("keymap_reaches_a_real_client_through_both_bridge_processes") {
        return;
    }
    let rig = LoopbackRig::start("bridge-keymap", &[]);
    let (compositor_bridge, client_bridge) = (&rig.server_end, &rig.client_end);

    let stream = UnixStream::connect(&rig.display).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(keymap::fetch(stream));
    });
    let got = rx
        .recv_timeout(CLIENT)
        .unwrap_or_else(|_| {
            panic!(
                "no keymap within {CLIENT:?}\n--- compositor side:\n{}\n--- client side:\n{}",
                compositor_bridge.log(),
                client_bridge.log()
            )
        })
        .unwrap_or_else(|e| {
            panic!(
                "client: {e}\n--- compositor side:\n{}\n--- client side:\n{}",
                compositor_bridge.log(),
                client_bridge.log()
            )
        });
    assert!(
        got == keymap::keymap(),
        "the keymap's bytes differ ({} bytes read)",
        got.len()
    );
}

/// CPU seconds (user + system) the processes under `unshare` (`p`'s, in its pid namespace)
/// have used.
fn cpu_of_child(p: &Proc) -> f64 {
    let below = descendants(p.pid());
    assert!(!below.is_empty(), "{}: no process under unshare", p.what());
    cpu_seconds(&below)
}

/// One `wl_display.sync` roundtrip on a raw connection: callback `done` and `delete_id` back.
fn raw_sync(s: &mut UnixStream) {
    use std::io::Read as _;
    const CALLBACK: u32 = 2;
    let mut req = Vec::new();
    for w in [1u32, 12 << 16, CALLBACK] {
        req.extend_from_slice(&w.to_ne_bytes());
    }
    s.write_all(&req).unwrap();
    let mut got = [0u8; 24];
    s.read_exact(&mut got).unwrap();
    let word = |i: usize| u32::from_ne_bytes(got[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(
        (word(0), word(3), word(4)),
        (CALLBACK, 1, (12 << 16) | 1),
        "expected wl_callback.done then wl_display.delete_id: {got:?}"
    );
}

#[test]
fn busy_polling_stops_when_the_session_goes_idle() {
    // The bridge polls briefly for replies while messages flow (a shorter roundtrip): an open
    // but idle session must not keep doing so. Both ends with a long poll budget, a burst of
    // roundtrips, then a client that stays connected and silent for 1.5 s: the two bridge
    // processes together may use a few ticks in that time, never a core.
    let test = "busy_polling_stops_when_the_session_goes_idle";
    if !can_run_loopback(test) {
        return;
    }
    let rig = LoopbackRig::start("bridge-idle", &["--busy-poll-us", "10000"]);
    let (server_end, client_end) = (&rig.server_end, &rig.client_end);

    let mut s = UnixStream::connect(&rig.display).unwrap();
    s.set_read_timeout(Some(CLIENT)).unwrap();
    for _ in 0..500 {
        raw_sync(&mut s);
    }
    // Let the last polls run out (each at most 10 ms), then measure a silent stretch.
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_of_child(server_end) + cpu_of_child(client_end);
    std::thread::sleep(Duration::from_millis(1500));
    let idle = cpu_of_child(server_end) + cpu_of_child(client_end) - before;
    // Still relaying after the pause.
    raw_sync(&mut s);
    assert!(
        idle < 0.15,
        "the bridge ends used {idle:.2} s of CPU in 1.5 s with the session idle\n\
         --- compositor side:\n{}\n--- client side:\n{}",
        server_end.log(),
        client_end.log()
    );
}

#[test]
fn busy_poll_budget_out_of_range_is_a_usage_error() {
    let scratch = Scratch::new("bridge-busy-usage");
    let token = scratch.path().join("token");
    write_token(&token, &random_token(), 0o600);
    let mut cmd = Command::new(bin());
    cmd.args([
        "bridge",
        "--listen",
        "tcp:127.0.0.1:0",
        "--connect",
        "wayland-0",
    ])
    .arg("--token-file")
    .arg(&token)
    .args(["--busy-poll-us", "10001"]);
    // Bounded: were the value accepted, the bridge would serve until killed.
    let out = run_command(cmd, Duration::from_secs(20));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    assert!(out.stderr().contains("--busy-poll-us"), "{}", out.context());
}

// ---- honest errors (issue 12, item 3) ------------------------------------------------------

/// `wayland-info` and `weston-simple-shm` through a client-side bridge whose far end is
/// `far` (nothing there), all in `place`: both print the bridge's reason, naming `far`, and
/// `weston-simple-shm` fails (wayland-info 1.21 exits 0 whatever its roundtrip says); so does
/// `waysock exec --endpoint far`.
fn clients_hear_why(test: &str, place: Place<'_>, far: &str, says: &str) {
    let scratch = Scratch::new(test);
    let cdir = scratch.path().join("c");
    std::fs::create_dir(&cdir).unwrap();
    set_mode(&cdir, 0o700);
    let token = scratch.path().join("token");
    write_token(&token, &random_token(), 0o600);
    let token = token.display().to_string();
    let w = bin();
    let mut bridge = spawn(
        "client-side bridge",
        place,
        &[("WAYSOCK_LOG", "info")],
        &w,
        &[
            "bridge",
            "--listen",
            &format!("unix:{}/wayland-9", cdir.display()),
            "--connect",
            far,
            "--token-file",
            &token,
        ],
        &scratch.path().join("client-bridge.log"),
    );
    bridge.wait_log("waysock bridge: unix:", STARTUP);
    let cdir = cdir.display().to_string();
    let env = [
        ("XDG_RUNTIME_DIR", cdir.as_str()),
        ("WAYLAND_DISPLAY", "wayland-9"),
    ];
    let reason = format!("wl_display@1: error 3: waysock bridge: {far}{says}");
    let info = run(place, &env, "wayland-info", &[], CLIENT);
    assert!(
        info.stderr().contains(&reason) && !info.stdout().contains("interface:"),
        "wayland-info does not print {reason:?}\n{}\n--- bridge:\n{}",
        info.context(),
        bridge.log()
    );
    let shm = run(place, &env, "timeout", &["20", "weston-simple-shm"], CLIENT);
    assert!(
        shm.code() == Some(1) && shm.stderr().contains(&reason),
        "weston-simple-shm: expected exit 1 saying {reason:?}\n{}\n--- bridge:\n{}",
        shm.context(),
        bridge.log()
    );
    let exec = run(
        place,
        &[],
        &w,
        &[
            "exec",
            "--endpoint",
            far,
            "--token-file",
            &token,
            "--",
            "true",
        ],
        CLIENT,
    );
    exec.assert_code(1);
    let said = format!("waysock exec: {far}{says}");
    assert!(
        exec.stderr().contains(&said),
        "exec does not say {said:?}\n{}",
        exec.context()
    );
}

#[test]
fn a_far_end_that_refuses_is_named_to_the_client() {
    let test = "a_far_end_that_refuses_is_named_to_the_client";
    if !can_run_loopback(test)
        || !Needs::new(test)
            .programs(&["wayland-info", "weston-simple-shm", "timeout"])
            .met()
    {
        return;
    }
    // A port nothing listens on: the kernel answers with a reset.
    let port = waysock_testkit::free_port().unwrap();
    clients_hear_why(
        "bridge-refused",
        Place::Here,
        &format!("tcp:127.0.0.1:{port}"),
        " refused the connection",
    );
}

#[test]
fn an_unreachable_far_end_is_named_to_the_client() {
    let test = "an_unreachable_far_end_is_named_to_the_client";
    if !can_run(test) {
        return;
    }
    // A network namespace of our own with only loopback up: no route to the far end, and
    // nothing leaves the namespace.
    let ns = Netns(format!("wsbr-{}-unreach", std::process::id()));
    if let Err(why) = ip(&["netns", "add", &ns.0]) {
        skip(test, &why);
        return;
    }
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]).unwrap();
    clients_hear_why(
        "bridge-unreachable",
        Place::Netns(&ns.0, &[]),
        &format!("tcp:10.231.254.1:{PORT}"),
        " cannot be reached: Network is unreachable",
    );
}

#[test]
fn listen_on_a_display_name_without_a_runtime_dir_follows_the_chain_and_sigterm_cleans_up() {
    let test =
        "listen_on_a_display_name_without_a_runtime_dir_follows_the_chain_and_sigterm_cleans_up";
    if !can_run_loopback(test) {
        return;
    }
    let scratch = Scratch::new("bridge-listen-chain");
    let home = scratch.path().join("home");
    let comp_dir = scratch.path().join("comp");
    for d in [&home, &comp_dir] {
        std::fs::create_dir(d).unwrap();
        set_mode(d, 0o700);
    }
    let comp_sock = comp_dir.join("wayland-7");
    let _compositor = keymap::start(UnixListener::bind(&comp_sock).unwrap());
    let home_s = home.display().to_string();
    // The README's host-b line with XDG_RUNTIME_DIR unset: a path in `/`, which is no runtime
    // dir; the message says what to pass instead.
    let mut cmd = Command::new(bin());
    cmd.args([
        "bridge",
        "--listen",
        "unix:/wayland-9",
        "--connect",
        "tcp:127.0.0.1:1",
        "--token-file",
    ])
    .arg(scratch.path().join("token"))
    .env_remove("XDG_RUNTIME_DIR")
    .stdin(Stdio::null());
    write_token(&scratch.path().join("token"), &random_token(), 0o600);
    let r = run_command(cmd, CLIENT);
    r.assert_code(1);
    assert!(
        r.stderr().contains("cannot listen on unix:/wayland-9")
            && r.stderr().contains("pass --listen wayland-9"),
        "{}",
        r.context()
    );

    // `--listen unix:wayland-9` (a name, not a path) goes through the chain: here narrowed to
    // $HOME/.local/run, as `waysock run` would bind it.
    let (_server_end, mut client_end) = loopback_bridges_on(
        &scratch,
        &comp_sock,
        "unix:wayland-9",
        &[
            ("XDG_RUNTIME_DIR", None),
            ("HOME", Some(&home_s)),
            ("WAYSOCK_STRATEGIES", Some("home")),
        ],
        &[],
    );
    let dir = home.join(".local/run");
    let socket = dir.join("wayland-9");
    let lock = dir.join("wayland-9.lock");
    assert!(
        client_end
            .log()
            .contains(&format!("waysock bridge: unix:{}", socket.display())),
        "{}",
        client_end.log()
    );
    assert!(client_end.log().contains(&format!(
        "XDG_RUNTIME_DIR={} WAYLAND_DISPLAY=wayland-9",
        dir.display()
    )));
    let got = keymap::fetch(UnixStream::connect(&socket).unwrap()).unwrap();
    assert!(
        got == keymap::keymap(),
        "the keymap differs through the bridge"
    );
    assert!(lock.exists(), "no lock at {}", lock.display());

    // SIGTERM to the bridge itself (under unshare): its socket and lock go with it.
    let below = descendants(client_end.pid());
    assert_eq!(below.len(), 1, "{below:?}");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(below[0] as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let st = client_end.wait(Duration::from_secs(10));
    assert!(st.is_some(), "the bridge did not end on SIGTERM");
    assert!(
        !socket.exists() && !lock.exists(),
        "left behind after SIGTERM: {:?}",
        std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
}
