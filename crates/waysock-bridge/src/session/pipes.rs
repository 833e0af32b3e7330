//! Relayed pipes (`wl_data_offer.receive`, `wl_data_source.send`, primary selection): a
//! thread per pipe end, each flow-controlled on its own ([`PIPE_WINDOW`] bytes in flight), so
//! a reader that does not read holds back only its pipe, never the Wayland messages.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Shared;
use crate::transport::{Frame, PIPE_WINDOW};

/// The write end of a relayed pipe, fed by its own thread: a local reader that is slow (or
/// reads only after a Wayland roundtrip) never blocks the session's Wayland traffic. What
/// waits here is bounded by the sender's window ([`PIPE_WINDOW`]): each chunk written into
/// the local pipe is acknowledged (`PIPE_ACK`), which lets the sender read more.
pub(super) struct PipeWriter {
    pub(super) queue: std::sync::mpsc::Sender<Vec<u8>>,
    /// Bytes received and not yet written (or dropped).
    pub(super) queued: Arc<AtomicU64>,
}

impl PipeWriter {
    pub(super) fn spawn(sh: &Shared, fd: OwnedFd, id: u32) -> PipeWriter {
        let (queue, chunks) = std::sync::mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicU64::new(0));
        let writer = Arc::clone(&sh.writer);
        let stats = Arc::clone(&sh.stats);
        let pending = Arc::clone(&queued);
        let span = tracing::Span::current();
        std::thread::spawn(move || {
            let _span = span.enter();
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
                };
                if super::send_frame(&writer, &stats, &ack).is_err() {
                    return;
                }
            }
            // The queue closed (PIPE_EOF or the session ended): `fd` closes, the reader sees EOF.
        });
        PipeWriter { queue, queued }
    }
}

/// Reads a local pipe end until end of file and sends it as `PIPE_DATA`/`PIPE_EOF`.
pub(super) fn spawn_pipe_reader(sh: &Shared, fd: OwnedFd, id: u32) {
    let writer = Arc::clone(&sh.writer);
    let stats = Arc::clone(&sh.stats);
    let credit = Arc::new(Credit::default());
    let credits = Arc::clone(&sh.credits);
    if let Ok(mut c) = credits.lock() {
        c.insert(id, Arc::clone(&credit));
    }
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _span = span.enter();
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
                    };
                    if super::send_frame(&writer, &stats, &f).is_err() {
                        break;
                    }
                }
            }
        }
        if let Ok(mut c) = credits.lock() {
            c.remove(&id);
        }
        let _ = super::send_frame(&writer, &stats, &Frame::PipeEof { id });
    });
}

/// Flow control of one pipe read here and sent: bytes sent that the far side has not yet
/// acknowledged (`PIPE_ACK`) as written into its local pipe, at most [`PIPE_WINDOW`].
#[derive(Default)]
pub(super) struct Credit {
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

    pub(super) fn refund(&self, n: u32) {
        if let Ok(mut g) = self.state.lock() {
            g.0 = g.0.saturating_sub(n);
        }
        self.freed.notify_all();
    }

    pub(super) fn close(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.1 = true;
        }
        self.freed.notify_all();
    }
}
