//! local → stream: reads the local peer's messages and descriptors, asks the core what to do
//! with each, and does it (mirrors, pipes, copies, filled buffers sent back), then forwards.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use rustix::fs::{FileType, OFlags};

use super::core::{Action, FdAction, FdKind, Forward, Region};
use super::error::SessionError;
use super::pipes::{spawn_pipe_reader, PipeWriter};
use super::poll::{From, Poller};
use super::view::View;
use super::{note_hidden, shm, InFd, Shared, MAX_PIPES};
use crate::codec;
use crate::transport::{self, Frame, PipeDir};

/// A mirrored pool on the sending side: the client's descriptor and what the far side holds.
struct Shadow {
    fd: Arc<OwnedFd>,
    /// The pool mapped (`None`: read with `pread`), as large as `copy`.
    view: Option<View>,
    copy: shm::Shadow,
}

/// What a descriptor from the local peer is.
fn classify(fd: &OwnedFd) -> Result<FdKind, SessionError> {
    let info = rustix::fs::fstat(fd).map_err(std::io::Error::from)?;
    Ok(match FileType::from_raw_mode(info.st_mode as _) {
        FileType::Fifo => {
            let mode = rustix::fs::fcntl_getfl(fd).map_err(std::io::Error::from)? & OFlags::RWMODE;
            if mode == OFlags::WRONLY {
                FdKind::PipeWrite
            } else {
                FdKind::PipeRead
            }
        }
        FileType::Socket => FdKind::Socket,
        _ => FdKind::Memory(info.st_size.max(0) as u64),
    })
}

/// local → stream.
pub(super) fn pump_out(sh: &Shared, local: &UnixStream) -> Result<(), SessionError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut poller = Poller::new(From::Local);
    let mut pending: Vec<u8> = Vec::new();
    let mut fdq: VecDeque<OwnedFd> = VecDeque::new();
    let mut kinds: VecDeque<FdKind> = VecDeque::new();
    let mut shadows: HashMap<u32, Shadow> = HashMap::new();
    loop {
        let mut fds = Vec::new();
        poller.before_read(&sh.poll, local.as_fd());
        let n = transport::recv_with_fds(local.as_fd(), &mut buf, &mut fds)?;
        poller.after_read(&sh.poll);
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        for fd in fds {
            kinds.push_back(classify(&fd)?);
            fdq.push_back(fd);
        }
        if fdq.len() > 4 * transport::MAX_FDS {
            return Err(SessionError::QueuedDescriptors(fdq.len()));
        }
        fold_returned(sh, &mut shadows)?;
        let mut batch = Vec::new();
        let mut batch_fds = Vec::new();
        let mut at = 0;
        while let Some(h) = codec::header(&pending[at..])? {
            let size = h.size as usize;
            if pending.len() - at < size {
                break;
            }
            let msg = &pending[at..at + size];
            let out = sh.core.lock()?.outgoing(&h, msg, kinds.make_contiguous())?;
            let mut frames = Vec::new();
            let mut readers = Vec::new();
            for action in &out.fds {
                kinds.pop_front();
                let fd = fdq
                    .pop_front()
                    .ok_or(SessionError::UndecodableDescriptors(0))?;
                descriptor(sh, *action, fd, &mut frames, &mut readers, &mut shadows)?;
            }
            if !frames.is_empty() || !out.actions.is_empty() {
                flush(sh, &mut batch, &mut batch_fds)?;
                sh.send(&frames)?;
                for action in &out.actions {
                    act(sh, *action, &mut shadows)?;
                }
            }
            let forward = match &out.forward {
                Forward::Keep => Some(msg),
                Forward::Rewrite(m) => Some(&m[..]),
                Forward::Hide { global, known } => {
                    note_hidden(global, *known);
                    None
                }
            };
            if let Some(bytes) = forward {
                if batch_fds.len() + out.fds.len() > transport::MAX_FDS {
                    flush(sh, &mut batch, &mut batch_fds)?;
                }
                batch.extend_from_slice(bytes);
                batch_fds.extend(out.fd_ids());
            }
            if !readers.is_empty() {
                // The far side must know the pipe (PIPE_NEW, sent above) and get the message
                // carrying it before any of its bytes arrive.
                flush(sh, &mut batch, &mut batch_fds)?;
                for (fd, id) in readers {
                    spawn_pipe_reader(sh, fd, id);
                }
            }
            at += size;
        }
        pending.drain(..at);
        flush(sh, &mut batch, &mut batch_fds)?;
        // How fast the far side's records arrive here, when that changed: it weighs its
        // compression against it. Sent from this thread, which writes to the stream anyway.
        let report = sh.meter.lock()?.report();
        if let Some(rate) = report {
            sh.send(&[Frame::LinkRate { rate }])?;
        }
        if pending.is_empty() && !fdq.is_empty() {
            // libwayland sends descriptors with the bytes of their message: every complete
            // message has been handled, so these belonged to messages we could not decode.
            // Handing them to a later message would deliver the wrong file: fail closed.
            return Err(SessionError::UndecodableDescriptors(fdq.len()));
        }
    }
}

/// Does what the core said with one descriptor: the frames announcing it go to `frames`, a
/// pipe read end to relay (once they are sent) to `readers`.
fn descriptor(
    sh: &Shared,
    action: FdAction,
    fd: OwnedFd,
    frames: &mut Vec<Frame>,
    readers: &mut Vec<(OwnedFd, u32)>,
    shadows: &mut HashMap<u32, Shadow>,
) -> Result<(), SessionError> {
    match action {
        FdAction::Pool { id, size } => {
            let fd = Arc::new(fd);
            sh.fds.lock()?.pools.insert(id, (Arc::clone(&fd), size));
            shadows.insert(
                id,
                Shadow {
                    view: View::map(fd.as_fd(), size),
                    fd,
                    copy: shm::Shadow::new(size as usize),
                },
            );
            frames.push(Frame::ShmNew { id, size });
        }
        FdAction::Pipe { id, dir } => {
            let mut pipes = sh.pipes.lock()?;
            if pipes.len() >= MAX_PIPES {
                return Err(SessionError::TooManyPipes);
            }
            match dir {
                PipeDir::PeerWrites => {
                    pipes.insert(id, PipeWriter::spawn(sh, fd, id));
                }
                PipeDir::PeerReads => readers.push((fd, id)),
            }
            frames.push(Frame::PipeNew { id, dir });
        }
        FdAction::Copy { id, size } => {
            // The size it had when classified (the core refused more than MAX_COPY); a file
            // that shrank since is copied as far as it goes.
            let mut content = vec![0u8; size.min(super::MAX_COPY) as usize];
            let got = shm::pread_full(fd.as_fd(), &mut content, 0)?;
            content.truncate(got);
            frames.push(Frame::MemNew { id, bytes: content });
        }
    }
    Ok(())
}

/// Does one of the core's actions.
fn act(
    sh: &Shared,
    action: Action,
    shadows: &mut HashMap<u32, Shadow>,
) -> Result<(), SessionError> {
    match action {
        Action::Sync { mirror, area } => {
            if let Some(s) = shadows.get_mut(&mirror) {
                let pool = match &s.view {
                    Some(v) => shm::Pool::Mapped(v),
                    None => shm::Pool::Fd(s.fd.as_fd()),
                };
                shm::sync(
                    pool,
                    &mut s.copy,
                    area,
                    &|f: Frame| sh.send(std::slice::from_ref(&f)),
                    mirror,
                    &sh.packer,
                )?;
            }
        }
        Action::Resize { mirror, size } => {
            sh.send(&[Frame::ShmSize { id: mirror, size }])?;
            if let Some(s) = shadows.get_mut(&mirror) {
                s.copy.resize(size as usize);
                s.view = None;
                s.view = View::map(s.fd.as_fd(), size);
            }
            if let Some(pool) = sh.fds.lock()?.pools.get_mut(&mirror) {
                pool.1 = size;
            }
        }
        Action::Drop { mirror } => {
            sh.send(&[Frame::ShmDrop { id: mirror }])?;
            shadows.remove(&mirror);
            sh.fds.lock()?.pools.remove(&mirror);
        }
        Action::SendBack { frame, region } => send_back(sh, frame, region)?,
        Action::Forget { frame } => sh.fds.lock()?.forget_snapshot(frame),
    }
    Ok(())
}

fn flush(sh: &Shared, batch: &mut Vec<u8>, fds: &mut Vec<u32>) -> Result<(), SessionError> {
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

/// Client side: folds what the compositor filled (written into the client's pools by the
/// pool-update worker) into the shadows, so they stay what the far side holds. Whatever the
/// client sends after it saw `ready` is read after this.
fn fold_returned(sh: &Shared, shadows: &mut HashMap<u32, Shadow>) -> Result<(), SessionError> {
    let returned = {
        let mut fds = sh.fds.lock()?;
        if fds.returned.is_empty() {
            return Ok(());
        }
        std::mem::take(&mut fds.returned)
    };
    for (id, offset, bytes) in returned {
        if let Some(s) = shadows.get_mut(&id) {
            s.copy.fold(offset as usize, &bytes);
        }
    }
    Ok(())
}

/// Server side: the compositor filled capture `frame`'s buffer (`ready`): sends the runs that
/// changed since the capture started back to the client side, which writes them into the
/// client's pool before it forwards `ready`.
fn send_back(sh: &Shared, frame: u32, region: Region) -> Result<(), SessionError> {
    let (snapshot, mirror) = {
        let mut fds = sh.fds.lock()?;
        let Some(snapshot) = fds.take_snapshot(frame) else {
            // `ready` for a capture never started: nothing was filled.
            return Ok(());
        };
        match fds.in_fds.get(&region.mirror) {
            Some(InFd::Shm(m)) => (snapshot, Arc::clone(m)),
            // The pool is gone: nobody can see the pixels.
            _ => return Ok(()),
        }
    };
    let mut shadow = snapshot;
    let cur = mirror.read(region.offset, shadow.len())?;
    let at = region.offset;
    let send = |f: Frame| sh.send(std::slice::from_ref(&f));
    let mut patch = shm::Patch::new(region.mirror, at as u64);
    let len = cur.len();
    shm::diff_area(
        &cur,
        &mut shadow,
        len,
        len,
        &std::sync::atomic::AtomicBool::new(false),
        &mut |i, run| patch.fill((at + i) as u64, run, &send, &sh.packer),
    )?;
    if !patch.is_empty() {
        send(patch.take(&sh.packer))?;
    }
    Ok(())
}
