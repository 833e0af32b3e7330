//! One Wayland connection relayed over one byte stream, with its file descriptors translated.
//!
//! Every frame crosses the stream sealed (see [`crate::channel`]).
//!
//! Each bridged client gets its own TCP connection (no multiplexing): a slow or dead client
//! then stalls and ends only its own session, TCP's flow control is the backpressure (the
//! kernel's socket buffers bound what is in flight each way), and a failed session is simply a
//! closed connection.
//!
//! Modules: `core` (the translation, pure: a decoded message in, what to do out), `shm`
//! (diffing pools against shadows), `view` (a client's pool mapped read-only, `SIGBUS`
//! contained), `mirror` (a far pool's copy here, mapped and sealed against
//! shrinking), `pipes`, `poll` (busy polling), `pump_out` and
//! `pump_in` (the two relay threads, which do the I/O the core asks for), `error`.
//!
//! Two threads per session: local → remote parses every message (object map, signatures),
//! turns each descriptor into an id plus content frames, and forwards; remote → local applies
//! content frames to local memfds and pipes and hands the descriptors to the local peer with
//! the message bytes. Translation:
//! - `wl_shm.create_pool`: the pool is mirrored in a memfd on the far side, starting zeroed;
//!   on `wl_surface.commit` the attached buffer's damaged area (the bounding box of its
//!   `damage_buffer` rects: those rows, and those columns where the format's pixel size is
//!   known, whole rows otherwise; any surface `damage` or a buffer's first commit means the
//!   whole buffer) is compared with a shadow copy in 64-byte blocks; changed blocks close to
//!   each other join one span, and a commit's spans cross in few patches of up to 512 KiB,
//!   each raw, one LZ4 block or one zstd frame, whichever is expected to arrive soonest (each
//!   codec's speed and ratio measured on recent patches, the link's rate as the far side saw
//!   large records arrive and reported back in `LINK_RATE`), sent as soon as each is full
//!   (large areas on two threads). A damaged area whose rows now hold what the shadow holds some
//!   rows further on (a scroll, found by row fingerprints kept from the last sync), or with a
//!   rectangle that holds what the shadow holds elsewhere in it (a window dragged, a canvas
//!   panned, found by block keys), first goes as a move (`SHM_MOVE`, applied to both copies),
//!   so only what came into view is diffed and sent.
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

mod core;
mod error;
mod mirror;
mod pipes;
mod poll;
mod pump_in;
mod pump_out;
mod shm;
mod view;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::channel::{self, SealWriter, Sealed, SessionKeys};
use crate::codec::Direction;
use crate::stream::Stream;
use crate::transport::{self, Frame};

pub use error::SessionError;
pub use poll::{DEFAULT_BUSY_POLL, MAX_BUSY_POLL};
pub use shm::PARALLEL_SYNC;

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

/// Largest memory object copied once (keymaps are tens of KiB); it must fit one frame.
const MAX_COPY: u64 = (transport::MAX_FRAME - 64) as u64;
/// Most mirrored bytes one session may hold (all its pools together).
const MAX_MIRRORED: u64 = 2 << 30;
/// Most descriptors one session may have waiting or mirrored, and most live relayed pipes.
const MAX_SESSION_FDS: usize = 1024;
const MAX_PIPES: usize = 64;
/// Largest mirrored pool.
const MAX_POOL: u64 = 1 << 30;

/// A descriptor received from the stream, waiting for its Wayland message.
enum InFd {
    /// A mirrored pool: kept, since later frames update it (and, for a buffer the compositor
    /// fills, it is read back).
    Shm(Arc<mirror::Mirror>),
    /// Handed to the local peer once.
    Once(OwnedFd),
}

/// The session's descriptors and the bytes kept for them, shared by its threads (each lock
/// held only to look up or record, never across I/O).
#[derive(Default)]
struct Fds {
    /// Descriptors from the stream, by id.
    in_fds: HashMap<u32, InFd>,
    /// Client side: the client's mirrored pools (descriptor, size), by mirror id, for the
    /// pool-update worker to write what the compositor filled.
    pools: HashMap<u32, (Arc<OwnedFd>, u64)>,
    /// Client side: what the compositor filled (mirror, offset, bytes), for the outgoing
    /// thread to fold into its shadows.
    returned: Vec<(u32, u64, Vec<u8>)>,
    /// Server side: what each capture's buffer held when the compositor was asked to fill it.
    snapshots: HashMap<u32, Vec<u8>>,
    /// Bytes in `snapshots`, at most [`MAX_POOL`].
    snapshot_bytes: u64,
}

impl Fds {
    /// Bytes in the far side's mirrors here (at most [`MAX_MIRRORED`]).
    fn mirrored(&self) -> u64 {
        self.in_fds
            .values()
            .map(|fd| match fd {
                InFd::Shm(m) => m.len(),
                InFd::Once(_) => 0,
            })
            .sum()
    }

    fn take_snapshot(&mut self, frame: u32) -> Option<Vec<u8>> {
        let s = self.snapshots.remove(&frame)?;
        self.snapshot_bytes = self.snapshot_bytes.saturating_sub(s.len() as u64);
        Some(s)
    }

    fn forget_snapshot(&mut self, frame: u32) {
        let _ = self.take_snapshot(frame);
    }
}

struct Shared {
    side: Side,
    /// The protocol state (see [`core`]): locked for one message at a time, no I/O inside.
    core: Mutex<core::Core>,
    fds: Mutex<Fds>,
    /// Local pipe ends that bytes from the stream are written into.
    pipes: Mutex<HashMap<u32, pipes::PipeWriter>>,
    /// Flow control of the local pipes we read and send, by id (see [`pipes::Credit`]).
    credits: Arc<Mutex<HashMap<u32, Arc<pipes::Credit>>>>,
    /// The stream's write half, shared by every thread that sends (pipe readers, acks, the
    /// pool-sync threads): each frame goes out whole, as one sealed record, in order.
    writer: Arc<SealWriter<Stream>>,
    stats: Arc<Stats>,
    poll: poll::BusyPoll,
    /// How our patches cross (raw, LZ4, zstd), weighed against the link the far side reports.
    packer: shm::Packer,
    /// How fast the far side's large records arrive here, to report back.
    meter: Mutex<shm::LinkMeter>,
}

/// Sends `f` as one sealed record (encoded in place, no copy), counted in `stats`: how every
/// thread of a session sends.
fn send_frame(writer: &SealWriter<Stream>, stats: &Stats, f: &Frame) -> io::Result<()> {
    let rec = f.encode_with(channel::HEADROOM, channel::TAG);
    stats
        .sent
        .fetch_add((rec.len() - channel::HEADROOM) as u64, Ordering::Relaxed);
    writer.write_sealable(rec)
}

impl Shared {
    fn send(&self, frames: &[Frame]) -> io::Result<()> {
        for f in frames {
            send_frame(&self.writer, &self.stats, f)?;
        }
        Ok(())
    }
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
    // Everything the session logs carries its name, once.
    let span = tracing::info_span!("session", name = %name);
    let _span = span.enter();
    tracing::debug!("records sealed with {}", keys.cipher.name());
    let shared = Arc::new(Shared {
        side,
        core: Mutex::new(core::Core::new(side)),
        fds: Mutex::new(Fds::default()),
        pipes: Mutex::new(HashMap::new()),
        credits: Arc::new(Mutex::new(HashMap::new())),
        writer: Arc::new(SealWriter::new(
            remote.try_clone()?,
            &keys.send,
            keys.cipher,
        )),
        poll: poll::BusyPoll::new(busy_poll, Arc::clone(&stats)),
        stats,
        packer: shm::Packer::default(),
        meter: Mutex::new(shm::LinkMeter::default()),
    });
    let out_local = local.try_clone()?;
    let out_shared = Arc::clone(&shared);
    let out_remote = remote.try_clone()?;
    let out_span = span.clone();
    let outgoing = std::thread::spawn(move || {
        let _span = out_span.enter();
        let r = pump_out::pump_out(&out_shared, &out_local);
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
    let r_in = pump_in::pump_in(&shared, &local, &remote, &keys.receive, keys.cipher);
    let _ = local.shutdown(Shutdown::Write);
    if r_in.is_err() {
        let _ = local.shutdown(Shutdown::Both);
        let _ = remote.shutdown(Shutdown::Both);
    }
    let r_out = outgoing
        .join()
        .unwrap_or(Err(SessionError::Panicked("relay")));
    // No acknowledgement can come any more: pipe readers waiting for one stop.
    if let Ok(credits) = shared.credits.lock() {
        for c in credits.values() {
            c.close();
        }
    }
    match (r_in, r_out) {
        // Our own relay thread failed and shut the stream down, so the incoming side then saw
        // it end without a close: the outgoing error is the cause.
        (Err(i), Err(o)) if i.is_unexpected_eof() => Err(o.into()),
        (r_in, r_out) => r_in.and(r_out).map_err(io::Error::from),
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
