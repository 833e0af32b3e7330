//! One Wayland connection relayed over one byte stream, with its file descriptors translated.
//!
//! Every frame crosses the stream sealed (see [`crate::channel`]).
//!
//! Each bridged client gets its own TCP connection (no multiplexing): a slow or dead client
//! then stalls and ends only its own session, TCP's flow control is the backpressure (the
//! kernel's socket buffers bound what is in flight each way), and a failed session is simply a
//! closed connection.
//!
//! Two threads per session: local → remote parses every message (object map, signatures),
//! turns each descriptor into an id plus content frames, and forwards; remote → local applies
//! content frames to local memfds and pipes and hands the descriptors to the local peer with
//! the message bytes. Translation:
//! - `wl_shm.create_pool`: the pool is mirrored in a memfd on the far side, starting zeroed;
//!   on `wl_surface.commit` the attached buffer's damaged rows (`damage_buffer`; any surface
//!   `damage` or a buffer's first commit means the whole buffer) are compared with a shadow
//!   copy in 64-byte blocks and only changed runs cross the wire, LZ4-compressed when that
//!   saves a tenth or more, each sent as soon as it is ready (large ranges on two threads).
//!   `wl_shm_pool.resize` resizes the mirror.
//! - buffers the compositor fills (wlr-screencopy `copy`, ext-image-copy-capture `capture`):
//!   the client side first brings the far copy of the buffer up to date; the compositor side
//!   keeps a snapshot of it, and on the frame's `ready` compares the filled buffer with it and
//!   sends the changed runs back, which the client side writes into the client's pool (and its
//!   shadow) before it forwards `ready`.
//! - any other memory descriptor (keymaps) is copied once into a read-only memfd;
//! - pipes (`wl_data_offer.receive`, `wl_data_source.send`, primary selection) are relayed as
//!   streams, end of file included.
//! - `wl_registry.global` events for globals whose buffers cannot cross (linux-dmabuf,
//!   `wl_drm`, explicit sync) are dropped, so clients fall back to `wl_shm`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{FileType, OFlags, SealFlags};

use crate::channel::{self, OpenReader, SealWriter, Sealed, SessionKeys};
use crate::codec::{self, Direction, ObjectMap, Value};
use crate::protocol::ArgType;
use crate::stream::Stream;
use crate::transport::{self, Frame, PipeDir, PIPE_WINDOW};

/// Globals whose objects pass descriptors the bridge cannot translate (GPU buffers, sync
/// objects): hidden from clients, which then use `wl_shm`.
pub const FILTERED_GLOBALS: &[&str] = &[
    "zwp_linux_dmabuf_v1",
    "wl_drm",
    "zwp_linux_explicit_synchronization_v1",
    "wp_linux_drm_syncobj_manager_v1",
    "zwlr_export_dmabuf_manager_v1",
    "wp_drm_lease_device_v1",
    // Its one request passes a listening socket, which cannot cross a byte stream.
    "wp_security_context_manager_v1",
];

/// Largest memory object copied once (keymaps are tens of KiB); it must fit one frame.
const MAX_COPY: u64 = (transport::MAX_FRAME - 64) as u64;
/// Most mirrored bytes one session may hold (all its pools together).
const MAX_MIRRORED: u64 = 2 << 30;
/// Most descriptors one session may have waiting or mirrored, and most live relayed pipes.
const MAX_SESSION_FDS: usize = 1024;
const MAX_PIPES: usize = 64;
/// Largest mirrored pool.
const MAX_POOL: u64 = 1 << 30;
/// Diff granularity.
const BLOCK: usize = 64;

/// Which end of the bridge this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The local peer is a Wayland client; the compositor is across the stream.
    Client,
    /// The local peer is the compositor.
    Server,
}

impl Side {
    fn outgoing(self) -> Direction {
        match self {
            Side::Client => Direction::Request,
            Side::Server => Direction::Event,
        }
    }

    fn incoming(self) -> Direction {
        match self {
            Side::Client => Direction::Event,
            Side::Server => Direction::Request,
        }
    }
}

/// Bytes and frames that crossed the stream, per direction.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes written to the stream.
    pub sent: AtomicU64,
    /// Bytes read from the stream.
    pub received: AtomicU64,
    /// Busy polls started before a read (see `--busy-poll-us`).
    pub busy_polls: AtomicU64,
    /// Busy polls that ran out without the expected reply (each turns polling off for that
    /// direction until a reply comes back within the budget again).
    pub busy_poll_misses: AtomicU64,
}

/// A mirrored shared-memory pool (sending side).
struct Mirror {
    /// Shared with the pool-update worker, which writes what the compositor filled back
    /// into the client's pool (screencopy).
    fd: Arc<OwnedFd>,
    size: usize,
    shadow: Vec<u8>,
    /// Where the pool is read into on each commit (kept to avoid a fresh allocation).
    scratch: Vec<u8>,
    pool_alive: bool,
    buffers: usize,
}

#[derive(Clone, Copy)]
struct BufferInfo {
    mirror: u32,
    offset: usize,
    stride: usize,
    height: usize,
    synced_once: bool,
}

#[derive(Default)]
struct SurfaceState {
    pending: Option<Option<u32>>,
    current: Option<u32>,
    /// The buffer whose content the compositor last took for this surface.
    last_synced: Option<u32>,
    full: bool,
    rows: Option<(usize, usize)>,
}

/// A descriptor received from the stream, waiting for its Wayland message.
enum InFd {
    /// A mirrored pool: kept, since later frames update it (and, for a buffer the compositor
    /// fills, read back).
    Shm { fd: Arc<OwnedFd>, size: u64 },
    /// Handed to the local peer once.
    Once(OwnedFd),
}

struct State {
    map: ObjectMap,
    next_id: u32,
    pools: HashMap<u32, u32>,
    mirrors: HashMap<u32, Mirror>,
    buffers: HashMap<u32, BufferInfo>,
    surfaces: HashMap<u32, SurfaceState>,
    in_fds: HashMap<u32, InFd>,
    /// Bytes held in mirrors (sender) — bounded by [`MAX_MIRRORED`].
    mirrored: u64,
    /// Client side: capture frames (ext-image-copy-capture) and the buffer attached to each.
    attached: HashMap<u32, u32>,
    /// Server side: each pool the client created, by object id, and its mirror's id.
    far_pools: HashMap<u32, u32>,
    /// Server side: each shm buffer the client created, and where it lies in its mirror.
    far_buffers: HashMap<u32, Region>,
    /// Server side: capture frames, the buffer the compositor is to fill for each, and what
    /// that buffer held when the capture started (what the client side has there).
    captures: HashMap<u32, Capture>,
    /// Bytes held in capture snapshots, at most [`MAX_POOL`].
    snapshots: u64,
    /// Client side: ranges of mirrors the compositor filled (and the worker wrote into the
    /// client's pool), for the outgoing thread to fold into its shadows before it compares
    /// anything the client sends after them.
    returned: Vec<(u32, u64, Vec<u8>)>,
}

/// Where a shm buffer lies in its pool's mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    mirror: u32,
    offset: usize,
    len: usize,
}

/// A capture in progress (server side): the buffer and, once the compositor was asked to
/// fill it, what it held then.
struct Capture {
    region: Region,
    snapshot: Option<Vec<u8>>,
}

struct Shared {
    side: Side,
    state: Mutex<State>,
    /// Local pipe ends that bytes from the stream are written into.
    pipes: Mutex<HashMap<u32, PipeWriter>>,
    /// Flow control of the local pipes we read and send, by id (see [`Credit`]).
    credits: Arc<Mutex<HashMap<u32, Arc<Credit>>>>,
    /// The stream's write half, shared by every thread that sends (pipe readers, acks, the
    /// pool-sync threads): each frame goes out whole, as one sealed record, in order.
    writer: Arc<SealWriter<Stream>>,
    stats: Arc<Stats>,
    name: String,
    poll: BusyPoll,
}

/// How long a thread about to wait polls instead of sleeping, by default: a reply usually
/// follows within tens of µs, and waking a sleeping thread costs about as much again (more on
/// virtual machines), four times per roundtrip across the two bridge ends.
pub const DEFAULT_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(150);
/// Longest busy poll accepted (longer is clamped): polling is for replies that come within
/// microseconds, not a way to wait.
pub const MAX_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// A thread polls only while a reply is likely: bytes were forwarded to its peer this
/// recently. An idle session, or the side that is not expected to answer, sleeps at once.
const EXPECT_REPLY_US: u64 = 1_000;

/// Which side a relay thread reads from.
#[derive(Clone, Copy)]
enum From {
    /// The local Wayland peer (the local → remote thread).
    Local = 0,
    /// The stream (the remote → local thread).
    Remote = 1,
}

/// Busy polling shared by a session's relay threads: when each side was last sent something
/// it may answer.
struct BusyPoll {
    /// Longest poll before a blocking read, in µs (0: never poll).
    spin_us: u64,
    /// How long after bytes were forwarded an answer is still "likely" ([`EXPECT_REPLY_US`]).
    window_us: u64,
    epoch: std::time::Instant,
    /// When bytes were last forwarded towards each side (so an answer from there is likely),
    /// in µs since `epoch`, plus one (0: never); indexed by [`From`].
    expect_us: [AtomicU64; 2],
    stats: Arc<Stats>,
}

impl BusyPoll {
    fn new(busy_poll: std::time::Duration, stats: Arc<Stats>) -> BusyPoll {
        BusyPoll {
            spin_us: busy_poll.min(MAX_BUSY_POLL).as_micros() as u64,
            window_us: EXPECT_REPLY_US,
            epoch: std::time::Instant::now(),
            expect_us: [AtomicU64::new(0), AtomicU64::new(0)],
            stats,
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Bytes were just forwarded towards `to`: an answer from there is likely soon.
    fn expect_reply(&self, to: From) {
        self.expect_us[to as usize].store(self.now_us() + 1, Ordering::Relaxed);
    }

    /// When an answer from `from` became likely, if it still is.
    fn expected(&self, from: From) -> Option<u64> {
        let at = self.expect_us[from as usize]
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        (self.now_us().saturating_sub(at) <= self.window_us).then_some(at)
    }
}

/// One relay thread's side of busy polling, adapted to its peer: a poll that runs out without
/// the reply turns polling off, and it comes back on once a reply arrives within the budget
/// (so a peer that does not answer promptly — one-way traffic, a busy client — costs one poll,
/// not one per message).
struct Poller {
    from: From,
    enabled: bool,
    /// Polling was off for this wait, and an answer was expected since then.
    unpolled_since: Option<u64>,
}

impl Poller {
    fn new(from: From) -> Poller {
        Poller {
            from,
            enabled: true,
            unpolled_since: None,
        }
    }

    /// Before a blocking read of `fd`: if an answer is likely, poll for a short while, yielding
    /// the CPU between polls, so it is picked up without a sleep and a wake-up.
    fn before_read(&mut self, bp: &BusyPoll, fd: BorrowedFd<'_>) {
        self.unpolled_since = None;
        if bp.spin_us == 0 {
            return;
        }
        let Some(expected) = bp.expected(self.from) else {
            return;
        };
        if !self.enabled {
            self.unpolled_since = Some(expected);
            return;
        }
        bp.stats.busy_polls.fetch_add(1, Ordering::Relaxed);
        let start = bp.now_us();
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut pfd, Some(&zero)) {
                Ok(n) if n > 0 => return,
                Ok(_) => {}
                Err(_) => return,
            }
            if bp.now_us().saturating_sub(start) > bp.spin_us {
                self.enabled = false;
                bp.stats.busy_poll_misses.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }

    /// After the read returned: if polling was off and the answer came within the budget,
    /// polling would have caught it — turn it back on.
    fn after_read(&mut self, bp: &BusyPoll) {
        if let Some(since) = self.unpolled_since.take() {
            if bp.now_us().saturating_sub(since) <= bp.spin_us {
                self.enabled = true;
            }
        }
    }
}

/// The stream's read half, polling briefly before it would block (see [`Poller`]).
struct SpinRead<'a> {
    sh: &'a Shared,
    poller: Poller,
    stream: Stream,
}

impl io::Read for SpinRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poller.before_read(&self.sh.poll, self.stream.as_fd());
        let r = self.stream.read(buf);
        self.poller.after_read(&self.sh.poll);
        r
    }
}

impl Shared {
    fn send(&self, frames: &[Frame]) -> io::Result<()> {
        for f in frames {
            let rec = f.encode_with(channel::HEADROOM, channel::TAG);
            self.stats
                .sent
                .fetch_add((rec.len() - channel::HEADROOM) as u64, Ordering::Relaxed);
            self.writer.write_sealable(rec)?;
        }
        Ok(())
    }
}

fn poisoned() -> io::Error {
    io::Error::other("session state poisoned by a panic")
}

fn protocol_error(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Relays `local` over `remote` (an authenticated connection: every frame is sealed with its
/// keys) until either side closes or misbehaves.
///
/// `busy_poll` is how long each relay thread of a busy session polls before it sleeps in a
/// read ([`DEFAULT_BUSY_POLL`]; zero never polls): it trades a little CPU while messages flow
/// for a much shorter roundtrip.
pub fn run(
    local: UnixStream,
    remote: Sealed,
    side: Side,
    name: &str,
    stats: Arc<Stats>,
    busy_poll: std::time::Duration,
) -> io::Result<()> {
    let Sealed { tcp, keys } = remote;
    run_over(local, Stream::Tcp(tcp), keys, side, name, stats, busy_poll)
}

/// [`run`] over any stream (TCP, or the Unix socket `waysock ssh` forwards), authenticated
/// with `keys` (see [`crate::stream::authenticate`]).
pub fn run_over(
    local: UnixStream,
    remote: Stream,
    keys: SessionKeys,
    side: Side,
    name: &str,
    stats: Arc<Stats>,
    busy_poll: std::time::Duration,
) -> io::Result<()> {
    remote.set_nodelay(true)?;
    let shared = Arc::new(Shared {
        side,
        state: Mutex::new(State {
            map: ObjectMap::new(),
            // Ids we allocate: even on the client side, odd on the server side.
            next_id: match side {
                Side::Client => 2,
                Side::Server => 1,
            },
            pools: HashMap::new(),
            mirrors: HashMap::new(),
            buffers: HashMap::new(),
            surfaces: HashMap::new(),
            in_fds: HashMap::new(),
            mirrored: 0,
            attached: HashMap::new(),
            far_pools: HashMap::new(),
            far_buffers: HashMap::new(),
            captures: HashMap::new(),
            snapshots: 0,
            returned: Vec::new(),
        }),
        pipes: Mutex::new(HashMap::new()),
        credits: Arc::new(Mutex::new(HashMap::new())),
        writer: Arc::new(SealWriter::new(remote.try_clone()?, &keys.send)),
        poll: BusyPoll::new(busy_poll, Arc::clone(&stats)),
        stats,
        name: name.to_string(),
    });
    let out_local = local.try_clone()?;
    let out_shared = Arc::clone(&shared);
    let out_remote = remote.try_clone()?;
    let outgoing = std::thread::spawn(move || {
        let r = pump_out(&out_shared, &out_local);
        // Our peer is done (or broke): tell the far side, and stop reading from it. A clean
        // end is sealed (so the far side can tell it from a cut connection); pipe readers
        // still running find the channel closed.
        if r.is_ok() {
            let _ = out_shared.writer.close();
        }
        let _ = out_remote.shutdown(Shutdown::Write);
        if r.is_err() {
            let _ = out_remote.shutdown(Shutdown::Both);
            let _ = out_local.shutdown(Shutdown::Both);
        }
        r
    });
    let r_in = pump_in(&shared, &local, &remote, &keys.receive);
    let _ = local.shutdown(Shutdown::Write);
    if r_in.is_err() {
        let _ = local.shutdown(Shutdown::Both);
        let _ = remote.shutdown(Shutdown::Both);
    }
    let r_out = outgoing
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("relay thread panicked")));
    // No acknowledgement can come any more: pipe readers waiting for one stop.
    if let Ok(credits) = shared.credits.lock() {
        for c in credits.values() {
            c.close();
        }
    }
    match (r_in, r_out) {
        // Our own relay thread failed and shut the stream down, so the incoming side then saw
        // it end without a close: the outgoing error is the cause.
        (Err(i), Err(o)) if i.kind() == io::ErrorKind::UnexpectedEof => Err(o),
        (r_in, r_out) => r_in.and(r_out),
    }
}

/// local → stream.
fn pump_out(sh: &Shared, local: &UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut poller = Poller::new(From::Local);
    let mut pending: Vec<u8> = Vec::new();
    let mut fdq: VecDeque<OwnedFd> = VecDeque::new();
    loop {
        let mut fds = Vec::new();
        poller.before_read(&sh.poll, local.as_fd());
        let n = transport::recv_with_fds(local.as_fd(), &mut buf, &mut fds)?;
        poller.after_read(&sh.poll);
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        fdq.extend(fds);
        fold_returned(sh)?;
        if fdq.len() > 4 * transport::MAX_FDS {
            return Err(protocol_error(format!(
                "{}: {} descriptors queued without messages that carry them",
                sh.name,
                fdq.len()
            )));
        }
        let mut batch = Vec::new();
        let mut batch_fds = Vec::new();
        let mut at = 0;
        while let Some(h) = codec::header(&pending[at..])
            .map_err(|e| protocol_error(format!("{}: {e}", sh.name)))?
        {
            let size = h.size as usize;
            if pending.len() - at < size {
                break;
            }
            let msg = &pending[at..at + size];
            let out = translate_out(sh, &h, msg, &mut fdq)?;
            if !out.side_frames.is_empty() || !out.syncs.is_empty() || !out.returns.is_empty() {
                flush(sh, &mut batch, &mut batch_fds)?;
                sh.send(&out.side_frames)?;
                for &(id, start, end) in &out.syncs {
                    sync_mirror(sh, id, start, end)?;
                }
                // The filled buffer's changed runs go before the `ready` that announces it.
                for c in out.returns {
                    send_back(sh, c)?;
                }
            }
            if out.forward {
                if batch_fds.len() + out.fd_ids.len() > transport::MAX_FDS {
                    flush(sh, &mut batch, &mut batch_fds)?;
                }
                batch.extend_from_slice(out.rewrite.as_deref().unwrap_or(msg));
                batch_fds.extend(out.fd_ids);
            }
            if !out.readers.is_empty() {
                // The far side must know the pipe (PIPE_NEW, sent above) and get the message
                // carrying it before any of its bytes arrive.
                flush(sh, &mut batch, &mut batch_fds)?;
                for (fd, id) in out.readers {
                    spawn_pipe_reader(sh, fd, id);
                }
            }
            at += size;
        }
        pending.drain(..at);
        flush(sh, &mut batch, &mut batch_fds)?;
        if pending.is_empty() && !fdq.is_empty() {
            // libwayland sends descriptors with the bytes of their message: every complete
            // message has been handled, so these belonged to messages we could not decode.
            // Handing them to a later message would deliver the wrong file: fail closed.
            return Err(protocol_error(format!(
                "{}: {} descriptor(s) came with messages the bridge cannot decode \
                 (an interface or version it has no signature for)",
                sh.name,
                fdq.len()
            )));
        }
    }
}

fn flush(sh: &Shared, batch: &mut Vec<u8>, fds: &mut Vec<u32>) -> io::Result<()> {
    if batch.is_empty() && fds.is_empty() {
        return Ok(());
    }
    let f = Frame::Wayland {
        fds: std::mem::take(fds),
        bytes: std::mem::take(batch),
    };
    sh.send(&[f])?;
    sh.poll.expect_reply(From::Remote);
    Ok(())
}

struct Out {
    forward: bool,
    fd_ids: Vec<u32>,
    side_frames: Vec<Frame>,
    /// Mirror ranges to bring up to date (mirror id, start, end), after `side_frames` and
    /// before the message.
    syncs: Vec<(u32, usize, usize)>,
    /// Local pipe read ends to relay, started only once the frames announcing them are sent.
    readers: Vec<(OwnedFd, u32)>,
    /// Buffers the compositor filled, whose changes go back before the message (`ready`).
    returns: Vec<Capture>,
    /// The message as it is to be forwarded, when it differs from what arrived.
    rewrite: Option<Vec<u8>>,
}

fn uint(v: Option<&Value<'_>>) -> u32 {
    match v {
        Some(Value::Uint(u)) | Some(Value::Object(u)) => *u,
        Some(Value::Int(i)) => *i as u32,
        Some(Value::NewId { id, .. }) => *id,
        _ => 0,
    }
}

fn int(v: Option<&Value<'_>>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i as i64,
        Some(Value::Uint(u)) => *u as i64,
        _ => 0,
    }
}

fn translate_out(
    sh: &Shared,
    h: &codec::Header,
    msg: &[u8],
    fdq: &mut VecDeque<OwnedFd>,
) -> io::Result<Out> {
    let dir = sh.side.outgoing();
    let mut st = sh.state.lock().map_err(|_| poisoned())?;
    let mut out = Out {
        forward: true,
        fd_ids: Vec::new(),
        side_frames: Vec::new(),
        syncs: Vec::new(),
        readers: Vec::new(),
        returns: Vec::new(),
        rewrite: None,
    };
    let Some(def) = st.map.message(h, dir) else {
        // Unknown object or opcode: bytes pass through untouched.
        return Ok(out);
    };
    let iface = st.map.interface_of(h.object).map(|i| i.name).unwrap_or("");
    let args = codec::decode(def, &msg[8..])
        .map_err(|e| protocol_error(format!("{}: {iface}.{}: {e}", sh.name, def.name)))?;
    // Descriptors, in argument order.
    for (i, arg) in def.args.iter().enumerate() {
        if arg.ty != ArgType::Fd {
            continue;
        }
        let fd = fdq.pop_front().ok_or_else(|| {
            protocol_error(format!(
                "{}: {iface}.{} carries a descriptor that did not arrive",
                sh.name, def.name
            ))
        })?;
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(2);
        if (iface, def.name) == ("wl_shm", "create_pool") {
            let size = int(args.get(i + 1)).max(0) as u64;
            if size > MAX_POOL || st.mirrored + size > MAX_MIRRORED {
                return Err(protocol_error(format!(
                    "{}: shm pool of {size} bytes (this session already mirrors {} of at \
                     most {MAX_MIRRORED})",
                    sh.name, st.mirrored
                )));
            }
            st.mirrored += size;
            let m = Mirror {
                fd: Arc::new(fd),
                size: size as usize,
                shadow: vec![0; size as usize],
                scratch: Vec::new(),
                pool_alive: true,
                buffers: 0,
            };
            out.side_frames.push(Frame::ShmNew { id, size });
            out.syncs.push((id, 0, size as usize));
            st.mirrors.insert(id, m);
            st.pools.insert(uint(args.first()), id);
        } else {
            let (frames, reader) = translate_fd(sh, fd, id)?;
            out.side_frames.extend(frames);
            out.readers.extend(reader.map(|fd| (fd, id)));
        }
        out.fd_ids.push(id);
    }
    match (sh.side, iface, def.name) {
        (Side::Server, "wl_registry", "global") => {
            // Only globals whose every message the bridge can decode reach the client: no
            // filtered ones, none without signatures, and no version beyond our tables (newer
            // opcodes could carry descriptors we would misplace).
            if let (Some(Value::String(Some(name))), Some(Value::Uint(version))) =
                (args.get(1), args.get(2))
            {
                let known = crate::protocol::find_interface_bytes(name);
                match known {
                    Some(i) if !FILTERED_GLOBALS.contains(&i.name) => {
                        if *version > i.version {
                            let mut m = msg.to_vec();
                            let at = m.len() - 4;
                            m[at..].copy_from_slice(&i.version.to_ne_bytes());
                            out.rewrite = Some(m);
                        }
                    }
                    _ => {
                        note_hidden(name, known.is_some());
                        out.forward = false;
                    }
                }
            }
        }
        (Side::Client, "wl_shm_pool", "create_buffer") => {
            if let Some(&mirror) = st.pools.get(&h.object) {
                let info = BufferInfo {
                    mirror,
                    offset: int(args.get(1)).max(0) as usize,
                    stride: int(args.get(4)).max(0) as usize,
                    height: int(args.get(3)).max(0) as usize,
                    synced_once: false,
                };
                if let Some(m) = st.mirrors.get_mut(&mirror) {
                    m.buffers += 1;
                }
                st.buffers.insert(uint(args.first()), info);
            }
        }
        (Side::Client, "wl_shm_pool", "resize") => {
            if let Some(&mid) = st.pools.get(&h.object) {
                let size = int(args.first()).max(0) as u64;
                if size > MAX_POOL {
                    return Err(protocol_error(format!(
                        "{}: shm pool of {size} bytes",
                        sh.name
                    )));
                }
                let old = st.mirrors.get(&mid).map_or(0, |m| m.size as u64);
                if st.mirrored - old.min(st.mirrored) + size > MAX_MIRRORED {
                    return Err(protocol_error(format!(
                        "{}: resizing a pool to {size} bytes exceeds the session's {MAX_MIRRORED}",
                        sh.name
                    )));
                }
                st.mirrored = st.mirrored - old.min(st.mirrored) + size;
                if let Some(m) = st.mirrors.get_mut(&mid) {
                    m.size = size as usize;
                    m.shadow.resize(size as usize, 0);
                }
                out.side_frames.push(Frame::ShmSize { id: mid, size });
            }
        }
        (Side::Client, "wl_shm_pool", "destroy") => {
            if let Some(mid) = st.pools.remove(&h.object) {
                if forget_mirror_if_unused(&mut st, mid, Some(false), 0) {
                    out.side_frames.push(Frame::ShmDrop { id: mid });
                }
            }
        }
        (Side::Client, "wl_buffer", "destroy") => {
            if let Some(b) = st.buffers.remove(&h.object) {
                if forget_mirror_if_unused(&mut st, b.mirror, None, 1) {
                    out.side_frames.push(Frame::ShmDrop { id: b.mirror });
                }
            }
            for s in st.surfaces.values_mut() {
                if s.last_synced == Some(h.object) {
                    s.last_synced = None;
                }
            }
        }
        (Side::Client, "wl_surface", "destroy") => {
            st.surfaces.remove(&h.object);
        }
        // The compositor is about to fill a buffer: the far side's copy must be what the
        // client has (it sends back only what changes).
        (Side::Client, "zwlr_screencopy_frame_v1", "copy" | "copy_with_damage") => {
            sync_whole_buffer(&st, uint(args.first()), &mut out);
        }
        (Side::Client, "ext_image_copy_capture_frame_v1", "attach_buffer") => {
            let buffer = uint(args.first());
            st.attached.insert(h.object, buffer);
        }
        (Side::Client, "ext_image_copy_capture_frame_v1", "capture") => {
            if let Some(&buffer) = st.attached.get(&h.object) {
                sync_whole_buffer(&st, buffer, &mut out);
            }
        }
        (Side::Client, "ext_image_copy_capture_frame_v1", "destroy") => {
            st.attached.remove(&h.object);
        }
        (Side::Server, "zwlr_screencopy_frame_v1" | "ext_image_copy_capture_frame_v1", "ready") => {
            if let Some(c) = st.captures.remove(&h.object) {
                st.snapshots -= c.snapshot.as_ref().map_or(0, |s| s.len() as u64);
                out.returns.push(c);
            }
        }
        (
            Side::Server,
            "zwlr_screencopy_frame_v1" | "ext_image_copy_capture_frame_v1",
            "failed",
        ) => {
            if let Some(c) = st.captures.remove(&h.object) {
                st.snapshots -= c.snapshot.as_ref().map_or(0, |s| s.len() as u64);
            }
        }
        (Side::Client, "wl_surface", "attach") => {
            let buffer = uint(args.first());
            let s = st.surfaces.entry(h.object).or_default();
            s.pending = Some((buffer != 0).then_some(buffer));
        }
        (Side::Client, "wl_surface", "damage") => {
            st.surfaces.entry(h.object).or_default().full = true;
        }
        (Side::Client, "wl_surface", "damage_buffer") => {
            let (y, hgt) = (int(args.get(1)), int(args.get(3)));
            let s = st.surfaces.entry(h.object).or_default();
            if y < 0 || hgt <= 0 || hgt > i32::MAX as i64 {
                s.full = true;
            } else {
                let (a, b) = (y as usize, (y + hgt) as usize);
                s.rows = Some(match s.rows {
                    Some((x0, x1)) => (x0.min(a), x1.max(b)),
                    None => (a, b),
                });
            }
        }
        (Side::Client, "wl_surface", "commit") => {
            let s = st.surfaces.entry(h.object).or_default();
            if let Some(p) = s.pending.take() {
                s.current = p;
            }
            let (current, full, rows) = (s.current, s.full, s.rows.take());
            // Damage is relative to the surface's previous content, not to this buffer's: a
            // buffer other than the one last synced for this surface (double buffering, a
            // buffer moved between surfaces) is compared whole — locally, so the wire still
            // carries only the blocks that changed.
            let switched = s.last_synced != current;
            s.last_synced = current;
            s.full = false;
            if let Some(buffer) = current {
                if let Some(mut b) = st.buffers.get(&buffer).copied() {
                    let (r0, r1) = if full || switched || !b.synced_once {
                        (0, b.height)
                    } else {
                        rows.map(|(a, z)| (a.min(b.height), z.min(b.height)))
                            .unwrap_or((0, 0))
                    };
                    if r1 > r0 {
                        let start = b.offset + r0 * b.stride;
                        let end = b.offset + r1 * b.stride;
                        out.syncs.push((b.mirror, start, end));
                    }
                    b.synced_once = true;
                    st.buffers.insert(buffer, b);
                }
            }
        }
        _ => {}
    }
    st.map
        .apply(h, dir, def, &args)
        .map_err(|e| protocol_error(format!("{}: {e}", sh.name)))?;
    Ok(out)
}

/// Drops a mirror once its pool is destroyed and no buffer uses it; `true` if it was dropped
/// (the far side may then close its copy).
fn forget_mirror_if_unused(
    st: &mut State,
    id: u32,
    pool_alive: Option<bool>,
    released: usize,
) -> bool {
    let gone = match st.mirrors.get_mut(&id) {
        Some(m) => {
            if let Some(a) = pool_alive {
                m.pool_alive = a;
            }
            m.buffers = m.buffers.saturating_sub(released);
            !m.pool_alive && m.buffers == 0
        }
        None => false,
    };
    if gone {
        if let Some(m) = st.mirrors.remove(&id) {
            st.mirrored = st.mirrored.saturating_sub(m.size as u64);
        }
    }
    gone
}

/// Brings `[start, end)` of mirror `id` up to date on the far side, without holding the
/// session state: shadows are only touched by the local → remote thread (this one), so the
/// shadow is taken out of the mirror for the duration and put back. The mirror itself stays
/// in the map (the pool-update worker may write what the compositor filled into its pool).
fn sync_mirror(sh: &Shared, id: u32, start: usize, end: usize) -> io::Result<()> {
    let (fd, mut shadow, mut scratch) = {
        let mut st = sh.state.lock().map_err(|_| poisoned())?;
        let Some(m) = st.mirrors.get_mut(&id) else {
            return Ok(());
        };
        (
            Arc::clone(&m.fd),
            std::mem::take(&mut m.shadow),
            std::mem::take(&mut m.scratch),
        )
    };
    let r = sync(
        fd.as_fd(),
        &mut shadow,
        &mut scratch,
        start,
        end,
        &|f: Frame| sh.send(std::slice::from_ref(&f)),
        id,
    );
    if let Some(m) = sh
        .state
        .lock()
        .map_err(|_| poisoned())?
        .mirrors
        .get_mut(&id)
    {
        m.shadow = shadow;
        m.scratch = scratch;
    }
    r
}

/// Queues the whole of shm `buffer` to be brought up to date on the far side (before the
/// compositor fills it, so that what it sends back is exactly what changed).
fn sync_whole_buffer(st: &State, buffer: u32, out: &mut Out) {
    if let Some(b) = st.buffers.get(&buffer) {
        let end = b.offset.saturating_add(b.stride.saturating_mul(b.height));
        out.syncs.push((b.mirror, b.offset, end));
    }
}

/// Client side: folds what the compositor filled (written into the client's pools by the
/// pool-update worker) into the shadows, so they stay what the far side holds.
fn fold_returned(sh: &Shared) -> io::Result<()> {
    let mut st = sh.state.lock().map_err(|_| poisoned())?;
    if st.returned.is_empty() {
        return Ok(());
    }
    for (id, offset, bytes) in std::mem::take(&mut st.returned) {
        if let Some(m) = st.mirrors.get_mut(&id) {
            let (a, z) = (offset as usize, offset as usize + bytes.len());
            if let Some(dst) = m.shadow.get_mut(a..z) {
                dst.copy_from_slice(&bytes);
            }
        }
    }
    Ok(())
}

/// Server side: the compositor filled a capture's buffer (`ready`): sends the runs that
/// changed since the capture started back to the client side, which writes them into the
/// client's pool before it forwards `ready`.
fn send_back(sh: &Shared, c: Capture) -> io::Result<()> {
    let Some(mut shadow) = c.snapshot else {
        // `ready` for a capture never started: nothing was filled.
        return Ok(());
    };
    let fd = match sh
        .state
        .lock()
        .map_err(|_| poisoned())?
        .in_fds
        .get(&c.region.mirror)
    {
        Some(InFd::Shm { fd, .. }) => Arc::clone(fd),
        // The pool is gone: nobody can see the pixels.
        _ => return Ok(()),
    };
    let mut cur = vec![0u8; shadow.len()];
    pread_full(fd.as_fd(), &mut cur, c.region.offset as u64)?;
    let id = c.region.mirror;
    let at = c.region.offset;
    diff_runs(&cur, &mut shadow, &AtomicBool::new(false), &mut |i, run| {
        sh.send(&[run_frame(id, (at + i) as u64, run)])
    })
}

/// Reads `buf.len()` bytes at `offset`; what lies beyond the file's end reads as zeros.
fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n =
            rustix::io::pread(fd, &mut buf[got..], offset + got as u64).map_err(io::Error::from)?;
        if n == 0 {
            buf[got..].fill(0);
            break;
        }
        got += n;
    }
    Ok(())
}

/// Server side: what a capture's buffer holds as the compositor is asked to fill it (the far
/// side holds the same), bounded by [`MAX_POOL`] for all captures in progress together.
fn snapshot(sh: &Shared, st: &mut State, r: Region) -> io::Result<Option<Vec<u8>>> {
    let (fd, size) = match st.in_fds.get(&r.mirror) {
        Some(InFd::Shm { fd, size }) => (Arc::clone(fd), *size as usize),
        _ => return Ok(None),
    };
    let len = r.len.min(size.saturating_sub(r.offset));
    if st.snapshots + len as u64 > MAX_POOL {
        return Err(protocol_error(format!(
            "{}: captures in progress hold more than {MAX_POOL} bytes",
            sh.name
        )));
    }
    let mut snap = vec![0u8; len];
    pread_full(fd.as_fd(), &mut snap, r.offset as u64)?;
    st.snapshots += len as u64;
    Ok(Some(snap))
}

/// Server side: keeps track of the client's pools and buffers (as forwarded to the
/// compositor, with the ids of the descriptors `fds` the message carries), and of the
/// captures the compositor is asked to fill.
fn track_far(
    sh: &Shared,
    st: &mut State,
    iface: &str,
    name: &str,
    object: u32,
    args: &[Value<'_>],
    fds: &[u32],
) -> io::Result<()> {
    match (iface, name) {
        ("wl_shm", "create_pool") => {
            if let Some(&id) = fds.first() {
                st.far_pools.insert(uint(args.first()), id);
            }
        }
        ("wl_shm_pool", "create_buffer") => {
            if let Some(&mirror) = st.far_pools.get(&object) {
                let (offset, height, stride) = (
                    int(args.get(1)).max(0) as usize,
                    int(args.get(3)).max(0) as usize,
                    int(args.get(4)).max(0) as usize,
                );
                let region = Region {
                    mirror,
                    offset,
                    len: height.saturating_mul(stride),
                };
                st.far_buffers.insert(uint(args.first()), region);
            }
        }
        ("wl_shm_pool", "destroy") => {
            st.far_pools.remove(&object);
        }
        ("wl_buffer", "destroy") => {
            st.far_buffers.remove(&object);
        }
        ("zwlr_screencopy_frame_v1", "copy" | "copy_with_damage")
        | ("ext_image_copy_capture_frame_v1", "attach_buffer") => {
            if let Some(c) = st.captures.remove(&object) {
                st.snapshots -= c.snapshot.as_ref().map_or(0, |s| s.len() as u64);
            }
            if let Some(&region) = st.far_buffers.get(&uint(args.first())) {
                let snapshot = if iface == "zwlr_screencopy_frame_v1" {
                    snapshot(sh, st, region)?
                } else {
                    None
                };
                st.captures.insert(object, Capture { region, snapshot });
            }
        }
        ("ext_image_copy_capture_frame_v1", "capture") => {
            if let Some(region) = st.captures.get(&object).map(|c| c.region) {
                let snap = snapshot(sh, st, region)?;
                if let Some(c) = st.captures.get_mut(&object) {
                    if let Some(old) = std::mem::replace(&mut c.snapshot, snap) {
                        st.snapshots -= old.len() as u64;
                    }
                }
            }
        }
        ("zwlr_screencopy_frame_v1" | "ext_image_copy_capture_frame_v1", "destroy") => {
            if let Some(c) = st.captures.remove(&object) {
                st.snapshots -= c.snapshot.as_ref().map_or(0, |s| s.len() as u64);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ranges at least this large are synced on two threads, half each.
pub const PARALLEL_SYNC: usize = 4 * RUN;

/// Largest changed run sent as one frame: small enough that the far side decompresses one
/// run while this side compresses the next.
const RUN: usize = 512 * 1024;

/// Brings `[start, end)` of the far side's copy up to date: reads the pool, compares with the
/// shadow in blocks, and sends each changed run (at most [`RUN`] bytes) as soon as it is found,
/// LZ4-compressed when that saves a tenth or more. A large range is split in two halves done
/// on two threads, each sending as it goes, so reading, comparing, compressing, the wire and
/// the far side's decompression all overlap.
fn sync(
    fd: BorrowedFd<'_>,
    shadow: &mut [u8],
    scratch: &mut Vec<u8>,
    start: usize,
    end: usize,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
) -> io::Result<()> {
    let end = end.min(shadow.len());
    if start >= end {
        return Ok(());
    }
    let len = end - start;
    // Reused between commits: no fresh (zeroed) allocation per frame.
    scratch.resize(len, 0);
    let cur = &mut scratch[..len];
    let shadow = &mut shadow[start..end];
    let stop = AtomicBool::new(false);
    if len < PARALLEL_SYNC {
        return sync_part(fd, start, cur, shadow, send, id, &stop);
    }
    let half = (len / 2) / BLOCK * BLOCK;
    let (cur_a, cur_b) = cur.split_at_mut(half);
    let (shadow_a, shadow_b) = shadow.split_at_mut(half);
    // The second half goes to another thread, or is done here after the first when no thread
    // can be started (a thread limit).
    let second = Mutex::new(Some((cur_b, shadow_b)));
    // A failed part raises `stop`, which ends the other one early.
    let raise = |r: io::Result<()>| {
        if r.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        r
    };
    let do_second = || match second.lock().ok().and_then(|mut p| p.take()) {
        Some((c, sh)) => raise(sync_part(fd, start + half, c, sh, send, id, &stop)),
        None => Ok(()),
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("waysock-sync".into())
            .spawn_scoped(s, do_second);
        let mine = raise(sync_part(fd, start, cur_a, shadow_a, send, id, &stop));
        let theirs = match other {
            Ok(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("pool sync thread panicked"))),
            Err(_) if mine.is_ok() => do_second(),
            Err(_) => Ok(()),
        };
        mine.and(theirs)
    })
}

/// One contiguous part of [`sync`]: `cur` receives the pool's bytes from `offset`, `shadow`
/// is what the far side holds there. Ends early once `stop` is raised (the other part failed).
fn sync_part(
    fd: BorrowedFd<'_>,
    offset: usize,
    cur: &mut [u8],
    shadow: &mut [u8],
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    stop: &AtomicBool,
) -> io::Result<()> {
    pread_full(fd, cur, offset as u64)?;
    diff_runs(cur, shadow, stop, &mut |i, run| {
        send(run_frame(id, (offset + i) as u64, run))
    })
}

/// Compares `cur` with `shadow` (what the far side holds) in [`BLOCK`]-byte blocks and hands
/// each changed run (at most [`RUN`] bytes, its offset in `cur`) to `emit` as soon as it is
/// found, after copying it into `shadow`. Stops early once `stop` is raised.
fn diff_runs(
    cur: &[u8],
    shadow: &mut [u8],
    stop: &AtomicBool,
    emit: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let len = cur.len().min(shadow.len());
    let mut i = 0;
    while i < len {
        if stop.load(Ordering::Relaxed) {
            // The other half failed: the session ends, nothing more is worth sending.
            return Ok(());
        }
        let b_end = (i + BLOCK).min(len);
        if cur[i..b_end] == shadow[i..b_end] {
            i = b_end;
            continue;
        }
        let run_start = i;
        let mut run_end = b_end;
        while run_end < len && run_end - run_start < RUN {
            let n_end = (run_end + BLOCK).min(len);
            if cur[run_end..n_end] == shadow[run_end..n_end] {
                break;
            }
            run_end = n_end;
        }
        let run = &cur[run_start..run_end];
        shadow[run_start..run_end].copy_from_slice(run);
        emit(run_start, run)?;
        i = run_end;
    }
    Ok(())
}

/// One changed run of mirror `id` at `at` as a frame: LZ4-compressed when that saves a tenth
/// or more (pixels usually compress well; waypipe also uses LZ4 by default), raw otherwise.
fn run_frame(id: u32, at: u64, run: &[u8]) -> Frame {
    let packed = lz4_flex::block::compress(run);
    if packed.len() < run.len() - run.len() / 10 {
        Frame::ShmLz4 {
            id,
            offset: at,
            raw_len: run.len() as u32,
            bytes: packed,
        }
    } else {
        Frame::ShmData {
            id,
            offset: at,
            bytes: run.to_vec(),
        }
    }
}

/// A descriptor that is not a shm pool: a pipe (relayed) or memory (copied once). A pipe read
/// end comes back to be relayed once the frames announcing it are on the wire.
fn translate_fd(sh: &Shared, fd: OwnedFd, id: u32) -> io::Result<(Vec<Frame>, Option<OwnedFd>)> {
    let info = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
    match FileType::from_raw_mode(info.st_mode as _) {
        FileType::Fifo => {
            let mode = rustix::fs::fcntl_getfl(&fd).map_err(io::Error::from)? & OFlags::RWMODE;
            let mut pipes = sh.pipes.lock().map_err(|_| poisoned())?;
            if pipes.len() >= MAX_PIPES {
                return Err(protocol_error(format!(
                    "{}: more than {MAX_PIPES} pipes relayed at once",
                    sh.name
                )));
            }
            if mode == OFlags::WRONLY {
                // Our peer wants to receive bytes: the far peer writes them.
                pipes.insert(id, PipeWriter::spawn(sh, fd, id));
                Ok((
                    vec![Frame::PipeNew {
                        id,
                        dir: PipeDir::PeerWrites,
                    }],
                    None,
                ))
            } else {
                Ok((
                    vec![Frame::PipeNew {
                        id,
                        dir: PipeDir::PeerReads,
                    }],
                    Some(fd),
                ))
            }
        }
        FileType::Socket => Err(protocol_error(format!(
            "{}: a socket was passed as a descriptor; the bridge cannot relay sockets",
            sh.name
        ))),
        _ => {
            if info.st_size.max(0) as u64 > MAX_COPY {
                return Err(protocol_error(format!(
                    "{}: a {}-byte memory descriptor is too large to copy (at most {MAX_COPY})",
                    sh.name, info.st_size
                )));
            }
            let size = info.st_size.max(0) as usize;
            let mut content = vec![0u8; size];
            let mut got = 0;
            while got < size {
                let n = rustix::io::pread(&fd, &mut content[got..], got as u64)
                    .map_err(io::Error::from)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            content.truncate(got);
            Ok((vec![Frame::MemNew { id, bytes: content }], None))
        }
    }
}

/// Reads a local pipe end until end of file and sends it as `PIPE_DATA`/`PIPE_EOF`.
fn spawn_pipe_reader(sh: &Shared, fd: OwnedFd, id: u32) {
    let writer = Arc::clone(&sh.writer);
    let stats = Arc::clone(&sh.stats);
    let credit = Arc::new(Credit::default());
    let credits = Arc::clone(&sh.credits);
    if let Ok(mut c) = credits.lock() {
        c.insert(id, Arc::clone(&credit));
    }
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        // Only as much as the far side has room for: a reader there that does not read stops
        // this pipe, not the session.
        while let Some(room) = credit.room() {
            let want = buf.len().min(room as usize);
            match rustix::io::read(&fd, &mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    credit.spend(n as u32);
                    let f = Frame::PipeData {
                        id,
                        bytes: buf[..n].to_vec(),
                    }
                    .encode();
                    stats.sent.fetch_add(f.len() as u64, Ordering::Relaxed);
                    if writer.write_record(&f).is_err() {
                        break;
                    }
                }
            }
        }
        if let Ok(mut c) = credits.lock() {
            c.remove(&id);
        }
        let _ = writer.write_record(&Frame::PipeEof { id }.encode());
    });
}

/// Flow control of one pipe read here and sent: bytes sent that the far side has not yet
/// acknowledged (`PIPE_ACK`) as written into its local pipe, at most [`PIPE_WINDOW`].
#[derive(Default)]
struct Credit {
    /// (bytes in flight, session over)
    state: Mutex<(u32, bool)>,
    freed: std::sync::Condvar,
}

impl Credit {
    /// Waits until some of the window is free; `None` once the session is over.
    fn room(&self) -> Option<u32> {
        let mut g = self.state.lock().ok()?;
        while g.0 >= PIPE_WINDOW && !g.1 {
            g = self.freed.wait(g).ok()?;
        }
        (!g.1).then(|| PIPE_WINDOW - g.0)
    }

    fn spend(&self, n: u32) {
        if let Ok(mut g) = self.state.lock() {
            g.0 = g.0.saturating_add(n);
        }
    }

    fn refund(&self, n: u32) {
        if let Ok(mut g) = self.state.lock() {
            g.0 = g.0.saturating_sub(n);
        }
        self.freed.notify_all();
    }

    fn close(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.1 = true;
        }
        self.freed.notify_all();
    }
}

/// stream → local.
fn pump_in(
    sh: &Arc<Shared>,
    local: &UnixStream,
    remote: &Stream,
    key: &[u8; 32],
) -> io::Result<()> {
    // Pool updates are applied (decompressed, written) on a second thread while this one reads
    // and opens the next records; anything that depends on the pools waits for it first.
    let applier = Applier::default();
    std::thread::scope(|scope| {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<PoolUpdate>(4);
        let worker = std::thread::Builder::new()
            .name("waysock-apply".into())
            .spawn_scoped(scope, || applier.run(sh, queue))?;
        let r = pump_in_frames(sh, local, remote, key, &applier, &jobs);
        drop(jobs);
        let _ = worker.join();
        r
    })
}

/// One received update of a mirrored pool, to be applied.
struct PoolUpdate {
    id: u32,
    offset: u64,
    /// LZ4-compressed to this length, or raw.
    raw_len: Option<u32>,
    bytes: Vec<u8>,
}

/// The pool-update worker of [`pump_in`]: how many updates are queued or in progress, and the
/// first that failed.
#[derive(Default)]
struct Applier {
    state: Mutex<(usize, Option<io::Error>)>,
    idle: std::sync::Condvar,
}

impl Applier {
    fn run(&self, sh: &Shared, queue: std::sync::mpsc::Receiver<PoolUpdate>) {
        // Decompressed pool data lands here, reused update after update (at most CHUNK bytes).
        let mut unpacked: Vec<u8> = Vec::new();
        for u in queue {
            let r = match u.raw_len {
                None => write_pool(sh, u.id, u.offset, &u.bytes),
                Some(raw_len) => {
                    unpacked.resize(raw_len as usize, 0);
                    match lz4_flex::block::decompress_into(&u.bytes, &mut unpacked) {
                        Ok(n) if n == raw_len as usize => write_pool(sh, u.id, u.offset, &unpacked),
                        Ok(_) => Err(protocol_error(format!(
                            "{}: compressed pool data of the wrong length",
                            sh.name
                        ))),
                        Err(e) => Err(protocol_error(format!(
                            "{}: corrupt compressed pool data: {e}",
                            sh.name
                        ))),
                    }
                }
            };
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            st.0 = st.0.saturating_sub(1);
            if let Err(e) = r {
                st.1.get_or_insert(e);
            }
            self.idle.notify_all();
        }
    }

    /// Queues an update (waits while 4 are queued: the stream then waits too).
    fn queue(
        &self,
        jobs: &std::sync::mpsc::SyncSender<PoolUpdate>,
        u: PoolUpdate,
    ) -> io::Result<()> {
        {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            if let Some(e) = st.1.take() {
                return Err(e);
            }
            st.0 += 1;
        }
        jobs.send(u)
            .map_err(|_| io::Error::other("the pool update thread stopped"))
    }

    /// Waits until every queued update is applied; the first failure, if any.
    fn wait(&self) -> io::Result<()> {
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        while st.0 > 0 && st.1.is_none() {
            st = self.idle.wait(st).map_err(|_| poisoned())?;
        }
        match st.1.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn pump_in_frames(
    sh: &Arc<Shared>,
    local: &UnixStream,
    remote: &Stream,
    key: &[u8; 32],
    applier: &Applier,
    jobs: &std::sync::mpsc::SyncSender<PoolUpdate>,
) -> io::Result<()> {
    let mut reader = OpenReader::new(
        io::BufReader::with_capacity(
            256 * 1024,
            SpinRead {
                sh,
                poller: Poller::new(From::Remote),
                stream: remote.try_clone()?,
            },
        ),
        key,
    );
    let dir = sh.side.incoming();
    loop {
        let Some(frame) = Frame::read(&mut reader)? else {
            return applier.wait();
        };
        if !matches!(
            frame,
            Frame::ShmData { .. }
                | Frame::ShmLz4 { .. }
                | Frame::ShmNew { .. }
                | Frame::PipeNew { .. }
                | Frame::PipeData { .. }
                | Frame::PipeEof { .. }
                | Frame::PipeAck { .. }
        ) {
            // A Wayland message may make the compositor read a pool, and a resize or drop
            // changes one: every update sent before it must be in place.
            applier.wait()?;
        }
        match frame {
            Frame::Wayland { fds, bytes } => {
                sh.stats.received.fetch_add(
                    bytes.len() as u64 + 7 + 4 * fds.len() as u64,
                    Ordering::Relaxed,
                );
                let mut st = sh.state.lock().map_err(|_| poisoned())?;
                // Keep the object map in step with what the far side forwarded.
                let mut at = 0;
                let mut fd_at = 0;
                while let Some(h) = codec::header(&bytes[at..])
                    .map_err(|e| protocol_error(format!("{}: {e}", sh.name)))?
                {
                    let size = h.size as usize;
                    if bytes.len() - at < size {
                        return Err(protocol_error(format!(
                            "{}: a frame ends inside a message",
                            sh.name
                        )));
                    }
                    if let Some(def) = st.map.message(&h, dir) {
                        let args = codec::decode(def, &bytes[at + 8..at + size]).map_err(|e| {
                            protocol_error(format!("{}: {}: {e}", sh.name, def.name))
                        })?;
                        if sh.side == Side::Server && def.name == "bind" {
                            check_bind(sh, &st.map, h.object, &args)?;
                        }
                        let carried = fds.get(fd_at..).unwrap_or(&[]);
                        fd_at += def.fd_count();
                        if sh.side == Side::Server {
                            let iface = st.map.interface_of(h.object).map_or("", |i| i.name);
                            track_far(sh, &mut st, iface, def.name, h.object, &args, carried)?;
                        }
                        st.map
                            .apply(&h, dir, def, &args)
                            .map_err(|e| protocol_error(format!("{}: {e}", sh.name)))?;
                    }
                    at += size;
                }
                if at != bytes.len() {
                    return Err(protocol_error(format!(
                        "{}: trailing bytes in a frame",
                        sh.name
                    )));
                }
                let mut once = Vec::new();
                for id in &fds {
                    match st.in_fds.remove(id) {
                        Some(InFd::Shm { fd, size }) => {
                            once.push(rustix::io::dup(&*fd).map_err(io::Error::from)?);
                            st.in_fds.insert(*id, InFd::Shm { fd, size });
                        }
                        Some(InFd::Once(fd)) => once.push(fd),
                        None => {
                            return Err(protocol_error(format!(
                                "{}: unknown descriptor id {id}",
                                sh.name
                            )))
                        }
                    }
                }
                drop(st);
                let borrowed: Vec<BorrowedFd<'_>> = once.iter().map(AsFd::as_fd).collect();
                transport::send_with_fds(local.as_fd(), &bytes, &borrowed)?;
                sh.poll.expect_reply(From::Local);
            }
            Frame::ShmNew { id, size } => {
                if size > MAX_POOL {
                    return Err(protocol_error(format!(
                        "{}: mirrored pool of {size} bytes",
                        sh.name
                    )));
                }
                {
                    let mut st = sh.state.lock().map_err(|_| poisoned())?;
                    if st.mirrored + size > MAX_MIRRORED {
                        return Err(protocol_error(format!(
                            "{}: the far side mirrors more than {MAX_MIRRORED} bytes",
                            sh.name
                        )));
                    }
                    st.mirrored += size;
                }
                let fd = memfd("waysock-shm")?;
                rustix::fs::ftruncate(&fd, size).map_err(io::Error::from)?;
                insert_in_fd(
                    sh,
                    id,
                    InFd::Shm {
                        fd: Arc::new(fd),
                        size,
                    },
                )?;
            }
            Frame::ShmData { id, offset, bytes } => {
                sh.stats
                    .received
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let raw_len = None;
                applier.queue(
                    jobs,
                    PoolUpdate {
                        id,
                        offset,
                        raw_len,
                        bytes,
                    },
                )?;
            }
            Frame::ShmLz4 {
                id,
                offset,
                raw_len,
                bytes,
            } => {
                sh.stats
                    .received
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                // raw_len ≤ CHUNK was checked when the frame was decoded.
                let raw_len = Some(raw_len);
                applier.queue(
                    jobs,
                    PoolUpdate {
                        id,
                        offset,
                        raw_len,
                        bytes,
                    },
                )?;
            }
            Frame::ShmSize { id, size } => {
                if size > MAX_POOL {
                    return Err(protocol_error(format!(
                        "{}: mirrored pool of {size} bytes",
                        sh.name
                    )));
                }
                let mut st = sh.state.lock().map_err(|_| poisoned())?;
                let old = match st.in_fds.get(&id) {
                    Some(InFd::Shm { size: s, .. }) => *s,
                    _ => {
                        return Err(protocol_error(format!(
                            "{}: resize of unknown pool {id}",
                            sh.name
                        )))
                    }
                };
                let total = st.mirrored - old.min(st.mirrored) + size;
                if total > MAX_MIRRORED {
                    return Err(protocol_error(format!(
                        "{}: the far side mirrors more than {MAX_MIRRORED} bytes",
                        sh.name
                    )));
                }
                st.mirrored = total;
                if let Some(InFd::Shm { fd, size: s }) = st.in_fds.get_mut(&id) {
                    rustix::fs::ftruncate(&**fd, size).map_err(io::Error::from)?;
                    *s = size;
                }
            }
            Frame::MemNew { id, bytes } => {
                let fd = memfd("waysock-mem")?;
                let mut done = 0;
                while done < bytes.len() {
                    done += rustix::io::pwrite(&fd, &bytes[done..], done as u64)
                        .map_err(io::Error::from)?;
                }
                let _ = rustix::fs::fcntl_add_seals(
                    &fd,
                    SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
                );
                insert_in_fd(sh, id, InFd::Once(fd))?;
            }
            Frame::PipeNew { id, dir } => {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(io::Error::from)?;
                let peer_end = match dir {
                    PipeDir::PeerWrites => {
                        spawn_pipe_reader(sh, r, id);
                        w
                    }
                    PipeDir::PeerReads => {
                        let mut pipes = sh.pipes.lock().map_err(|_| poisoned())?;
                        if pipes.len() >= MAX_PIPES {
                            return Err(protocol_error(format!(
                                "{}: more than {MAX_PIPES} pipes relayed at once",
                                sh.name
                            )));
                        }
                        pipes.insert(id, PipeWriter::spawn(sh, w, id));
                        r
                    }
                };
                insert_in_fd(sh, id, InFd::Once(peer_end))?;
            }
            Frame::PipeData { id, bytes } => {
                // Never blocks: the far side sends at most PIPE_WINDOW bytes we have not
                // acknowledged, and one that sends more ends the session.
                let mut pipes = sh.pipes.lock().map_err(|_| poisoned())?;
                if let Some(w) = pipes.get(&id) {
                    let n = bytes.len() as u64;
                    if w.queued.fetch_add(n, Ordering::SeqCst) + n > u64::from(PIPE_WINDOW) {
                        return Err(protocol_error(format!(
                            "{}: the far side sent more than {PIPE_WINDOW} unacknowledged bytes \
                             into pipe {id}",
                            sh.name
                        )));
                    }
                    if w.queue.send(bytes).is_err() {
                        pipes.remove(&id);
                    }
                }
            }
            Frame::PipeAck { id, n } => {
                let credit = sh.credits.lock().map_err(|_| poisoned())?.get(&id).cloned();
                // An ack for a pipe already finished is harmless.
                if let Some(c) = credit {
                    c.refund(n);
                }
            }
            Frame::PipeEof { id } => {
                sh.pipes.lock().map_err(|_| poisoned())?.remove(&id);
            }
            Frame::ShmDrop { id } => {
                let mut st = sh.state.lock().map_err(|_| poisoned())?;
                if let Some(InFd::Shm { size, .. }) = st.in_fds.get(&id) {
                    let size = *size;
                    st.in_fds.remove(&id);
                    st.mirrored = st.mirrored.saturating_sub(size);
                }
            }
        }
    }
}

/// Names each hidden global once per process (at `info`, i.e. `waysock bridge -v`): every
/// session sees the same globals, and a log line per client would drown the rest.
fn note_hidden(name: &[u8], filtered: bool) {
    static SEEN: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());
    let first = SEEN
        .lock()
        .map(|mut seen| seen.insert(name.to_vec()))
        .unwrap_or(false);
    if first {
        let why = if filtered {
            "its objects pass descriptors the bridge cannot translate"
        } else {
            "the bridge has no signatures for its interface"
        };
        tracing::info!(
            "hiding global {} from clients: {why}",
            String::from_utf8_lossy(name)
        );
    }
}

/// A client may bind only what the bridge advertised: not a filtered global, nor an interface
/// without signatures (it could pass descriptors we cannot place).
fn check_bind(sh: &Shared, map: &ObjectMap, object: u32, args: &[Value<'_>]) -> io::Result<()> {
    if map.interface_of(object).map(|i| i.name) != Some("wl_registry") {
        return Ok(());
    }
    let Some(Value::NewId {
        interface: Some(name),
        ..
    }) = args.get(1)
    else {
        return Ok(());
    };
    match crate::protocol::find_interface_bytes(name) {
        Some(i) if !FILTERED_GLOBALS.contains(&i.name) => Ok(()),
        _ => Err(protocol_error(format!(
            "{}: the client bound {}, which the bridge does not carry",
            sh.name,
            String::from_utf8_lossy(name)
        ))),
    }
}

/// The write end of a relayed pipe, fed by its own thread: a local reader that is slow (or
/// reads only after a Wayland roundtrip) never blocks the session's Wayland traffic. What
/// waits here is bounded by the sender's window ([`PIPE_WINDOW`]): each chunk written into
/// the local pipe is acknowledged (`PIPE_ACK`), which lets the sender read more.
struct PipeWriter {
    queue: std::sync::mpsc::Sender<Vec<u8>>,
    /// Bytes received and not yet written (or dropped).
    queued: Arc<AtomicU64>,
}

impl PipeWriter {
    fn spawn(sh: &Shared, fd: OwnedFd, id: u32) -> PipeWriter {
        let (queue, chunks) = std::sync::mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicU64::new(0));
        let writer = Arc::clone(&sh.writer);
        let stats = Arc::clone(&sh.stats);
        let pending = Arc::clone(&queued);
        std::thread::spawn(move || {
            let mut reader_gone = false;
            for chunk in chunks {
                let mut done = 0;
                while done < chunk.len() && !reader_gone {
                    match rustix::io::write(&fd, &chunk[done..]) {
                        Ok(n) => done += n,
                        Err(rustix::io::Errno::INTR) => {}
                        // The reader went away: the rest is dropped, as a local pipe would,
                        // and still acknowledged so the sender finishes.
                        Err(_) => reader_gone = true,
                    }
                }
                pending.fetch_sub(chunk.len() as u64, Ordering::SeqCst);
                let ack = Frame::PipeAck {
                    id,
                    n: chunk.len() as u32,
                }
                .encode();
                stats.sent.fetch_add(ack.len() as u64, Ordering::Relaxed);
                if writer.write_record(&ack).is_err() {
                    return;
                }
            }
            // The queue closed (PIPE_EOF or the session ended): `fd` closes, the reader sees EOF.
        });
        PipeWriter { queue, queued }
    }
}

/// Writes bytes from the stream into a mirrored pool, within its bounds: on the server side
/// the compositor's copy of a client's pool; on the client side the client's own pool, which
/// the compositor filled (a capture), and then the shadow follows ([`fold_returned`]).
fn write_pool(sh: &Shared, id: u32, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let mut st = sh.state.lock().map_err(|_| poisoned())?;
    let (fd, size, returned) = match st.in_fds.get(&id) {
        Some(InFd::Shm { fd, size }) => (Arc::clone(fd), *size, false),
        _ if sh.side == Side::Client => match st.mirrors.get(&id) {
            Some(m) => (Arc::clone(&m.fd), m.size as u64, true),
            // The client let go of the pool while the compositor filled it: nobody looks.
            None => return Ok(()),
        },
        _ => {
            return Err(protocol_error(format!(
                "{}: data for unknown pool {id}",
                sh.name
            )))
        }
    };
    if offset
        .checked_add(bytes.len() as u64)
        .is_none_or(|e| e > size)
    {
        return Err(protocol_error(format!(
            "{}: pool data beyond the pool's end",
            sh.name
        )));
    }
    if returned {
        st.returned.push((id, offset, bytes.to_vec()));
    }
    drop(st);
    let mut done = 0;
    while done < bytes.len() {
        done += rustix::io::pwrite(&*fd, &bytes[done..], offset + done as u64)
            .map_err(io::Error::from)?;
    }
    Ok(())
}

/// Records a descriptor from the stream, within the session's limit.
fn insert_in_fd(sh: &Shared, id: u32, fd: InFd) -> io::Result<()> {
    let mut st = sh.state.lock().map_err(|_| poisoned())?;
    if st.in_fds.len() >= MAX_SESSION_FDS {
        return Err(protocol_error(format!(
            "{}: more than {MAX_SESSION_FDS} descriptors pending from the far side",
            sh.name
        )));
    }
    st.in_fds.insert(id, fd);
    Ok(())
}

fn memfd(name: &str) -> io::Result<OwnedFd> {
    rustix::fs::memfd_create(
        name,
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    /// A session's polling state with a generous "reply likely" window, so that a slow test
    /// machine does not make an expectation look stale.
    fn busy_poll(us: u64) -> BusyPoll {
        let mut bp = BusyPoll::new(Duration::from_micros(us), Arc::new(Stats::default()));
        bp.window_us = 10_000_000;
        bp
    }

    fn counts(bp: &BusyPoll) -> (u64, u64) {
        (
            bp.stats.busy_polls.load(Ordering::Relaxed),
            bp.stats.busy_poll_misses.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn nothing_forwarded_yet_means_no_poll() {
        let bp = busy_poll(10_000);
        let (x, _y) = UnixStream::pair().unwrap();
        let mut p = Poller::new(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
        // Forwarded towards the other side only: still nothing expected from this one.
        bp.expect_reply(From::Remote);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
    }

    #[test]
    fn a_poll_that_runs_out_turns_polling_off_until_a_prompt_reply() {
        let bp = busy_poll(10_000);
        let (mut x, mut y) = UnixStream::pair().unwrap();
        let mut p = Poller::new(From::Local);
        // Expected, but nothing comes: one poll, run out.
        bp.expect_reply(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (1, 1));
        // Off now: the next waits do not poll, however likely an answer.
        bp.expect_reply(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (1, 1));
        // That answer arrives well within the budget: polling comes back on.
        y.write_all(b"a").unwrap();
        let mut one = [0u8; 1];
        x.read_exact(&mut one).unwrap();
        p.after_read(&bp);
        bp.expect_reply(From::Local);
        y.write_all(b"b").unwrap();
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (2, 1), "polls again, and finds the answer");
    }

    #[test]
    fn a_zero_budget_never_polls_and_a_huge_one_is_clamped() {
        let bp = busy_poll(0);
        let (x, _y) = UnixStream::pair().unwrap();
        bp.expect_reply(From::Local);
        Poller::new(From::Local).before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
        assert_eq!(busy_poll(60_000_000).spin_us, 10_000);
    }
}
