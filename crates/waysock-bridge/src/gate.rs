//! The handshake stage of the TCP listening end: every unauthenticated connection waits here,
//! and one thread drives all of them from one `poll` loop (no thread per connection), until
//! it has proved it holds the token, failed, or run out of time.
//!
//! Think of a peer that wants to lock legitimate clients out (slowloris): it opens as many
//! connections as it can and sends nothing, or a byte now and then. What it gets:
//! - Each connection holds one descriptor and a few hundred bytes, and a handshake must finish
//!   within [`HANDSHAKE_DEADLINE`] of its accept, however its bytes trickle in.
//! - The table is bounded ([`Limits::max_pending`], sized from the descriptor limit). When it
//!   is full, a new connection sheds the *oldest* pending one instead of being refused, so a
//!   client that sends its greeting promptly (as every real one does, at once) gets through
//!   unless the flood opens more than the whole table in one of its round trips. A flood of
//!   idle connections only ever sheds its own members.
//! - One source (an IPv4 address, an IPv6 /64) may hold at most [`Limits::per_source`]
//!   entries; beyond that it sheds its own oldest, so a remote flood cannot crowd out other
//!   hosts. (On loopback every peer is 127.0.0.1: there the age order is what protects.)
//! - A shed or expired connection is told why before it is closed ([`Refusal`]), and the log
//!   says "shed" or "handshake timed out after N s"; log lines about refused handshakes are
//!   rate-limited, with a count of the ones left out.
//! - Running out of descriptors in `accept` sheds the oldest pending connection and retries.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::auth::{AuthError, Dismissal, Listening, Refusal, Token, GREETING_LEN, PROOF_LEN};
use crate::channel::{Sealed, SessionKeys};

/// How long one handshake may take on the listening end, from its accept to the last byte.
/// A real connector needs two round trips.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once, whatever the descriptor limit allows.
pub const MAX_PENDING_HANDSHAKES: usize = 4096;
/// Descriptors kept out of the handshake budget (logs, the compositor, the listener…).
const FD_RESERVE: u64 = 64;
/// Connections accepted per loop round before the pending ones are served again.
const ACCEPT_BATCH: usize = 64;
/// Pause before `accept` is tried again when it fails and nothing can be shed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Log lines of one kind (timeouts, sheds, refusals) per [`NOISE_WINDOW`] at most.
const NOISE_LINES: u32 = 10;
/// See [`NOISE_LINES`].
const NOISE_WINDOW: Duration = Duration::from_secs(10);

/// The bounds of the handshake stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections in the handshake at once; one more sheds the oldest.
    pub max_pending: usize,
    /// Most of those from one source (an IPv4 address, an IPv6 /64); one more sheds that
    /// source's oldest.
    pub per_source: usize,
    /// How long one handshake may take from its accept.
    pub deadline: Duration,
}

impl Limits {
    /// The limits for a process allowed `fds` descriptors: half of them, less a reserve, for
    /// handshakes (the rest is for sessions), between 16 and [`MAX_PENDING_HANDSHAKES`]; one
    /// source may take half of the table.
    pub fn for_fd_limit(fds: u64) -> Limits {
        let budget = fds.saturating_sub(FD_RESERVE) / 2;
        let max_pending = usize::try_from(budget)
            .unwrap_or(usize::MAX)
            .clamp(16, MAX_PENDING_HANDSHAKES);
        Limits {
            max_pending,
            per_source: (max_pending / 2).max(8),
            deadline: HANDSHAKE_DEADLINE,
        }
    }

    /// The limits for this process's current soft descriptor limit.
    pub fn for_this_process() -> Limits {
        let fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        Limits::for_fd_limit(fds)
    }
}

/// Raises this process's soft descriptor limit to its hard limit (at most 65536), so that a
/// flood of connections is held and shed by age instead of failing `accept`. Returns the soft
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const WANTED: u64 = 65536;
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    let want = now.maximum.unwrap_or(u64::MAX).min(WANTED);
    if soft >= want {
        return soft;
    }
    let new = Rlimit {
        current: Some(want),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => want,
        Err(e) => {
            tracing::debug!("cannot raise the descriptor limit from {soft} to {want}: {e}");
            soft
        }
    }
}

/// Where a connection comes from, as far as the per-source cap is concerned: an IPv4 address,
/// or an IPv6 /64 (one host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(p)
                }
            },
        }
    }
}

/// Where a handshake stands.
enum Phase {
    /// Reading the connector's greeting (Noise message 1).
    Greeting,
    /// Our reply (Noise message 2) is sent (or going out); reading the connector's key
    /// confirmation.
    Proof(Listening),
    /// The confirmation was right; the status byte is going out.
    Accepted(SessionKeys),
}

/// One connection in the handshake.
struct Pending {
    tcp: TcpStream,
    name: String,
    source: Source,
    /// Accept order: the smallest is the oldest.
    seq: u64,
    until: Instant,
    phase: Phase,
    buf: [u8; GREETING_LEN],
    have: usize,
    /// Bytes still to send.
    out: Vec<u8>,
}

/// What a step of a handshake came to.
enum Step {
    /// Waiting for the peer.
    Wait,
    /// Authenticated.
    Done(SessionKeys),
    /// Failed: what to log.
    Failed(String),
}

impl Pending {
    fn interest(&self) -> PollFlags {
        if self.out.is_empty() {
            PollFlags::IN
        } else {
            PollFlags::OUT
        }
    }

    /// Moves the handshake on as far as the socket allows without blocking.
    fn step(&mut self, token: &Token) -> Step {
        loop {
            while !self.out.is_empty() {
                match (&self.tcp).write(&self.out) {
                    Ok(0) => return Step::Failed("refused: the connection closed".into()),
                    Ok(n) => {
                        self.out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Step::Failed(format!("refused: handshake I/O: {e}")),
                }
            }
            let need = match &self.phase {
                Phase::Accepted(_) => {
                    return match std::mem::replace(&mut self.phase, Phase::Greeting) {
                        Phase::Accepted(keys) => Step::Done(keys),
                        _ => unreachable!("the phase was just matched"),
                    };
                }
                Phase::Greeting => GREETING_LEN,
                Phase::Proof(_) => PROOF_LEN,
            };
            match (&self.tcp).read(&mut self.buf[self.have..need]) {
                Ok(0) => return Step::Failed(self.closed()),
                Ok(n) => self.have += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Step::Failed(self.closed())
                }
                Err(e) => return Step::Failed(format!("refused: handshake I/O: {e}")),
            }
            if matches!(self.phase, Phase::Greeting) {
                if let Err(d) = Listening::check_start(&self.buf[..self.have]) {
                    return self.dismissed(d);
                }
            }
            if self.have < need {
                continue;
            }
            self.have = 0;
            match std::mem::replace(&mut self.phase, Phase::Greeting) {
                Phase::Greeting => match Listening::greet(token, &self.buf) {
                    Ok((listening, reply)) => {
                        self.out = reply.to_vec();
                        self.phase = Phase::Proof(listening);
                    }
                    Err(d) => return self.dismissed(d),
                },
                Phase::Proof(listening) => {
                    let mut proof = [0u8; PROOF_LEN];
                    proof.copy_from_slice(&self.buf[..PROOF_LEN]);
                    match listening.finish(&proof) {
                        Ok((keys, ok)) => {
                            self.out = ok.to_vec();
                            self.phase = Phase::Accepted(keys);
                        }
                        Err(d) => return self.dismissed(d),
                    }
                }
                Phase::Accepted(_) => unreachable!("handled above"),
            }
        }
    }

    /// Tells the peer why its handshake ends (best effort, never blocking: these few bytes
    /// fit any socket buffer) and what to log.
    fn dismissed(&self, d: Dismissal) -> Step {
        if !d.say.is_empty() {
            let _ = (&self.tcp).write(&d.say);
        }
        Step::Failed(format!("refused: {}", d.error))
    }

    /// What the peer's hang-up means at this point.
    fn closed(&self) -> String {
        match (&self.phase, self.have) {
            (Phase::Greeting, 0) => "closed the connection without a greeting".into(),
            (Phase::Greeting, n) => {
                format!("closed the connection mid-greeting ({n} of {GREETING_LEN} bytes)")
            }
            _ => format!("refused: {}", AuthError::PeerClosed),
        }
    }

    /// How far it got, for the timeout's log line.
    fn progress(&self) -> String {
        match (&self.phase, self.have) {
            (Phase::Greeting, 0) => "nothing received".into(),
            (Phase::Greeting, n) => format!("{n} of {GREETING_LEN} greeting bytes received"),
            (Phase::Proof(_), _) if !self.out.is_empty() => "our reply not taken".into(),
            (Phase::Proof(_), n) => {
                format!("{n} of {PROOF_LEN} key confirmation bytes received")
            }
            (Phase::Accepted(_), _) => "our acceptance not taken".into(),
        }
    }

    /// Tells the peer why (best effort, never blocking) and closes the connection.
    fn dismiss(self, why: Option<Refusal>) {
        if let Some(r) = why {
            // Half a reply sent: nothing more would make sense to the peer.
            if self.out.is_empty() {
                let replied = !matches!(self.phase, Phase::Greeting);
                let _ = (&self.tcp).write(&r.message(replied));
            }
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
        // Take what the peer sent and we did not read: closing with unread bytes would send a
        // reset, which can destroy our message before the peer reads it.
        let mut sink = [0u8; 512];
        for _ in 0..8 {
            match (&self.tcp).read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// Rate-limited warnings of one kind.
struct Noise {
    what: &'static str,
    since: Instant,
    logged: u32,
    dropped: u64,
}

impl Noise {
    fn new(what: &'static str) -> Noise {
        Noise {
            what,
            since: Instant::now(),
            logged: 0,
            dropped: 0,
        }
    }

    fn warn(&mut self, now: Instant, line: impl FnOnce() -> String) {
        self.flush(now);
        if self.logged < NOISE_LINES {
            self.logged += 1;
            tracing::warn!("{}", line());
        } else {
            self.dropped += 1;
        }
    }

    /// Reports what was left out once its window is over.
    fn flush(&mut self, now: Instant) {
        if now.duration_since(self.since) < NOISE_WINDOW {
            return;
        }
        if self.dropped > 0 {
            tracing::warn!(
                "{} more {} not logged in the last {} s",
                self.dropped,
                self.what,
                now.duration_since(self.since).as_secs()
            );
        }
        self.since = now;
        self.logged = 0;
        self.dropped = 0;
    }

    /// When [`Noise::flush`] has something to say.
    fn due(&self) -> Option<Instant> {
        (self.dropped > 0).then(|| self.since + NOISE_WINDOW)
    }
}

/// The handshake stage: the listener, the pending table and its bookkeeping.
struct Gate<'t> {
    listener: TcpListener,
    token: &'t Token,
    limits: Limits,
    pending: Vec<Pending>,
    per_source: HashMap<Source, usize>,
    next_seq: u64,
    /// `accept` failed and nothing could be shed: not before then.
    backoff: Option<Instant>,
    timeouts: Noise,
    sheds: Noise,
    refusals: Noise,
}

/// Accepts connections on `listener`, runs the listener's side of the handshake on each within
/// `limits`, and hands every authenticated one to `authenticated` (with a name for logs, such
/// as `tcp:10.0.0.2:41000`), blocking again. Runs until the listener fails.
pub fn run(
    listener: TcpListener,
    token: &Token,
    limits: Limits,
    mut authenticated: impl FnMut(Sealed, String),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut gate = Gate {
        listener,
        token,
        limits,
        pending: Vec::new(),
        per_source: HashMap::new(),
        next_seq: 0,
        backoff: None,
        timeouts: Noise::new("handshake timeouts"),
        sheds: Noise::new("shed connections"),
        refusals: Noise::new("refused handshakes"),
    };
    loop {
        gate.round(&mut authenticated)?;
    }
}

impl Gate<'_> {
    /// One wait for events, and everything they allow.
    fn round(&mut self, authenticated: &mut impl FnMut(Sealed, String)) -> io::Result<()> {
        let now = Instant::now();
        self.expire(now);
        for n in [&mut self.timeouts, &mut self.sheds, &mut self.refusals] {
            n.flush(now);
        }
        if self.backoff.is_some_and(|b| b <= now) {
            self.backoff = None;
        }
        let listening = self.backoff.is_none();
        let wake = self
            .pending
            .iter()
            .map(|p| p.until)
            .chain(self.backoff)
            .chain(
                [&self.timeouts, &self.sheds, &self.refusals]
                    .iter()
                    .filter_map(|n| n.due()),
            )
            .min();
        let timeout = wake.map(|w| {
            let d = w.saturating_duration_since(now);
            rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            }
        });
        let (listener_ready, ready) = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.pending.len() + 1);
            if listening {
                fds.push(PollFd::new(&self.listener, PollFlags::IN));
            }
            fds.extend(
                self.pending
                    .iter()
                    .map(|p| PollFd::new(&p.tcp, p.interest())),
            );
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let skip = usize::from(listening);
            let listener_ready = listening && !fds[0].revents().is_empty();
            let ready: Vec<usize> = fds[skip..]
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(i, _)| i)
                .collect();
            (listener_ready, ready)
        };
        let mut finished = Vec::new();
        for i in ready {
            match self.pending[i].step(self.token) {
                Step::Wait => {}
                done => finished.push((i, done)),
            }
        }
        // Highest index first: `swap_remove` then never moves an entry still to be removed.
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, step) in finished {
            self.finish(i, step, authenticated);
        }
        if listener_ready {
            self.accept(authenticated)?;
        }
        Ok(())
    }

    /// Takes up to [`ACCEPT_BATCH`] new connections.
    fn accept(&mut self, authenticated: &mut impl FnMut(Sealed, String)) -> io::Result<()> {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((tcp, peer)) => self.admit(tcp, peer, authenticated),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if out_of_descriptors(&e) => {
                    // Make room with the oldest pending connection, or wait for some.
                    if !self.shed(None, "out of descriptors") {
                        tracing::warn!("accept: {e}; retrying");
                        self.backoff = Some(Instant::now() + ACCEPT_BACKOFF);
                        return Ok(());
                    }
                }
                Err(e) if crate::bridge::transient(&e) => {
                    tracing::debug!("accept: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Adds a new connection, shedding the oldest to make room, and moves its handshake on
    /// at once (its greeting is often in already).
    fn admit(
        &mut self,
        tcp: TcpStream,
        peer: SocketAddr,
        authenticated: &mut impl FnMut(Sealed, String),
    ) {
        let name = format!("tcp:{peer}");
        if let Err(e) = tcp
            .set_nonblocking(true)
            .and_then(|()| crate::bridge::tune(&tcp))
        {
            tracing::debug!("{name}: {e}");
            return;
        }
        let source = Source::of(peer.ip());
        let from_source = self.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.per_source {
            self.shed(
                Some(source),
                &format!("{} handshakes pending from {}", from_source, peer.ip()),
            );
        } else if self.pending.len() >= self.limits.max_pending {
            self.shed(None, &format!("{} handshakes pending", self.pending.len()));
        }
        *self.per_source.entry(source).or_insert(0) += 1;
        self.next_seq += 1;
        self.pending.push(Pending {
            tcp,
            name,
            source,
            seq: self.next_seq,
            until: Instant::now() + self.limits.deadline,
            phase: Phase::Greeting,
            buf: [0; GREETING_LEN],
            have: 0,
            out: Vec::new(),
        });
        let i = self.pending.len() - 1;
        match self.pending[i].step(self.token) {
            Step::Wait => {}
            step => self.finish(i, step, authenticated),
        }
    }

    /// Takes entry `i` out of the table.
    fn take(&mut self, i: usize) -> Pending {
        let p = self.pending.swap_remove(i);
        if let Some(n) = self.per_source.get_mut(&p.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&p.source);
            }
        }
        p
    }

    /// Ends entry `i` after a step that did not leave it waiting.
    fn finish(&mut self, i: usize, step: Step, authenticated: &mut impl FnMut(Sealed, String)) {
        let p = self.take(i);
        match step {
            Step::Wait => unreachable!("a waiting handshake is not finished"),
            Step::Done(keys) => match p.tcp.set_nonblocking(false) {
                Ok(()) => authenticated(Sealed { tcp: p.tcp, keys }, p.name),
                Err(e) => tracing::warn!("{}: {e}", p.name),
            },
            Step::Failed(why) => {
                let now = Instant::now();
                self.refusals.warn(now, || format!("{}: {why}", p.name));
                p.dismiss(None);
            }
        }
    }

    /// Sheds the oldest unfinished handshake (of `source` if given), telling its peer the
    /// bridge is busy. `false` if there was none.
    fn shed(&mut self, source: Option<Source>, why: &str) -> bool {
        let oldest = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.phase, Phase::Accepted(_)))
            .filter(|(_, p)| source.is_none_or(|s| p.source == s))
            .min_by_key(|(_, p)| p.seq)
            .map(|(i, _)| i);
        let Some(i) = oldest else {
            return false;
        };
        let p = self.take(i);
        self.sheds.warn(Instant::now(), || {
            format!(
                "{}: shed ({why}; the oldest goes first): {}",
                p.name,
                p.progress()
            )
        });
        p.dismiss(Some(Refusal::Busy));
        true
    }

    /// Ends every handshake past its deadline.
    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].until > now {
                i += 1;
                continue;
            }
            let p = self.take(i);
            let secs = self.limits.deadline.as_secs_f32();
            self.timeouts.warn(now, || {
                format!(
                    "{}: handshake timed out after {secs} s ({})",
                    p.name,
                    p.progress()
                )
            });
            p.dismiss(Some(Refusal::TimedOut));
        }
    }
}

/// `EMFILE`/`ENFILE`: out of descriptors, for this process or the system.
fn out_of_descriptors(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error()
        .is_some_and(|n| n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{handshake, AuthError, Role};

    const SECRET: &[u8] = b"0123456789abcdef-gate-secret";

    /// A gate on a free loopback port in a thread; authenticated connections are sent back.
    fn gate(limits: Limits) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let token = Token::from_bytes(SECRET).unwrap();
            let _ = run(listener, &token, limits, |sealed, name| {
                drop(sealed);
                let _ = tx.send(name);
            });
        });
        (addr, rx)
    }

    /// Room for 16 pending handshakes, all from one source if need be, `deadline` each.
    fn sixteen(deadline: Duration) -> Limits {
        Limits {
            max_pending: 16,
            per_source: 16,
            deadline,
        }
    }

    /// A connection to the gate whose reads give up after 20 s.
    fn dial(addr: SocketAddr) -> TcpStream {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp
    }

    /// A connector's handshake with the right secret; panics if it fails.
    fn connector(addr: SocketAddr) -> SessionKeys {
        let token = Token::from_bytes(SECRET).unwrap();
        handshake(&mut dial(addr), &token, Role::Connector).unwrap()
    }

    #[test]
    fn a_prompt_client_gets_through_a_full_table_of_idle_connections() {
        let (addr, rx) = gate(sixteen(Duration::from_secs(60)));
        let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        connector(addr);
        assert!(rx.recv_timeout(Duration::from_secs(20)).is_ok());
        drop(idle);
    }

    #[test]
    fn a_shed_connector_is_told_the_bridge_is_busy() {
        let (addr, _rx) = gate(sixteen(Duration::from_secs(60)));
        // Greets, then waits for the proof it will never send: shed by the 16 that follow.
        let mut victim = dial(addr);
        let token = Token::from_bytes(SECRET).unwrap();
        victim
            .write_all(&crate::auth::test_greeting(&token))
            .unwrap();
        let mut reply = [0u8; crate::auth::REPLY_LEN];
        victim.read_exact(&mut reply).unwrap();
        let _flood: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut status = [0u8; 1];
        victim.read_exact(&mut status).unwrap();
        assert_eq!(status, Refusal::Busy.message(true).as_slice());

        // A connector shed before its reply hears it too, and says so.
        let (addr, _rx) = gate(sixteen(Duration::from_secs(60)));
        let mut early = dial(addr);
        let _flood: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let token = Token::from_bytes(SECRET).unwrap();
        let err = handshake(&mut early, &token, Role::Connector).unwrap_err();
        assert!(matches!(err, AuthError::Refused(Refusal::Busy)), "{err}");
        assert!(err.to_string().contains("busy"), "{err}");
    }

    #[test]
    fn a_wrong_token_or_another_version_is_told_so_and_never_handed_on() {
        let (addr, rx) = gate(sixteen(Duration::from_secs(60)));
        let mut tcp = dial(addr);
        let token = Token::from_bytes(b"0123456789abcdef-not-the-gate-s").unwrap();
        let err = handshake(&mut tcp, &token, Role::Connector).unwrap_err();
        assert!(matches!(err, AuthError::Rejected), "{err}");

        // A connector of the previous version (WSB3, a 32-byte nonce) hears our version.
        let mut old = dial(addr);
        let mut hello = b"WSB3".to_vec();
        hello.extend_from_slice(&[9; 32]);
        old.write_all(&hello).unwrap();
        let mut got = Vec::new();
        old.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"WSB8");

        // The right token still gets through, and is the only one handed on.
        connector(addr);
        assert!(rx.recv_timeout(Duration::from_secs(20)).is_ok());
        assert!(rx.try_recv().is_err(), "a refused handshake was handed on");
    }

    #[test]
    fn a_stalled_connector_is_told_it_timed_out() {
        let (addr, _rx) = gate(sixteen(Duration::from_millis(300)));
        let mut tcp = dial(addr);
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).unwrap();
        assert_eq!(got, Refusal::TimedOut.message(false));
    }

    #[test]
    fn a_source_over_its_cap_sheds_its_own_oldest() {
        let limits = Limits {
            max_pending: 64,
            per_source: 4,
            deadline: Duration::from_secs(60),
        };
        let (addr, _rx) = gate(limits);
        let mut first = dial(addr);
        let _more: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut got = Vec::new();
        first.read_to_end(&mut got).unwrap();
        assert_eq!(got, Refusal::Busy.message(false));
    }

    #[test]
    fn limits_follow_the_descriptor_limit() {
        assert_eq!(Limits::for_fd_limit(1024).max_pending, 480);
        assert_eq!(Limits::for_fd_limit(1024).per_source, 240);
        assert_eq!(Limits::for_fd_limit(64).max_pending, 16);
        assert_eq!(
            Limits::for_fd_limit(1 << 20).max_pending,
            MAX_PENDING_HANDSHAKES
        );
        assert_eq!(
            Source::of("::ffff:10.1.2.3".parse().unwrap()),
            Source::V4([10, 1, 2, 3])
        );
        assert_eq!(
            Source::of("2001:db8::1".parse().unwrap()),
            Source::of("2001:db8::2".parse().unwrap())
        );
    }
}
