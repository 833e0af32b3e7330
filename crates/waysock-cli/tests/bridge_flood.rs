//! `waysock bridge` under a slowloris flood (issue 8, hole 5).
//!
//! A real compositor-side bridge process listens on a free port of 127.0.0.1 (loopback only)
//! and relays to a Unix socket this test holds. The test plays the attacker: it opens
//! [`IDLE`] connections that never send a byte and [`DRIPPING`] ones that send a greeting one
//! byte at a time, and it reopens every connection the bridge closes, as an attacker
//! reconnecting would. While that flood is up, a legitimate client (`waysock exec --endpoint
//! tcp:… -- true`, which authenticates before it runs `true`) must get through, twice: at once,
//! and again after the bridge's handshake deadline has expired the first wave and the flood
//! has reopened it. The bridge's log must name the expired handshakes as timeouts.
//!
//! The bridge is started with a soft descriptor limit of 1024 (the usual default): holding the
//! flood is its own business. The test process then raises its own limit to hold the flood;
//! it skips (`SKIPPED: …`) only when the hard limit does not allow that (as root it raises the
//! hard limit too, so CI never skips).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use waysock_testkit::{run_command, set_mode, skip, spawn_on_free_port, wait_for, Proc, Scratch};

/// Connections that connect and then say nothing.
const IDLE: usize = 1000;
/// Connections that send a greeting one byte at a time (half every 100 ms, half every second).
const DRIPPING: usize = 24;
/// Descriptors this test process needs: the flood, the reopened ones, slack.
const FDS_NEEDED: u64 = 4096;
/// The bridge's soft descriptor limit at startup (the common default).
const BRIDGE_SOFT_LIMIT: u64 = 1024;
/// Reconnects per flood round at most (a round is [`ROUND`]): an attacker, not a fork bomb.
const RECONNECTS_PER_ROUND: usize = 100;
/// One flood round.
const ROUND: Duration = Duration::from_millis(20);
/// The flood never outlives this, whatever happens to the test.
const FLOOD_LIMIT: Duration = Duration::from_secs(120);
/// Startup waits.
const STARTUP: Duration = Duration::from_secs(20);
/// One client run.
const CLIENT: Duration = Duration::from_secs(30);
/// Longer than the bridge's handshake deadline (5 s): the first wave has expired by then.
const PAST_DEADLINE: Duration = Duration::from_secs(7);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_waysock")
}

fn write_token(path: &Path) {
    let mut t = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut t))
        .unwrap();
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&t))
        .unwrap();
    set_mode(path, 0o600);
}

/// Sets our soft descriptor limit (the hard one too when it is lower and we may raise it).
fn set_nofile(soft: u64) -> Result<(), String> {
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(u64::MAX);
    let new = Rlimit {
        current: Some(soft),
        maximum: Some(hard.max(soft)),
    };
    setrlimit(Resource::Nofile, new).map_err(|e| {
        format!("cannot set RLIMIT_NOFILE to {soft} (hard limit {hard}): {e}; run as root or raise `ulimit -Hn`")
    })
}

/// The compositor-side bridge process, killed when dropped.
struct Bridge {
    proc: Proc,
    port: u16,
}

impl Bridge {
    fn log(&self) -> String {
        self.proc.log()
    }

    fn start(scratch: &Scratch, token: &Path, compositor: &Path) -> Bridge {
        let (proc, port) = spawn_on_free_port(
            "the bridge",
            &scratch.path().join("bridge.log"),
            "waysock bridge: tcp:",
            STARTUP,
            |port| {
                let mut cmd = Command::new(bin());
                cmd.args(["bridge", "--listen", &format!("tcp:127.0.0.1:{port}")])
                    .arg("--connect")
                    .arg(format!("unix:{}", compositor.display()))
                    .arg("--token-file")
                    .arg(token)
                    .env("WAYSOCK_LOG", "info");
                cmd
            },
        );
        Bridge { proc, port }
    }
}

/// One attacking connection.
struct Conn {
    stream: Option<TcpStream>,
    /// Greeting bytes sent so far (dripping connections).
    sent: usize,
    /// Drips one byte every this many rounds (0: idle, never sends).
    every: u32,
    /// Opened at least once?
    opened: bool,
}

/// The attacker: a thread keeping [`IDLE`] + [`DRIPPING`] connections open until stopped.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<String>>,
}

impl Flood {
    /// Starts the flood; returns once every connection has been opened once (the bridge may
    /// have closed some since: they are being reopened).
    fn start(addr: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let (up_tx, up_rx) = mpsc::channel();
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || flood(addr, &s, up_tx));
        up_rx
            .recv_timeout(STARTUP)
            .expect("the flood did not open its connections in time");
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; its summary.
    fn stop(mut self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_else(|_| "flood thread panicked".into()))
            .unwrap_or_default()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flood(addr: SocketAddr, stop: &AtomicBool, up: mpsc::Sender<()>) -> String {
    // As long as a bridge connector's greeting: the magic and a Noise message (an ephemeral
    // key, a one-byte offer and a tag; made up, so it would be refused as a wrong token if it
    // ever arrived whole, but the drip is slower than the deadline).
    let mut greeting = b"WSB8".to_vec();
    greeting.extend((0..49u8).map(|i| i.wrapping_mul(37)));
    let mut conns: Vec<Conn> = (0..IDLE + DRIPPING)
        .map(|i| Conn {
            stream: None,
            sent: 0,
            every: match i.checked_sub(IDLE) {
                None => 0,
                Some(d) if d % 2 == 0 => 5,
                Some(_) => 50,
            },
            opened: false,
        })
        .collect();
    let (mut opened, mut closed_by_bridge, mut failed) = (0u64, 0u64, 0u64);
    let mut signalled = false;
    let start = Instant::now();
    let mut round = 0u32;
    while !stop.load(Ordering::SeqCst) && start.elapsed() < FLOOD_LIMIT {
        round = round.wrapping_add(1);
        // Open what is missing, a bounded number per round, those never opened first.
        let mut budget = RECONNECTS_PER_ROUND;
        let (fresh, again): (Vec<&mut Conn>, Vec<&mut Conn>) = conns
            .iter_mut()
            .filter(|c| c.stream.is_none())
            .partition(|c| !c.opened);
        for c in fresh.into_iter().chain(again) {
            if budget == 0 {
                break;
            }
            budget -= 1;
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    s.set_nonblocking(true).unwrap();
                    c.stream = Some(s);
                    c.sent = 0;
                    c.opened = true;
                    opened += 1;
                }
                Err(_) => failed += 1,
            }
        }
        if !signalled && conns.iter().all(|c| c.opened) {
            signalled = true;
            let _ = up.send(());
        }
        // Notice what the bridge closed (read and ignore anything it says first).
        {
            let (idx, mut pfds): (Vec<usize>, Vec<rustix::event::PollFd<'_>>) = conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let s = c.stream.as_ref()?;
                    Some((i, PollFd::new(s, PollFlags::IN)))
                })
                .unzip();
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let _ = rustix::event::poll(&mut pfds, Some(&zero));
            let ready: Vec<usize> = idx
                .iter()
                .zip(&pfds)
                .filter(|(_, p)| !p.revents().is_empty())
                .map(|(i, _)| *i)
                .collect();
            drop(pfds);
            for i in ready {
                let c = &mut conns[i];
                let mut buf = [0u8; 256];
                let gone = match c.stream.as_mut().map(|s| s.read(&mut buf)) {
                    Some(Ok(0)) => true,
                    Some(Ok(_)) => false,
                    Some(Err(e)) => e.kind() != std::io::ErrorKind::WouldBlock,
                    None => false,
                };
                if gone {
                    c.stream = None;
                    closed_by_bridge += 1;
                }
            }
        }
        // Drip.
        for c in conns.iter_mut().filter(|c| c.every > 0) {
            if round % c.every != 0 || c.sent >= greeting.len() {
                continue;
            }
            if let Some(s) = c.stream.as_mut() {
                if s.write(&greeting[c.sent..c.sent + 1]).is_ok() {
                    c.sent += 1;
                }
            }
        }
        std::thread::sleep(ROUND);
    }
    let open = conns.iter().filter(|c| c.stream.is_some()).count();
    format!(
        "flood: {opened} connections opened, {closed_by_bridge} closed by the bridge, \
         {failed} connects failed, {open} open at the end"
    )
}

/// The legitimate client: `waysock exec --endpoint tcp:… -- true` authenticates before it
/// runs `true`.
fn legitimate_client(port: u16, token: &Path) -> waysock_testkit::Run {
    let mut cmd = Command::new(bin());
    cmd.args(["exec", "--endpoint", &format!("tcp:127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(token)
        .args(["--", "true"])
        .stdin(Stdio::null());
    run_command(cmd, CLIENT)
}

/// Waits for one connection on the compositor's socket (the bridge relays an authenticated
/// client there).
fn compositor_sees_a_connection(compositor: &UnixListener) -> bool {
    wait_for(CLIENT, || compositor.accept().ok().map(|_| ())).is_some()
}

#[test]
fn a_legitimate_client_gets_through_a_slowloris_flood() {
    let test = "a_legitimate_client_gets_through_a_slowloris_flood";
    let original = getrlimit(Resource::Nofile);
    if let Err(why) = set_nofile(FDS_NEEDED.max(original.current.unwrap_or(0))) {
        skip(test, &why);
        return;
    }
    let scratch = Scratch::new("bridge-flood");
    let token = scratch.path().join("token");
    write_token(&token);
    let comp_dir = scratch.path().join("comp");
    std::fs::create_dir(&comp_dir).unwrap();
    set_mode(&comp_dir, 0o700);
    let comp_sock = comp_dir.join("wayland-7");
    let compositor = UnixListener::bind(&comp_sock).unwrap();
    compositor.set_nonblocking(true).unwrap();

    // The bridge starts with the usual soft limit; this process keeps the larger one.
    set_nofile(BRIDGE_SOFT_LIMIT).unwrap();
    let bridge = Bridge::start(&scratch, &token, &comp_sock);
    set_nofile(FDS_NEEDED.max(original.current.unwrap_or(0))).unwrap();

    let addr: SocketAddr = format!("127.0.0.1:{}", bridge.port).parse().unwrap();
    let flood = Flood::start(addr);
    // Let the bridge take in the whole flood before the client comes.
    std::thread::sleep(Duration::from_millis(500));

    let first = legitimate_client(bridge.port, &token);
    assert!(
        first.code() == Some(0),
        "a legitimate client was locked out by {IDLE} idle and {DRIPPING} dripping \
         connections\n{}\n--- bridge log (tail):\n{}",
        first.context(),
        tail(&bridge.log())
    );
    assert!(
        compositor_sees_a_connection(&compositor),
        "the bridge did not relay the client to the compositor\n--- bridge log (tail):\n{}",
        tail(&bridge.log())
    );

    // The first wave expires and the attacker reconnects: still let through.
    std::thread::sleep(PAST_DEADLINE);
    let second = legitimate_client(bridge.port, &token);
    let summary = flood.stop();
    assert!(
        second.code() == Some(0),
        "a legitimate client was locked out after the flood reconnected ({summary})\n{}\n\
         --- bridge log (tail):\n{}",
        second.context(),
        tail(&bridge.log())
    );
    assert!(compositor_sees_a_connection(&compositor));

    let log = bridge.log();
    assert!(
        log.contains("handshake timed out after"),
        "expired handshakes are not logged as timeouts ({summary})\n--- bridge log (tail):\n{}",
        tail(&log)
    );
    assert!(
        !log.contains("Resource temporarily unavailable"),
        "an expired handshake is logged as EAGAIN\n--- bridge log (tail):\n{}",
        tail(&log)
    );
    let _ = setrlimit(Resource::Nofile, original);
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
