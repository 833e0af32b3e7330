//! Each handled message through the core, on the side that sees it.

use super::*;

enum A<'a> {
    U(u32),
    I(i32),
    S(&'a str),
}

fn wire(object: u32, opcode: u16, args: &[A<'_>]) -> (Header, Vec<u8>) {
    let mut body = Vec::new();
    for a in args {
        match a {
            A::U(u) => body.extend_from_slice(&u.to_ne_bytes()),
            A::I(i) => body.extend_from_slice(&i.to_ne_bytes()),
            A::S(s) => {
                body.extend_from_slice(&(s.len() as u32 + 1).to_ne_bytes());
                body.extend_from_slice(s.as_bytes());
                body.push(0);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
        }
    }
    let h = Header {
        object,
        opcode,
        size: (8 + body.len()) as u16,
    };
    let mut m = h.to_bytes().to_vec();
    m.extend_from_slice(&body);
    (h, m)
}

/// A message from the local peer.
fn out(core: &mut Core, object: u32, opcode: u16, args: &[A<'_>], fds: &[FdKind]) -> Outgoing {
    try_out(core, object, opcode, args, fds).unwrap()
}

fn try_out(
    core: &mut Core,
    object: u32,
    opcode: u16,
    args: &[A<'_>],
    fds: &[FdKind],
) -> Result<Outgoing, SessionError> {
    let (h, m) = wire(object, opcode, args);
    core.outgoing(&h, &m, fds)
}

/// A message from the far side.
fn inc(core: &mut Core, object: u32, opcode: u16, args: &[A<'_>], fds: &[u32]) -> Incoming {
    let (h, m) = wire(object, opcode, args);
    core.incoming(&h, &m, fds).unwrap()
}

const REGISTRY: u32 = 2;
const SHM: u32 = 3;
const POOL: u32 = 4;
const BUFFER: u32 = 5;
const COMPOSITOR: u32 = 6;
const SURFACE: u32 = 7;
const SCREENCOPY: u32 = 8;
const FRAME: u32 = 9;
const CAPTURE: u32 = 10;
const SESSION: u32 = 11;
const CFRAME: u32 = 12;

/// The client's requests that make the usual objects, as `send` sees them (`out` on the
/// client side, `inc` on the server side).
fn setup(mut send: impl FnMut(u32, u16, &[A<'_>])) {
    send(1, 1, &[A::U(REGISTRY)]);
    send(REGISTRY, 0, &[A::U(1), A::S("wl_shm"), A::U(1), A::U(SHM)]);
    send(
        REGISTRY,
        0,
        &[A::U(2), A::S("wl_compositor"), A::U(4), A::U(COMPOSITOR)],
    );
    send(COMPOSITOR, 0, &[A::U(SURFACE)]);
    send(
        REGISTRY,
        0,
        &[
            A::U(3),
            A::S("zwlr_screencopy_manager_v1"),
            A::U(3),
            A::U(SCREENCOPY),
        ],
    );
    send(SCREENCOPY, 0, &[A::U(FRAME), A::I(0), A::U(20)]);
    send(
        REGISTRY,
        0,
        &[
            A::U(4),
            A::S("ext_image_copy_capture_manager_v1"),
            A::U(1),
            A::U(CAPTURE),
        ],
    );
    send(CAPTURE, 0, &[A::U(SESSION), A::U(21), A::U(0)]);
    send(SESSION, 0, &[A::U(CFRAME)]);
}

/// A client-side core with a 64 KiB pool (mirror 2) and a 16×8 buffer at offset 1024, stride
/// 64, attached to the surface.
fn client() -> Core {
    let mut c = Core::new(Side::Client);
    setup(|o, op, a| {
        out(&mut c, o, op, a, &[]);
    });
    let o = out(
        &mut c,
        SHM,
        0,
        &[A::U(POOL), A::I(65536)],
        &[FdKind::Memory(65536)],
    );
    assert_eq!(o.fds, vec![FdAction::Pool { id: 2, size: 65536 }]);
    assert_eq!(o.fd_ids().collect::<Vec<_>>(), vec![2]);
    assert_eq!(
        o.actions,
        vec![Action::Sync {
            mirror: 2,
            area: Area::range(0, 65536)
        }]
    );
    let o = out(
        &mut c,
        POOL,
        0,
        &[
            A::U(BUFFER),
            A::I(1024),
            A::I(16),
            A::I(8),
            A::I(64),
            A::U(0),
        ],
        &[],
    );
    assert_eq!(o, Outgoing::default());
    c
}

const WHOLE: Action = Action::Sync {
    mirror: 2,
    area: Area {
        start: 1024,
        rows: 8,
        stride: 64,
        x0: 0,
        x1: 64,
    },
};

#[test]
fn create_pool_mirrors_the_pool_within_the_limits() {
    let mut c = client();
    let err = try_out(
        &mut c,
        SHM,
        0,
        &[A::U(40), A::I(i32::MAX)],
        &[FdKind::Memory(0)],
    );
    assert!(
        matches!(err, Err(SessionError::PoolTooLarge { .. })),
        "{err:?}"
    );
    let err = try_out(&mut c, SHM, 0, &[A::U(40), A::I(4096)], &[]);
    assert!(matches!(err, Err(SessionError::MissingDescriptor(m)) if m == "wl_shm.create_pool"));
}

#[test]
fn attach_commit_and_damage_sync_the_damaged_rows() {
    let mut c = client();
    out(&mut c, SURFACE, 1, &[A::U(BUFFER), A::I(0), A::I(0)], &[]);
    // First commit of a buffer: all of it.
    assert_eq!(out(&mut c, SURFACE, 6, &[], &[]).actions, vec![WHOLE]);
    // damage_buffer: its rows only (merged).
    out(
        &mut c,
        SURFACE,
        9,
        &[A::I(0), A::I(2), A::I(16), A::I(1)],
        &[],
    );
    out(
        &mut c,
        SURFACE,
        9,
        &[A::I(0), A::I(4), A::I(16), A::I(1)],
        &[],
    );
    assert_eq!(
        out(&mut c, SURFACE, 6, &[], &[]).actions,
        vec![Action::Sync {
            mirror: 2,
            area: Area {
                start: 1024 + 2 * 64,
                rows: 3,
                stride: 64,
                x0: 0,
                x1: 64
            }
        }]
    );
    // No damage: nothing.
    assert!(out(&mut c, SURFACE, 6, &[], &[]).actions.is_empty());
    // Surface damage: the whole buffer.
    out(
        &mut c,
        SURFACE,
        2,
        &[A::I(0), A::I(0), A::I(1), A::I(1)],
        &[],
    );
    assert_eq!(out(&mut c, SURFACE, 6, &[], &[]).actions, vec![WHOLE]);
    // Detached: nothing to sync; destroyed: forgotten.
    out(&mut c, SURFACE, 1, &[A::U(0), A::I(0), A::I(0)], &[]);
    assert!(out(&mut c, SURFACE, 6, &[], &[]).actions.is_empty());
    out(&mut c, SURFACE, 0, &[], &[]);
    assert!(!c.surfaces.contains_key(&SURFACE));
}

/// Commits `damage_buffer` rects (x, y, w, h) on the attached buffer (synced once before);
/// the one sync it asks for, if any.
fn damaged(c: &mut Core, rects: &[(i32, i32, i32, i32)]) -> Option<Area> {
    for &(x, y, w, h) in rects {
        out(c, SURFACE, 9, &[A::I(x), A::I(y), A::I(w), A::I(h)], &[]);
    }
    let actions = out(c, SURFACE, 6, &[], &[]).actions;
    assert!(actions.len() <= 1, "{actions:?}");
    actions.first().map(|a| match a {
        Action::Sync { mirror: 2, area } => *area,
        a => panic!("{a:?}"),
    })
}

#[test]
fn buffer_damage_syncs_its_columns_only_clipped_to_the_buffer() {
    let mut c = client();
    out(&mut c, SURFACE, 1, &[A::U(BUFFER), A::I(0), A::I(0)], &[]);
    assert_eq!(out(&mut c, SURFACE, 6, &[], &[]).actions, vec![WHOLE]);
    let area = |start, rows, x0, x1| Area {
        start,
        rows,
        stride: 64,
        x0,
        x1,
    };
    // 4 bytes a pixel (argb8888): pixels 2..5 of rows 1..3.
    assert_eq!(
        damaged(&mut c, &[(2, 1, 3, 2)]),
        Some(area(1024 + 64, 2, 8, 20))
    );
    // Two rects: their bounding box.
    assert_eq!(
        damaged(&mut c, &[(2, 1, 3, 2), (10, 5, 1, 1)]),
        Some(area(1024 + 64, 5, 8, 44))
    );
    // Beyond an edge: clipped (left, top, right, bottom), nothing past the stride or the last
    // row.
    assert_eq!(
        damaged(&mut c, &[(-5, -3, 7, 4)]),
        Some(area(1024, 1, 0, 8))
    );
    assert_eq!(
        damaged(&mut c, &[(14, 6, 100, 100)]),
        Some(area(1024 + 6 * 64, 2, 56, 64))
    );
    // Wholly outside: nothing.
    assert_eq!(damaged(&mut c, &[(16, 0, 4, 4)]), None);
    assert_eq!(damaged(&mut c, &[(0, 8, 4, 4)]), None);
    // An empty rect is taken as everything (conservative).
    assert_eq!(damaged(&mut c, &[(3, 3, 0, 1)]), WHOLE_AREA);
}

const WHOLE_AREA: Option<Area> = match WHOLE {
    Action::Sync { area, .. } => Some(area),
    _ => None,
};

#[test]
fn damage_in_a_format_of_unknown_pixel_size_syncs_whole_rows() {
    let mut c = client();
    // rgb565 (fourcc RG16): 2 bytes a pixel, not in the table: whole rows.
    let rg16 = u32::from_le_bytes(*b"RG16");
    out(
        &mut c,
        POOL,
        0,
        &[
            A::U(40),
            A::I(2048),
            A::I(16),
            A::I(4),
            A::I(36),
            A::U(rg16),
        ],
        &[],
    );
    out(&mut c, SURFACE, 1, &[A::U(40), A::I(0), A::I(0)], &[]);
    out(&mut c, SURFACE, 6, &[], &[]);
    assert_eq!(
        damaged(&mut c, &[(2, 1, 3, 1)]),
        Some(Area {
            start: 2048 + 36,
            rows: 1,
            stride: 36,
            x0: 0,
            x1: 36
        })
    );
    assert_eq!(bytes_per_pixel(0), Some(4));
    assert_eq!(bytes_per_pixel(1), Some(4));
    assert_eq!(bytes_per_pixel(u32::from_le_bytes(*b"XB24")), Some(4));
    assert_eq!(bytes_per_pixel(u32::from_le_bytes(*b"AR30")), Some(4));
    assert_eq!(bytes_per_pixel(u32::from_le_bytes(*b"RG24")), None);
    assert_eq!(bytes_per_pixel(u32::from_le_bytes(*b"AR4H")), None);
}

#[test]
fn areas_cover_their_rows() {
    let a = Area {
        start: 100,
        rows: 3,
        stride: 64,
        x0: 8,
        x1: 20,
    };
    assert_eq!(a.cover(), (108, 100 + 2 * 64 + 20));
    assert!(!a.is_contiguous());
    assert!(Area::range(5, 9).is_contiguous());
    assert_eq!(Area::range(5, 9).cover(), (5, 9));
    assert_eq!(Area::range(9, 5).cover(), (9, 9));
    assert!(Area { x0: 0, x1: 64, ..a }.is_contiguous());
}

#[test]
fn resize_and_destroying_pool_and_buffer_drop_the_mirror() {
    let mut c = client();
    assert_eq!(
        out(&mut c, POOL, 2, &[A::I(131072)], &[]).actions,
        vec![Action::Resize {
            mirror: 2,
            size: 131072
        }]
    );
    assert_eq!(c.mirrored, 131072);
    // The pool goes first: the buffer still uses the mirror.
    assert!(out(&mut c, POOL, 1, &[], &[]).actions.is_empty());
    assert_eq!(
        out(&mut c, BUFFER, 0, &[], &[]).actions,
        vec![Action::Drop { mirror: 2 }]
    );
    assert_eq!(c.mirrored, 0);
}

#[test]
fn a_capture_request_syncs_the_whole_buffer_first() {
    let mut c = client();
    // wlr: copy and copy_with_damage.
    assert_eq!(
        out(&mut c, FRAME, 0, &[A::U(BUFFER)], &[]).actions,
        vec![WHOLE]
    );
    assert_eq!(
        out(&mut c, FRAME, 2, &[A::U(BUFFER)], &[]).actions,
        vec![WHOLE]
    );
    out(&mut c, FRAME, 1, &[], &[]);
    // ext: the buffer attached, synced on capture; forgotten with the frame.
    assert!(out(&mut c, CFRAME, 1, &[A::U(BUFFER)], &[])
        .actions
        .is_empty());
    assert_eq!(out(&mut c, CFRAME, 3, &[], &[]).actions, vec![WHOLE]);
    out(&mut c, CFRAME, 0, &[], &[]);
    assert!(c.attached.is_empty());
}

#[test]
fn other_descriptors_are_pipes_copies_or_refused() {
    let mut c = client();
    const DDM: u32 = 30;
    const OFFER: u32 = 0xff00_0001;
    out(
        &mut c,
        REGISTRY,
        0,
        &[A::U(5), A::S("wl_data_device_manager"), A::U(3), A::U(DDM)],
        &[],
    );
    // A data device (for seat 50), and an offer the compositor made on it (an event).
    out(&mut c, DDM, 1, &[A::U(32), A::U(50)], &[]);
    let (h, m) = wire(32, 0, &[A::U(OFFER)]);
    c.incoming(&h, &m, &[]).unwrap();
    let recv = |c: &mut Core, kind| try_out(c, OFFER, 1, &[A::S("text/plain")], &[kind]);
    assert_eq!(
        recv(&mut c, FdKind::PipeWrite).unwrap().fds,
        vec![FdAction::Pipe {
            id: 4,
            dir: PipeDir::PeerWrites
        }]
    );
    assert_eq!(
        recv(&mut c, FdKind::PipeRead).unwrap().fds,
        vec![FdAction::Pipe {
            id: 6,
            dir: PipeDir::PeerReads
        }]
    );
    assert_eq!(
        recv(&mut c, FdKind::Memory(10)).unwrap().fds,
        vec![FdAction::Copy { id: 8, size: 10 }]
    );
    assert!(matches!(
        recv(&mut c, FdKind::Socket),
        Err(SessionError::Socket)
    ));
    assert!(matches!(
        recv(&mut c, FdKind::Memory(MAX_COPY + 1)),
        Err(SessionError::MemoryTooLarge(_))
    ));
}

#[test]
fn globals_are_kept_capped_or_hidden_and_hidden_ones_cannot_be_bound() {
    let mut s = Core::new(Side::Server);
    inc(&mut s, 1, 1, &[A::U(REGISTRY)], &[]);
    let global = |s: &mut Core, name: &str, v: u32| {
        out(s, REGISTRY, 0, &[A::U(9), A::S(name), A::U(v)], &[]).forward
    };
    assert_eq!(global(&mut s, "wl_shm", 1), Forward::Keep);
    let Forward::Rewrite(m) = global(&mut s, "wl_compositor", 999) else {
        panic!("not capped")
    };
    let known = crate::protocol::find_interface("wl_compositor")
        .unwrap()
        .version;
    assert_eq!(m[m.len() - 4..], known.to_ne_bytes());
    assert_eq!(
        global(&mut s, "zwp_linux_dmabuf_v1", 4),
        Forward::Hide {
            global: b"zwp_linux_dmabuf_v1".to_vec(),
            known: true
        }
    );
    assert_eq!(
        global(&mut s, "no_such_thing_v9", 1),
        Forward::Hide {
            global: b"no_such_thing_v9".to_vec(),
            known: false
        }
    );
    let (h, m) = wire(
        REGISTRY,
        0,
        &[A::U(7), A::S("zwp_linux_dmabuf_v1"), A::U(3), A::U(40)],
    );
    assert!(
        matches!(s.incoming(&h, &m, &[]), Err(SessionError::Unbindable(n)) if n == "zwp_linux_dmabuf_v1")
    );
}

/// A server-side core that saw the client's setup, a pool (descriptor id 2) and the buffer.
fn server() -> Core {
    let mut s = Core::new(Side::Server);
    setup(|o, op, a| {
        inc(&mut s, o, op, a, &[]);
    });
    assert_eq!(inc(&mut s, SHM, 0, &[A::U(POOL), A::I(65536)], &[2]).fds, 1);
    inc(
        &mut s,
        POOL,
        0,
        &[
            A::U(BUFFER),
            A::I(1024),
            A::I(16),
            A::I(8),
            A::I(64),
            A::U(0),
        ],
        &[],
    );
    s
}

const REGION: Region = Region {
    mirror: 2,
    offset: 1024,
    len: 8 * 64,
};

#[test]
fn a_wlr_capture_is_snapshotted_on_copy_and_sent_back_on_ready() {
    let mut s = server();
    assert_eq!(
        inc(&mut s, FRAME, 0, &[A::U(BUFFER)], &[]).snapshot,
        Some((FRAME, REGION))
    );
    assert_eq!(
        out(&mut s, FRAME, 2, &[A::U(0), A::U(1), A::U(2)], &[]).actions,
        vec![Action::SendBack {
            frame: FRAME,
            region: REGION
        }]
    );
    // Once: a second ready has nothing to send.
    assert!(out(&mut s, FRAME, 2, &[A::U(0), A::U(1), A::U(2)], &[])
        .actions
        .is_empty());
    // copy_with_damage, then failed: forgotten.
    assert_eq!(
        inc(&mut s, FRAME, 2, &[A::U(BUFFER)], &[]).snapshot,
        Some((FRAME, REGION))
    );
    assert_eq!(
        out(&mut s, FRAME, 3, &[], &[]).actions,
        vec![Action::Forget { frame: FRAME }]
    );
    // copy, then the frame destroyed: forgotten.
    inc(&mut s, FRAME, 0, &[A::U(BUFFER)], &[]);
    assert_eq!(inc(&mut s, FRAME, 1, &[], &[]).forget, Some(FRAME));
}

#[test]
fn an_ext_capture_is_snapshotted_on_capture_and_sent_back_on_ready() {
    let mut s = server();
    assert_eq!(
        inc(&mut s, CFRAME, 1, &[A::U(BUFFER)], &[]),
        Incoming::default()
    );
    assert_eq!(
        inc(&mut s, CFRAME, 3, &[], &[]).snapshot,
        Some((CFRAME, REGION))
    );
    assert_eq!(
        out(&mut s, CFRAME, 3, &[], &[]).actions,
        vec![Action::SendBack {
            frame: CFRAME,
            region: REGION
        }]
    );
    inc(&mut s, CFRAME, 1, &[A::U(BUFFER)], &[]);
    assert_eq!(
        out(&mut s, CFRAME, 4, &[A::U(0)], &[]).actions,
        vec![Action::Forget { frame: CFRAME }]
    );
    inc(&mut s, CFRAME, 1, &[A::U(BUFFER)], &[]);
    assert_eq!(inc(&mut s, CFRAME, 0, &[], &[]).forget, Some(CFRAME));
}

#[test]
fn the_far_side_forgets_destroyed_pools_and_buffers() {
    let mut s = server();
    assert!(s.far_pools.contains_key(&POOL) && s.far_buffers.contains_key(&BUFFER));
    inc(&mut s, POOL, 1, &[], &[]);
    assert!(s.far_pools.is_empty());
    inc(&mut s, BUFFER, 0, &[], &[]);
    assert!(s.far_buffers.is_empty());
    // A capture into a buffer that is gone is nothing to send back.
    assert_eq!(
        inc(&mut s, FRAME, 0, &[A::U(BUFFER)], &[]),
        Incoming::default()
    );
}
