//! stream → local: opens frames from the far side, applies pool updates (on a worker thread),
//! pipes and copies to local descriptors, keeps the core in step with each Wayland message,
//! and hands the messages with their descriptors to the local peer.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rustix::fs::SealFlags;

use super::core::Region;
use super::error::SessionError;
use super::mirror::Mirror;
use super::pipes::{spawn_pipe_reader, PipeWriter};
use super::poll::{From, Poller, SpinRead};
use super::{shm, InFd, Shared, Side, MAX_MIRRORED, MAX_PIPES, MAX_POOL, MAX_SESSION_FDS};
use crate::channel::{Cipher, OpenReader};
use crate::codec;
use crate::stream::Stream;
use crate::transport::{self, Frame, Packing, PipeDir, PIPE_WINDOW};

/// stream → local.
pub(super) fn pump_in(
    sh: &Arc<Shared>,
    local: &UnixStream,
    remote: &Stream,
    key: &[u8; 32],
    cipher: Cipher,
) -> Result<(), SessionError> {
    // Pool updates are applied (decompressed, written) on a second thread while this one reads
    // and opens the next records; anything that depends on the pools waits for it first.
    let applier = Applier::default();
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<PoolUpdate>(4);
        let worker = std::thread::Builder::new()
            .name("waysock-apply".into())
            .spawn_scoped(scope, || {
                let _span = span.enter();
                applier.run(sh, queue, remote)
            })?;
        let r = pump_in_frames(sh, local, remote, key, cipher, &applier, &jobs);
        drop(jobs);
        let _ = worker.join();
        r
    })
}

/// One received update of a mirrored pool, to be applied.
enum PoolUpdate {
    Patch {
        id: u32,
        base: u64,
        packing: Packing,
        raw_len: u32,
        bytes: Vec<u8>,
    },
    Move {
        id: u32,
        m: shm::Move,
    },
}

/// The pool-update worker of [`pump_in`]: how many updates are queued or in progress, and the
/// first that failed.
#[derive(Default)]
struct Applier {
    state: Mutex<(usize, Option<SessionError>)>,
    idle: std::sync::Condvar,
}

impl Applier {
    /// Applies updates until the queue closes; the first failure is kept, and ends the
    /// reading of `remote`, so that the session ends with it at once rather than when the far
    /// side next sends something.
    fn run(&self, sh: &Shared, queue: std::sync::mpsc::Receiver<PoolUpdate>, remote: &Stream) {
        // Decompressed patches land here, reused update after update (at most MAX_PATCH
        // bytes).
        let mut unpacked: Vec<u8> = Vec::new();
        // What a move touches, for mirrors that are not mapped (kept apart from `unpacked`,
        // so that neither is zeroed again when the other was larger).
        let mut moving: Vec<u8> = Vec::new();
        for u in queue {
            let r = match u {
                PoolUpdate::Patch {
                    id,
                    base,
                    packing,
                    raw_len,
                    bytes,
                } => shm::unpack(packing, raw_len, &bytes, &mut unpacked)
                    .and_then(|body| write_pool(sh, id, base, body)),
                PoolUpdate::Move { id, m } => move_rows(sh, id, m, &mut moving),
            };
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            st.0 = st.0.saturating_sub(1);
            if let Err(e) = r {
                if st.1.is_none() {
                    let _ = remote.shutdown(std::net::Shutdown::Read);
                }
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
    ) -> Result<(), SessionError> {
        {
            let mut st = self.state.lock()?;
            if let Some(e) = st.1.take() {
                return Err(e);
            }
            st.0 += 1;
        }
        jobs.send(u).map_err(|_| SessionError::ApplierStopped)
    }

    /// The first failure of an update, if one failed (taken).
    fn failure(&self) -> Option<SessionError> {
        self.state.lock().ok()?.1.take()
    }

    /// Waits until every queued update is applied; the first failure, if any.
    fn wait(&self) -> Result<(), SessionError> {
        let mut st = self.state.lock()?;
        while st.0 > 0 && st.1.is_none() {
            st = self.idle.wait(st)?;
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
    cipher: Cipher,
    applier: &Applier,
    jobs: &std::sync::mpsc::SyncSender<PoolUpdate>,
) -> Result<(), SessionError> {
    let mut reader = OpenReader::new(
        io::BufReader::with_capacity(
            256 * 1024,
            SpinRead {
                poll: &sh.poll,
                poller: Poller::new(From::Remote),
                stream: remote.try_clone()?,
            },
        ),
        key,
        cipher,
    );
    loop {
        let frame = match Frame::read(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => return applier.wait(),
            // A failed update ends the reading: its error is the cause.
            Err(e) => return Err(applier.failure().unwrap_or_else(|| e.into())),
        };
        if let Some((n, took)) = reader.take_arrival() {
            sh.meter.lock()?.sample(n, took);
        }
        if !matches!(
            frame,
            Frame::ShmPatch { .. }
                | Frame::ShmMove { .. }
                | Frame::ShmNew { .. }
                | Frame::PipeNew { .. }
                | Frame::PipeData { .. }
                | Frame::PipeEof { .. }
                | Frame::PipeAck { .. }
                | Frame::LinkRate { .. }
        ) {
            // A Wayland message may make the compositor read a pool, and a resize or drop
            // changes one: every update sent before it must be in place.
            applier.wait()?;
        }
        match frame {
            Frame::Wayland { fds, bytes } => wayland(sh, local, &fds, &bytes)?,
            Frame::ShmNew { id, size } => {
                if size > MAX_POOL {
                    return Err(SessionError::FarPoolTooLarge(size));
                }
                if sh.fds.lock()?.mirrored() + size > MAX_MIRRORED {
                    return Err(SessionError::FarMirrorsTooMuch);
                }
                let mirror = Mirror::create(size)?;
                insert_in_fd(sh, id, InFd::Shm(Arc::new(mirror)))?;
            }
            Frame::ShmPatch {
                id,
                base,
                packing,
                raw_len,
                bytes,
            } => {
                sh.stats
                    .received
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                // raw_len ≤ MAX_PATCH was checked when the frame was decoded.
                let u = PoolUpdate::Patch {
                    id,
                    base,
                    packing,
                    raw_len,
                    bytes,
                };
                applier.queue(jobs, u)?;
            }
            f @ Frame::ShmMove { .. } => {
                let (id, m) = shm::Move::of_frame(&f).ok_or(SessionError::BeyondPool)?;
                applier.queue(jobs, PoolUpdate::Move { id, m })?;
            }
            Frame::ShmSize { id, size } => {
                if size > MAX_POOL {
                    return Err(SessionError::FarPoolTooLarge(size));
                }
                let mut st = sh.fds.lock()?;
                let old = match st.in_fds.get(&id) {
                    Some(InFd::Shm(m)) => m.len(),
                    _ => return Err(SessionError::ResizeUnknownPool(id)),
                };
                if size < old {
                    return Err(SessionError::PoolShrunk {
                        id,
                        from: old,
                        to: size,
                    });
                }
                if st.mirrored() - old + size > MAX_MIRRORED {
                    return Err(SessionError::FarMirrorsTooMuch);
                }
                if let Some(InFd::Shm(m)) = st.in_fds.get_mut(&id) {
                    *m = Arc::new(m.grown(size)?);
                }
            }
            Frame::MemNew { id, bytes } => {
                let fd = memfd("waysock-mem")?;
                shm::pwrite_full(fd.as_fd(), &bytes, 0)?;
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
                        let mut pipes = sh.pipes.lock()?;
                        if pipes.len() >= MAX_PIPES {
                            return Err(SessionError::TooManyPipes);
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
                let mut pipes = sh.pipes.lock()?;
                if let Some(w) = pipes.get(&id) {
                    let n = bytes.len() as u64;
                    if w.queued.fetch_add(n, Ordering::SeqCst) + n > u64::from(PIPE_WINDOW) {
                        return Err(SessionError::PipeWindow(id));
                    }
                    if w.queue.send(bytes).is_err() {
                        pipes.remove(&id);
                    }
                }
            }
            Frame::PipeAck { id, n } => {
                let credit = sh.credits.lock()?.get(&id).cloned();
                // An ack for a pipe already finished is harmless.
                if let Some(c) = credit {
                    c.refund(n);
                }
            }
            Frame::PipeEof { id } => {
                sh.pipes.lock()?.remove(&id);
            }
            Frame::LinkRate { rate } => sh.packer.set_link_rate(rate),
            Frame::ShmDrop { id } => {
                let mut st = sh.fds.lock()?;
                if let Some(InFd::Shm(_)) = st.in_fds.get(&id) {
                    st.in_fds.remove(&id);
                }
            }
        }
    }
}

/// One Wayland frame from the far side: keeps the core in step with each message (taking
/// capture snapshots it asks for), then hands the bytes and their descriptors to the peer.
fn wayland(sh: &Shared, local: &UnixStream, fds: &[u32], bytes: &[u8]) -> Result<(), SessionError> {
    sh.stats.received.fetch_add(
        bytes.len() as u64 + 7 + 4 * fds.len() as u64,
        Ordering::Relaxed,
    );
    let mut at = 0;
    let mut fd_at = 0;
    while let Some(h) = codec::header(&bytes[at..])? {
        let size = h.size as usize;
        if bytes.len() - at < size {
            return Err(SessionError::SplitMessage);
        }
        let carried = fds.get(fd_at..).unwrap_or(&[]);
        let verdict = sh
            .core
            .lock()?
            .incoming(&h, &bytes[at..at + size], carried)?;
        fd_at += verdict.fds;
        if let Some(frame) = verdict.forget {
            sh.fds.lock()?.forget_snapshot(frame);
        }
        if let Some((frame, region)) = verdict.snapshot {
            take_snapshot(sh, frame, region)?;
        }
        at += size;
    }
    if at != bytes.len() {
        return Err(SessionError::TrailingBytes);
    }
    let mut once = Vec::new();
    {
        let mut st = sh.fds.lock()?;
        for id in fds {
            // A mirrored pool stays (later frames update it): the peer gets a duplicate.
            if let Some(InFd::Shm(m)) = st.in_fds.get(id) {
                once.push(rustix::io::dup(m.fd()).map_err(io::Error::from)?);
                continue;
            }
            match st.in_fds.remove(id) {
                Some(InFd::Once(fd)) => once.push(fd),
                _ => return Err(SessionError::UnknownDescriptor(*id)),
            }
        }
    }
    transport::send_with_fds(local.as_fd(), bytes, &transport::borrow_all(&once))?;
    sh.poll.expect_reply(From::Local);
    Ok(())
}

/// Server side: keeps what a capture's buffer holds as the compositor is asked to fill it
/// (the client side holds the same), bounded by [`MAX_POOL`] for all captures together. Read
/// without holding any lock.
fn take_snapshot(sh: &Shared, frame: u32, r: Region) -> Result<(), SessionError> {
    let mirror = match sh.fds.lock()?.in_fds.get(&r.mirror) {
        Some(InFd::Shm(m)) => Arc::clone(m),
        _ => return Ok(()),
    };
    let len = r.len.min((mirror.len() as usize).saturating_sub(r.offset));
    let snap = if len == 0 {
        Vec::new()
    } else {
        mirror.read(r.offset, len)?
    };
    let mut st = sh.fds.lock()?;
    st.forget_snapshot(frame);
    if st.snapshot_bytes + len as u64 > MAX_POOL {
        return Err(SessionError::CapturesTooLarge);
    }
    st.snapshot_bytes += len as u64;
    st.snapshots.insert(frame, snap);
    Ok(())
}

/// Writes a patch body (see [`shm::Patch`]) from the stream into a mirrored pool, within its
/// bounds: on the server side the compositor's copy of a client's pool; on the client side
/// the client's own pool, which the compositor filled (a capture) — then the shadow follows
/// (`returned`). The writes happen without holding any lock.
fn write_pool(sh: &Shared, id: u32, base: u64, body: &[u8]) -> Result<(), SessionError> {
    let (spans, extent) = shm::spans(body)?;
    let target = {
        let mut st = sh.fds.lock()?;
        let (target, size) = match st.in_fds.get(&id) {
            Some(InFd::Shm(m)) => (Target::Mirror(Arc::clone(m)), m.len()),
            _ if sh.side == Side::Client => match st.pools.get(&id) {
                Some((fd, size)) => (Target::Pool(Arc::clone(fd)), *size),
                // The client let go of the pool while the compositor filled it: nobody looks.
                None => return Ok(()),
            },
            _ => return Err(SessionError::UnknownPool(id)),
        };
        if base.checked_add(extent).is_none_or(|e| e > size) {
            return Err(SessionError::BeyondPool);
        }
        if let Target::Pool(_) = target {
            for s in &spans {
                let bytes = body[s.at..s.at + s.len].to_vec();
                st.returned.push((id, base + s.offset, bytes));
            }
        }
        target
    };
    for s in spans {
        let bytes = &body[s.at..s.at + s.len];
        match &target {
            Target::Mirror(m) => m.write(base + s.offset, bytes)?,
            Target::Pool(fd) => shm::pwrite_full(fd.as_fd(), bytes, base + s.offset)?,
        }
    }
    Ok(())
}

/// Where [`write_pool`] writes: a mirror of ours (mapped), or a client's own pool, which the
/// client could shrink at any moment, so it is written through the kernel, never mapped.
enum Target {
    Mirror(Arc<Mirror>),
    Pool(Arc<OwnedFd>),
}

/// Moves rows of a mirrored pool in place (a scroll the far side found). Only the
/// compositor's copies of a client's pools are moved.
fn move_rows(sh: &Shared, id: u32, m: shm::Move, buf: &mut Vec<u8>) -> Result<(), SessionError> {
    let mirror = match sh.fds.lock()?.in_fds.get(&id) {
        Some(InFd::Shm(m)) => Arc::clone(m),
        _ => return Err(SessionError::UnknownPool(id)),
    };
    mirror.move_rows(&m, buf)
}

/// Records a descriptor from the stream, within the session's limit.
fn insert_in_fd(sh: &Shared, id: u32, fd: InFd) -> Result<(), SessionError> {
    let mut st = sh.fds.lock()?;
    if st.in_fds.len() >= MAX_SESSION_FDS {
        return Err(SessionError::TooManyDescriptors);
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
