//! The translation core: protocol tracking without I/O. It takes one decoded message (and
//! what its descriptors are) and says what to do — forward it, hide it, announce a pool, sync
//! ranges, relay a pipe, send a filled buffer back — or why not ([`SessionError`]). No
//! sockets, no files, no locks: the pumps look at descriptors and move bytes.
//!
//! Handled messages are matched on [`Handled`], generated from the protocol tables with their
//! arguments typed.

use std::collections::HashMap;

use super::error::SessionError;
use super::{Side, FILTERED_GLOBALS, MAX_COPY, MAX_MIRRORED, MAX_POOL};
use crate::codec::{self, Direction, Header, ObjectMap, Value};
use crate::protocol::handled::Handled;
use crate::protocol::Message;
use crate::transport::PipeDir;

/// What a descriptor passed by the local peer is (the pump looks, with `fstat`/`fcntl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FdKind {
    /// A pipe's write end: the local peer wants bytes; we write what the far peer sends.
    PipeWrite,
    /// A pipe's read end (or a read-write one): we read it and send the bytes across.
    PipeRead,
    /// Memory (a file, a memfd) of this many bytes.
    Memory(u64),
    /// A socket.
    Socket,
}

/// What becomes of one descriptor the local peer passed, in message order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FdAction {
    /// A `wl_shm` pool: mirrored (`SHM_NEW` of `size` bytes), kept.
    Pool { id: u32, size: u64 },
    /// A pipe relayed as a stream (`PIPE_NEW`).
    Pipe { id: u32, dir: PipeDir },
    /// Memory copied once (`MEM_NEW`): `size` bytes when it was classified.
    Copy { id: u32, size: u64 },
}

/// What to do besides forwarding, in order, before the message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Bring `area` of a mirror up to date on the far side.
    Sync { mirror: u32, area: Area },
    /// A mirrored pool's new size (`SHM_SIZE`).
    Resize { mirror: u32, size: u64 },
    /// A mirror nobody uses any more (`SHM_DROP`): the far side may close its copy.
    Drop { mirror: u32 },
    /// The compositor filled capture `frame`'s buffer: send what changed back.
    SendBack { frame: u32, region: Region },
    /// Capture `frame` ended without a fill: forget its snapshot.
    Forget { frame: u32 },
}

/// Whether and how the message itself goes on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Forward {
    /// As it came.
    #[default]
    Keep,
    /// These bytes instead (a global's version capped to what the tables know).
    Rewrite(Vec<u8>),
    /// Not at all: a global the bridge cannot carry (`known`: the tables describe it).
    Hide { global: Vec<u8>, known: bool },
}

/// The verdict on one message from the local peer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Outgoing {
    pub forward: Forward,
    /// One per descriptor the message carries, in order (their ids go with the message).
    pub fds: Vec<FdAction>,
    pub actions: Vec<Action>,
}

impl Outgoing {
    /// The ids of the message's descriptors, in order.
    pub fn fd_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.fds.iter().map(|f| match *f {
            FdAction::Pool { id, .. } | FdAction::Pipe { id, .. } | FdAction::Copy { id, .. } => id,
        })
    }
}

/// The verdict on one message from the far side (before it goes to the local peer).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Incoming {
    /// How many of the frame's descriptor ids the message carries.
    pub fds: usize,
    /// Capture `frame` starts: keep what `region` holds now (the client side has the same).
    pub snapshot: Option<(u32, Region)>,
    /// Capture `frame` is over or restarted: its snapshot is stale.
    pub forget: Option<u32>,
}

/// Where a shm buffer lies in its pool's mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Region {
    pub mirror: u32,
    pub offset: usize,
    pub len: usize,
}

/// What of a mirror a sync covers: `rows` rows `stride` bytes apart from `start`, bytes
/// `[x0, x1)` of each (`x0 < x1 <= stride`). A plain range is one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Area {
    pub start: usize,
    pub rows: usize,
    pub stride: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Area {
    /// `[start, end)` as one row.
    pub fn range(start: usize, end: usize) -> Area {
        let len = end.saturating_sub(start);
        Area {
            start,
            rows: 1,
            stride: len,
            x0: 0,
            x1: len,
        }
    }

    /// Where the first row's part starts and the last row's part ends: every byte the area
    /// covers lies in `[first, end)` (with the gaps between rows).
    pub fn cover(&self) -> (usize, usize) {
        if self.rows == 0 || self.x1 <= self.x0 {
            return (self.start, self.start);
        }
        let first = self.start + self.x0;
        (first, self.start + (self.rows - 1) * self.stride + self.x1)
    }

    /// Whole rows back to back: one contiguous range.
    pub fn is_contiguous(&self) -> bool {
        self.rows <= 1 || (self.x0 == 0 && self.x1 == self.stride)
    }
}

/// Bytes per pixel of a `wl_shm` format whose pixels are 4 bytes (`argb8888`, `xrgb8888`
/// and the 4-byte DRM fourccs); `None` for any other, whose damage then syncs whole rows.
pub(super) fn bytes_per_pixel(format: u32) -> Option<usize> {
    const fn fourcc(c: &[u8; 4]) -> u32 {
        (c[0] as u32) | (c[1] as u32) << 8 | (c[2] as u32) << 16 | (c[3] as u32) << 24
    }
    const FOUR: [u32; 14] = [
        fourcc(b"XB24"),
        fourcc(b"AB24"),
        fourcc(b"RX24"),
        fourcc(b"RA24"),
        fourcc(b"BX24"),
        fourcc(b"BA24"),
        fourcc(b"XR30"),
        fourcc(b"XB30"),
        fourcc(b"RX30"),
        fourcc(b"BX30"),
        fourcc(b"AR30"),
        fourcc(b"AB30"),
        fourcc(b"RA30"),
        fourcc(b"BA30"),
    ];
    (format <= 1 || FOUR.contains(&format)).then_some(4)
}

/// A mirrored pool's bookkeeping (its bytes live with the pumps).
#[derive(Debug)]
struct Mirror {
    size: u64,
    pool_alive: bool,
    buffers: usize,
}

#[derive(Clone, Copy, Debug)]
struct BufferInfo {
    mirror: u32,
    offset: usize,
    stride: usize,
    height: usize,
    /// Bytes per pixel, where the format says (else damage syncs whole rows).
    bpp: Option<usize>,
    synced_once: bool,
}

#[derive(Default, Debug)]
struct SurfaceState {
    pending: Option<Option<u32>>,
    current: Option<u32>,
    /// The buffer whose content the compositor last took for this surface.
    last_synced: Option<u32>,
    full: bool,
    /// `damage_buffer` since the last commit: the bounding box `(x0, y0, x1, y1)`, pixels.
    rect: Option<(usize, usize, usize, usize)>,
}

/// One session's protocol state, one side of it.
pub(super) struct Core {
    side: Side,
    map: ObjectMap,
    /// Descriptor ids we allocate: even on the client side, odd on the server side.
    next_id: u32,
    /// Client side: pool object → its mirror.
    pools: HashMap<u32, u32>,
    mirrors: HashMap<u32, Mirror>,
    buffers: HashMap<u32, BufferInfo>,
    surfaces: HashMap<u32, SurfaceState>,
    /// Bytes in mirrors, at most [`MAX_MIRRORED`].
    mirrored: u64,
    /// Client side: ext-image-copy-capture frame → the buffer attached to it.
    attached: HashMap<u32, u32>,
    /// Server side: the client's pools (object → the mirror's descriptor id) and buffers.
    far_pools: HashMap<u32, u32>,
    far_buffers: HashMap<u32, Region>,
    /// Server side: capture frames and the buffer the compositor is to fill.
    captures: HashMap<u32, Region>,
}

fn rows(offset: i32, height: i32, stride: i32) -> (usize, usize, usize) {
    (
        offset.max(0) as usize,
        height.max(0) as usize,
        stride.max(0) as usize,
    )
}

impl Core {
    /// A fresh session's state for `side`.
    pub fn new(side: Side) -> Core {
        Core {
            side,
            map: ObjectMap::new(),
            next_id: match side {
                Side::Client => 2,
                Side::Server => 1,
            },
            pools: HashMap::new(),
            mirrors: HashMap::new(),
            buffers: HashMap::new(),
            surfaces: HashMap::new(),
            mirrored: 0,
            attached: HashMap::new(),
            far_pools: HashMap::new(),
            far_buffers: HashMap::new(),
            captures: HashMap::new(),
        }
    }

    /// The message `h` names going `dir` (its interface's name and signature) and its decoded
    /// arguments; `None` for an unknown object or opcode (its bytes pass through untouched).
    #[allow(clippy::type_complexity)]
    fn decode<'m>(
        &self,
        h: &Header,
        msg: &'m [u8],
        dir: Direction,
    ) -> Result<Option<(&'static str, &'static Message, Vec<Value<'m>>)>, SessionError> {
        let Some(iface) = self.map.interface_of(h.object) else {
            return Ok(None);
        };
        let Some(def) = self.map.message(h, dir) else {
            return Ok(None);
        };
        let args = codec::decode(def, &msg[codec::HEADER_SIZE..]).map_err(|source| {
            SessionError::Decode {
                message: format!("{}.{}", iface.name, def.name),
                source,
            }
        })?;
        Ok(Some((iface.name, def, args)))
    }

    /// One whole message `msg` (header included) from the local peer; `fds` are the kinds
    /// of the descriptors that came with the messages not yet handled, in order.
    pub fn outgoing(
        &mut self,
        h: &Header,
        msg: &[u8],
        fds: &[FdKind],
    ) -> Result<Outgoing, SessionError> {
        let dir = self.side.outgoing();
        let mut out = Outgoing::default();
        let Some((iface, def, args)) = self.decode(h, msg, dir)? else {
            // Unknown object or opcode: bytes pass through untouched.
            return Ok(out);
        };
        let typed = Handled::from_args(iface, dir, h.opcode, &args).transpose()?;
        let n = def.fd_count();
        if fds.len() < n {
            return Err(SessionError::MissingDescriptor(format!(
                "{iface}.{}",
                def.name
            )));
        }
        for kind in &fds[..n] {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(2);
            let action = match (typed, *kind) {
                (Some(Handled::WlShmCreatePool(m)), _) => {
                    let size = m.size.max(0) as u64;
                    if size > MAX_POOL || self.mirrored + size > MAX_MIRRORED {
                        return Err(SessionError::PoolTooLarge {
                            size,
                            mirrored: self.mirrored,
                        });
                    }
                    self.mirrored += size;
                    self.mirrors.insert(
                        id,
                        Mirror {
                            size,
                            pool_alive: true,
                            buffers: 0,
                        },
                    );
                    self.pools.insert(m.id, id);
                    out.actions.push(Action::Sync {
                        mirror: id,
                        area: Area::range(0, size as usize),
                    });
                    FdAction::Pool { id, size }
                }
                // Our peer wants to receive bytes: the far peer writes them.
                (_, FdKind::PipeWrite) => FdAction::Pipe {
                    id,
                    dir: PipeDir::PeerWrites,
                },
                (_, FdKind::PipeRead) => FdAction::Pipe {
                    id,
                    dir: PipeDir::PeerReads,
                },
                (_, FdKind::Socket) => return Err(SessionError::Socket),
                (_, FdKind::Memory(size)) if size > MAX_COPY => {
                    return Err(SessionError::MemoryTooLarge(size))
                }
                (_, FdKind::Memory(size)) => FdAction::Copy { id, size },
            };
            out.fds.push(action);
        }
        if let Some(typed) = typed {
            self.handle_outgoing(h.object, msg, typed, &mut out)?;
        }
        self.map.apply(h, dir, def, &args)?;
        Ok(out)
    }

    fn handle_outgoing(
        &mut self,
        object: u32,
        msg: &[u8],
        typed: Handled<'_>,
        out: &mut Outgoing,
    ) -> Result<(), SessionError> {
        match typed {
            Handled::WlRegistryGlobal(g) => {
                // Only globals whose every message the bridge can decode reach the client: no
                // filtered ones, none without signatures, and no version beyond our tables
                // (newer opcodes could carry descriptors we would misplace).
                let Some(name) = g.interface else {
                    return Ok(());
                };
                match carriable(name) {
                    Ok(i) => {
                        if g.version > i.version {
                            let mut m = msg.to_vec();
                            let at = m.len() - 4;
                            m[at..].copy_from_slice(&i.version.to_ne_bytes());
                            out.forward = Forward::Rewrite(m);
                        }
                    }
                    Err(known) => {
                        out.forward = Forward::Hide {
                            global: name.to_vec(),
                            known,
                        }
                    }
                }
            }
            Handled::WlShmPoolCreateBuffer(b) => {
                if let Some(&mirror) = self.pools.get(&object) {
                    let (offset, height, stride) = rows(b.offset, b.height, b.stride);
                    let info = BufferInfo {
                        mirror,
                        offset,
                        stride,
                        height,
                        bpp: bytes_per_pixel(b.format),
                        synced_once: false,
                    };
                    if let Some(m) = self.mirrors.get_mut(&mirror) {
                        m.buffers += 1;
                    }
                    self.buffers.insert(b.id, info);
                }
            }
            Handled::WlShmPoolResize(r) => {
                if let Some(&mirror) = self.pools.get(&object) {
                    let size = r.size.max(0) as u64;
                    if size > MAX_POOL {
                        return Err(SessionError::PoolTooLarge {
                            size,
                            mirrored: self.mirrored,
                        });
                    }
                    let old = self.mirrors.get(&mirror).map_or(0, |m| m.size);
                    let total = self.mirrored - old.min(self.mirrored) + size;
                    if total > MAX_MIRRORED {
                        return Err(SessionError::ResizeTooLarge(size));
                    }
                    self.mirrored = total;
                    if let Some(m) = self.mirrors.get_mut(&mirror) {
                        m.size = size;
                    }
                    out.actions.push(Action::Resize { mirror, size });
                }
            }
            Handled::WlShmPoolDestroy(_) => {
                if let Some(mirror) = self.pools.remove(&object) {
                    if self.forget_mirror_if_unused(mirror, Some(false), 0) {
                        out.actions.push(Action::Drop { mirror });
                    }
                }
            }
            Handled::WlBufferDestroy(_) => {
                if let Some(b) = self.buffers.remove(&object) {
                    if self.forget_mirror_if_unused(b.mirror, None, 1) {
                        out.actions.push(Action::Drop { mirror: b.mirror });
                    }
                }
                for s in self.surfaces.values_mut() {
                    if s.last_synced == Some(object) {
                        s.last_synced = None;
                    }
                }
            }
            Handled::WlSurfaceDestroy(_) => {
                self.surfaces.remove(&object);
            }
            Handled::WlSurfaceAttach(a) => {
                let s = self.surfaces.entry(object).or_default();
                s.pending = Some((a.buffer != 0).then_some(a.buffer));
            }
            Handled::WlSurfaceDamage(_) => {
                self.surfaces.entry(object).or_default().full = true;
            }
            Handled::WlSurfaceDamageBuffer(d) => {
                let s = self.surfaces.entry(object).or_default();
                if d.width <= 0 || d.height <= 0 {
                    s.full = true;
                } else {
                    // Clipped to the buffer's top-left; the commit clips the rest.
                    let lo = |v: i32| v.max(0) as usize;
                    let hi = |v: i32, len: i32| (i64::from(v) + i64::from(len)).max(0) as usize;
                    let r = (lo(d.x), lo(d.y), hi(d.x, d.width), hi(d.y, d.height));
                    s.rect = Some(match s.rect {
                        Some((x0, y0, x1, y1)) => {
                            (x0.min(r.0), y0.min(r.1), x1.max(r.2), y1.max(r.3))
                        }
                        None => r,
                    });
                }
            }
            Handled::WlSurfaceCommit(_) => self.commit(object, out),
            // The compositor is about to fill a buffer: the far side's copy must be what the
            // client has (it sends back only what changes).
            Handled::ZwlrScreencopyFrameV1Copy(c) => self.sync_whole_buffer(c.buffer, out),
            Handled::ZwlrScreencopyFrameV1CopyWithDamage(c) => {
                self.sync_whole_buffer(c.buffer, out)
            }
            Handled::ExtImageCopyCaptureFrameV1AttachBuffer(a) => {
                self.attached.insert(object, a.buffer);
            }
            Handled::ExtImageCopyCaptureFrameV1Capture(_) => {
                if let Some(&buffer) = self.attached.get(&object) {
                    self.sync_whole_buffer(buffer, out);
                }
            }
            Handled::ExtImageCopyCaptureFrameV1Destroy(_) => {
                self.attached.remove(&object);
            }
            Handled::ZwlrScreencopyFrameV1Ready(_)
            | Handled::ExtImageCopyCaptureFrameV1Ready(_) => {
                if let Some(region) = self.captures.remove(&object) {
                    out.actions.push(Action::SendBack {
                        frame: object,
                        region,
                    });
                }
            }
            Handled::ZwlrScreencopyFrameV1Failed(_)
            | Handled::ExtImageCopyCaptureFrameV1Failed(_)
                if self.captures.remove(&object).is_some() =>
            {
                out.actions.push(Action::Forget { frame: object });
            }
            Handled::ZwlrScreencopyFrameV1Failed(_)
            | Handled::ExtImageCopyCaptureFrameV1Failed(_) => {}
            // Requests seen on the incoming side only (server), nothing to do here.
            Handled::WlRegistryBind(_)
            | Handled::WlShmCreatePool(_)
            | Handled::ZwlrScreencopyFrameV1Destroy(_) => {}
        }
        Ok(())
    }

    fn commit(&mut self, surface: u32, out: &mut Outgoing) {
        let s = self.surfaces.entry(surface).or_default();
        if let Some(p) = s.pending.take() {
            s.current = p;
        }
        let (current, full, rect) = (s.current, s.full, s.rect.take());
        // Damage is relative to the surface's previous content, not to this buffer's: a
        // buffer other than the one last synced for this surface (double buffering, a buffer
        // moved between surfaces) is compared whole — locally, so the wire still carries only
        // the blocks that changed.
        let switched = s.last_synced != current;
        s.last_synced = current;
        s.full = false;
        let Some(b) = current.and_then(|c| self.buffers.get_mut(&c)) else {
            return;
        };
        let whole = (0, 0, usize::MAX, b.height);
        let (x0, y0, x1, y1) = if full || switched || !b.synced_once {
            whole
        } else {
            rect.unwrap_or((0, 0, 0, 0))
        };
        let (y0, y1) = (y0.min(b.height), y1.min(b.height));
        // The damaged columns in bytes, where the format tells the pixel size; whole rows
        // otherwise.
        let (x0, x1) = match b.bpp {
            Some(bpp) if (x0, x1) != (0, usize::MAX) => (
                x0.saturating_mul(bpp).min(b.stride),
                x1.saturating_mul(bpp).min(b.stride),
            ),
            _ => (0, b.stride),
        };
        if y1 > y0 && x1 > x0 {
            out.actions.push(Action::Sync {
                mirror: b.mirror,
                area: Area {
                    start: b.offset + y0 * b.stride,
                    rows: y1 - y0,
                    stride: b.stride,
                    x0,
                    x1,
                },
            });
        }
        b.synced_once = true;
    }

    /// Queues the whole of shm `buffer` to be brought up to date on the far side (before the
    /// compositor fills it, so that what it sends back is exactly what changed).
    fn sync_whole_buffer(&self, buffer: u32, out: &mut Outgoing) {
        if let Some(b) = self.buffers.get(&buffer) {
            out.actions.push(Action::Sync {
                mirror: b.mirror,
                area: Area {
                    start: b.offset,
                    rows: b.height,
                    stride: b.stride,
                    x0: 0,
                    x1: b.stride,
                },
            });
        }
    }

    /// Drops a mirror once its pool is destroyed and no buffer uses it; `true` if it was
    /// dropped (the far side may then close its copy).
    fn forget_mirror_if_unused(
        &mut self,
        id: u32,
        pool_alive: Option<bool>,
        released: usize,
    ) -> bool {
        let gone = match self.mirrors.get_mut(&id) {
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
            if let Some(m) = self.mirrors.remove(&id) {
                self.mirrored = self.mirrored.saturating_sub(m.size);
            }
        }
        gone
    }

    /// One whole message `msg` (header included) from the far side, about to go to the local
    /// peer; `fds` are the descriptor ids of its frame from this message on.
    pub fn incoming(
        &mut self,
        h: &Header,
        msg: &[u8],
        fds: &[u32],
    ) -> Result<Incoming, SessionError> {
        let dir = self.side.incoming();
        let mut out = Incoming::default();
        let Some((iface, def, args)) = self.decode(h, msg, dir)? else {
            return Ok(out);
        };
        out.fds = def.fd_count();
        if self.side == Side::Server {
            if let Some(typed) = Handled::from_args(iface, dir, h.opcode, &args).transpose()? {
                self.track_far(h.object, typed, fds, &mut out)?;
            }
        }
        self.map.apply(h, dir, def, &args)?;
        Ok(out)
    }

    /// Server side: a client may bind only what the bridge advertised; the client's pools,
    /// buffers and captures as forwarded to the compositor.
    fn track_far(
        &mut self,
        object: u32,
        typed: Handled<'_>,
        fds: &[u32],
        out: &mut Incoming,
    ) -> Result<(), SessionError> {
        match typed {
            Handled::WlRegistryBind(b) => {
                // Not a filtered global, nor an interface without signatures (it could pass
                // descriptors we cannot place).
                if let Some(name) = b.id_interface.filter(|n| carriable(n).is_err()) {
                    return Err(SessionError::Unbindable(
                        String::from_utf8_lossy(name).into_owned(),
                    ));
                }
            }
            Handled::WlShmCreatePool(p) => {
                if let Some(&id) = fds.first() {
                    self.far_pools.insert(p.id, id);
                }
            }
            Handled::WlShmPoolCreateBuffer(b) => {
                if let Some(&mirror) = self.far_pools.get(&object) {
                    let (offset, height, stride) = rows(b.offset, b.height, b.stride);
                    let region = Region {
                        mirror,
                        offset,
                        len: height.saturating_mul(stride),
                    };
                    self.far_buffers.insert(b.id, region);
                }
            }
            Handled::WlShmPoolDestroy(_) => {
                self.far_pools.remove(&object);
            }
            Handled::WlBufferDestroy(_) => {
                self.far_buffers.remove(&object);
            }
            Handled::ZwlrScreencopyFrameV1Copy(c) => {
                self.start_capture(object, c.buffer, true, out)
            }
            Handled::ZwlrScreencopyFrameV1CopyWithDamage(c) => {
                self.start_capture(object, c.buffer, true, out)
            }
            Handled::ExtImageCopyCaptureFrameV1AttachBuffer(a) => {
                self.start_capture(object, a.buffer, false, out)
            }
            Handled::ExtImageCopyCaptureFrameV1Capture(_) => {
                if let Some(&region) = self.captures.get(&object) {
                    out.snapshot = Some((object, region));
                }
            }
            Handled::ZwlrScreencopyFrameV1Destroy(_)
            | Handled::ExtImageCopyCaptureFrameV1Destroy(_)
                if self.captures.remove(&object).is_some() =>
            {
                out.forget = Some(object);
            }
            _ => {}
        }
        Ok(())
    }

    /// Capture `frame` is to fill `buffer`: remembered; `now` if the compositor fills it on
    /// this request (wlr `copy`), not on a later one (ext `capture`).
    fn start_capture(&mut self, frame: u32, buffer: u32, now: bool, out: &mut Incoming) {
        if self.captures.remove(&frame).is_some() {
            out.forget = Some(frame);
        }
        if let Some(&region) = self.far_buffers.get(&buffer) {
            self.captures.insert(frame, region);
            if now {
                out.snapshot = Some((frame, region));
            }
        }
    }
}

/// The interface of a global named `name`, if the bridge carries it (in the tables, and not
/// one whose objects pass descriptors it cannot translate); else whether the name is known.
fn carriable(name: &[u8]) -> Result<&'static crate::protocol::Interface, bool> {
    match crate::protocol::find_interface_bytes(name) {
        Some(i) if !FILTERED_GLOBALS.contains(&i.name) => Ok(i),
        known => Err(known.is_some()),
    }
}

#[cfg(test)]
mod tests;
