//! The protocol tables and the message codec: what the tables hold, round trips of
//! hand-encoded messages, every malformed input refused (never a panic), the object map over a
//! realistic session, and a deterministic randomized robustness run.

use std::time::Instant;

use waysock_bridge::codec::{
    decode, encode, header, CodecError, Direction, Header, ObjectMap, Value, MAX_MESSAGE,
    MAX_OBJECTS, SERVER_ID_START,
};
use waysock_bridge::protocol::{find_interface, ArgType, Interface, Message, INTERFACES};

use Direction::{Event, Request};

// ---------------------------------------------------------------------------------------------
// Helpers

fn iface(name: &str) -> &'static Interface {
    find_interface(name).unwrap_or_else(|| panic!("interface {name} missing from the tables"))
}

/// The message and its opcode.
fn msg(interface: &str, dir: Direction, name: &str) -> (u16, &'static Message) {
    let i = iface(interface);
    let list = match dir {
        Request => i.requests,
        Event => i.events,
    };
    let op = list
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{interface}.{name} missing"));
    (op as u16, &list[op])
}

/// A byte-level message builder, independent of `codec::encode`, for hand-made (and
/// deliberately malformed) messages.
#[derive(Default)]
struct Wire(Vec<u8>);

impl Wire {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn i32(self, v: i32) -> Self {
        self.u32(v as u32)
    }
    /// A string with its NUL and padding.
    fn str(self, s: &str) -> Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.blob(&b)
    }
    /// A length-prefixed, padded byte run, exactly as given.
    fn blob(mut self, b: &[u8]) -> Self {
        self = self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// The whole message: header + these bytes as body.
    fn message(&self, object: u32, opcode: u16) -> Vec<u8> {
        let size = (8 + self.0.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&object.to_ne_bytes());
        m.extend_from_slice(&((size << 16) | u32::from(opcode)).to_ne_bytes());
        m.extend_from_slice(&self.0);
        m
    }
}

/// header + message lookup + decode + apply on one whole message, as the relay does it.
fn feed(map: &mut ObjectMap, dir: Direction, bytes: &[u8]) -> Result<(), CodecError> {
    let h = header(bytes)?.expect("a whole header");
    assert_eq!(usize::from(h.size), bytes.len(), "test message size");
    let m = map.message(&h, dir).expect("a known object and opcode");
    let args = decode(m, &bytes[8..])?;
    map.apply(&h, dir, m, &args)
}

// ---------------------------------------------------------------------------------------------
// Tables

#[test]
fn tables_hold_the_core_and_common_protocols() {
    assert!(
        INTERFACES.windows(2).all(|w| w[0].name < w[1].name),
        "sorted, unique"
    );
    for name in [
        "wl_display",
        "wl_registry",
        "wl_compositor",
        "wl_shm",
        "wl_seat",
        "xdg_wm_base",
        "xdg_toplevel",
        "wp_viewporter",
        "wp_presentation",
        "zxdg_decoration_manager_v1",
        "zwp_linux_dmabuf_v1",
    ] {
        assert_eq!(iface(name).name, name);
    }
    assert!(find_interface("wl_no_such_thing").is_none());
    assert!(find_interface("").is_none());

    let display = iface("wl_display");
    assert_eq!(display.version, 1);
    assert_eq!(
        display.requests.iter().map(|m| m.name).collect::<Vec<_>>(),
        ["sync", "get_registry"]
    );
    assert_eq!(
        display.events.iter().map(|m| m.name).collect::<Vec<_>>(),
        ["error", "delete_id"]
    );

    let (_, bind) = msg("wl_registry", Request, "bind");
    assert_eq!(bind.args.len(), 2);
    assert_eq!(bind.args[1].ty, ArgType::NewId);
    assert_eq!(bind.args[1].interface, None, "bind's new_id is untyped");

    let (_, create_surface) = msg("wl_compositor", Request, "create_surface");
    assert_eq!(create_surface.args[0].interface, Some("wl_surface"));
    assert!(msg("wl_surface", Request, "destroy").1.destructor);
    assert!(!msg("wl_surface", Request, "commit").1.destructor);

    // (interface, direction, message, fds)
    for (i, dir, m, fds) in [
        ("wl_shm", Request, "create_pool", 1),
        ("wl_keyboard", Event, "keymap", 1),
        ("wl_data_offer", Request, "receive", 1),
        ("wl_data_source", Event, "send", 1),
        ("wl_surface", Request, "attach", 0),
        ("wl_display", Request, "sync", 0),
    ] {
        assert_eq!(msg(i, dir, m).1.fd_count(), fds, "{i}.{m}");
    }
    let (_, attach) = msg("wl_surface", Request, "attach");
    assert!(
        attach.args[0].nullable,
        "wl_surface.attach takes a null buffer"
    );
}

#[test]
fn every_interface_reference_resolves_and_opcodes_fit() {
    for i in INTERFACES {
        assert!(i.version >= 1, "{}", i.name);
        assert!(
            i.requests.len() <= usize::from(u16::MAX) && i.events.len() <= usize::from(u16::MAX)
        );
        for m in i.requests.iter().chain(i.events) {
            for a in m.args {
                if let Some(r) = a.interface {
                    assert!(
                        find_interface(r).is_some(),
                        "{}.{} names {r}",
                        i.name,
                        m.name
                    );
                }
                if a.ty == ArgType::NewId && a.interface.is_none() {
                    assert_eq!((i.name, m.name), ("wl_registry", "bind"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn hand_encoded_messages_decode() {
    // wl_registry.bind(name 7, "wl_compositor" v4 as id 3)
    let (op, bind) = msg("wl_registry", Request, "bind");
    let bytes = Wire::default()
        .u32(7)
        .str("wl_compositor")
        .u32(4)
        .u32(3)
        .message(2, op);
    let h = header(&bytes).unwrap().unwrap();
    assert_eq!(
        h,
        Header {
            object: 2,
            opcode: 0,
            size: 40
        }
    );
    assert_eq!(
        decode(bind, &bytes[8..]).unwrap(),
        [
            Value::Uint(7),
            Value::NewId {
                interface: Some(b"wl_compositor"),
                version: 4,
                id: 3
            }
        ]
    );

    // wl_registry.global(1, "wl_shm", 2): a string whose length+NUL is a multiple of 4 (no pad)
    let (op, global) = msg("wl_registry", Event, "global");
    let bytes = Wire::default().u32(1).str("wl_shm_").u32(2).message(2, op);
    assert_eq!(
        decode(global, &bytes[8..]).unwrap(),
        [
            Value::Uint(1),
            Value::String(Some(b"wl_shm_")),
            Value::Uint(2)
        ]
    );

    // wl_shm.create_pool(new id 5, fd, size 4096): the fd takes no bytes
    let (op, create_pool) = msg("wl_shm", Request, "create_pool");
    let bytes = Wire::default().u32(5).i32(4096).message(4, op);
    assert_eq!(
        decode(create_pool, &bytes[8..]).unwrap(),
        [
            Value::NewId {
                interface: None,
                version: 0,
                id: 5
            },
            Value::Fd,
            Value::Int(4096)
        ]
    );

    // wl_surface.attach(null buffer, -3, 7)
    let (op, attach) = msg("wl_surface", Request, "attach");
    let bytes = Wire::default().u32(0).i32(-3).i32(7).message(6, op);
    assert_eq!(
        decode(attach, &bytes[8..]).unwrap(),
        [Value::Object(0), Value::Int(-3), Value::Int(7)]
    );

    // wl_pointer.motion(time, fixed x, fixed y)
    let (op, motion) = msg("wl_pointer", Event, "motion");
    let bytes = Wire::default()
        .u32(99)
        .i32(-256)
        .i32(10 * 256 + 128)
        .message(9, op);
    assert_eq!(
        decode(motion, &bytes[8..]).unwrap(),
        [Value::Uint(99), Value::Fixed(-256), Value::Fixed(2688)]
    );

    // wl_keyboard.enter(serial, surface, keys array of 5 bytes → padded to 8)
    let (op, enter) = msg("wl_keyboard", Event, "enter");
    let keys = [1u8, 2, 3, 4, 5];
    let bytes = Wire::default().u32(11).u32(6).blob(&keys).message(10, op);
    assert_eq!(
        decode(enter, &bytes[8..]).unwrap(),
        [Value::Uint(11), Value::Object(6), Value::Array(&keys)]
    );
    // … and an empty array
    let bytes = Wire::default().u32(11).u32(6).u32(0).message(10, op);
    assert_eq!(decode(enter, &bytes[8..]).unwrap()[2], Value::Array(&[]));

    // xdg_toplevel.set_title with a null-free title; set_app_id; wl_data_offer.offer(mime)
    let (op, set_title) = msg("xdg_toplevel", Request, "set_title");
    let bytes = Wire::default().str("héllo").message(12, op);
    assert_eq!(
        decode(set_title, &bytes[8..]).unwrap(),
        [Value::String(Some("héllo".as_bytes()))]
    );

    // A nullable string given as null: wl_data_offer.accept(serial, null mime)
    let (op, accept) = msg("wl_data_offer", Request, "accept");
    assert!(accept.args[1].nullable);
    let bytes = Wire::default().u32(1).u32(0).message(13, op);
    assert_eq!(
        decode(accept, &bytes[8..]).unwrap(),
        [Value::Uint(1), Value::String(None)]
    );

    // Messages without arguments
    let (op, commit) = msg("wl_surface", Request, "commit");
    let bytes = Wire::default().message(6, op);
    assert_eq!(header(&bytes).unwrap().unwrap().size, 8);
    assert_eq!(decode(commit, &[]).unwrap(), []);
}

#[test]
fn encode_matches_the_hand_encoder_for_every_signature() {
    // For every message of every interface, build plausible values, encode with both the
    // library and the hand encoder, and compare; then decode back.
    let mut checked = 0;
    for i in INTERFACES {
        for (dir, list) in [(Request, i.requests), (Event, i.events)] {
            for (op, m) in list.iter().enumerate() {
                let mut wire = Wire::default();
                let mut values = Vec::new();
                for (n, a) in m.args.iter().enumerate() {
                    let n = n as u32 + 1;
                    match a.ty {
                        ArgType::Int => {
                            wire = wire.i32(-(n as i32));
                            values.push(Value::Int(-(n as i32)));
                        }
                        ArgType::Uint => {
                            wire = wire.u32(n);
                            values.push(Value::Uint(n));
                        }
                        ArgType::Fixed => {
                            wire = wire.i32(n as i32 * 256);
                            values.push(Value::Fixed(n as i32 * 256));
                        }
                        ArgType::String => {
                            wire = wire.str(&"s".repeat(n as usize));
                            values
                                .push(Value::String(Some(&b"ssssssssssssssssssss"[..n as usize])));
                        }
                        ArgType::Object => {
                            wire = wire.u32(n + 100);
                            values.push(Value::Object(n + 100));
                        }
                        ArgType::NewId if a.interface.is_none() => {
                            wire = wire.str("wl_seat").u32(3).u32(n + 200);
                            values.push(Value::NewId {
                                interface: Some(b"wl_seat"),
                                version: 3,
                                id: n + 200,
                            });
                        }
                        ArgType::NewId => {
                            wire = wire.u32(n + 200);
                            values.push(Value::NewId {
                                interface: None,
                                version: 0,
                                id: n + 200,
                            });
                        }
                        ArgType::Array => {
                            wire = wire.blob(&[7; 6][..(n as usize % 6)]);
                            values.push(Value::Array(&[7; 6][..(n as usize % 6)]));
                        }
                        ArgType::Fd => values.push(Value::Fd),
                    }
                }
                let hand = wire.message(42, op as u16);
                let mut lib = Vec::new();
                encode(42, op as u16, m, &values, &mut lib).unwrap();
                assert_eq!(hand, lib, "{}.{} ({dir:?})", i.name, m.name);
                let h = header(&lib).unwrap().unwrap();
                assert_eq!(usize::from(h.size), lib.len());
                assert_eq!(
                    decode(m, &lib[8..]).unwrap(),
                    values,
                    "{}.{}",
                    i.name,
                    m.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} messages");
}

// ---------------------------------------------------------------------------------------------
// Malformed input: errors, never panics

#[test]
fn malformed_headers_are_refused() {
    let h = |object: u32, size: u32| Wire::default().u32(object).u32(size << 16).0;
    assert_eq!(header(&[]), Ok(None));
    assert_eq!(header(&h(1, 8)[..7]), Ok(None));
    assert_eq!(
        header(&h(1, 8)),
        Ok(Some(Header {
            object: 1,
            opcode: 0,
            size: 8
        }))
    );
    assert!(matches!(
        header(&h(0, 8)),
        Err(CodecError::NullObject { .. })
    ));
    assert!(matches!(
        header(&h(1, 0)),
        Err(CodecError::TooShort { size: 0, .. })
    ));
    assert!(matches!(
        header(&h(1, 4)),
        Err(CodecError::TooShort { size: 4, .. })
    ));
    assert!(matches!(
        header(&h(1, 14)),
        Err(CodecError::Unaligned { size: 14, .. })
    ));
    assert!(matches!(
        header(&h(1, 4100)),
        Err(CodecError::TooLarge { size: 4100, .. })
    ));
    assert!(matches!(
        header(&h(1, 0xfffc)),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(header(&h(1, MAX_MESSAGE as u32)).unwrap().is_some());
    // The messages name what was wrong.
    let e = header(&Wire::default().u32(7).u32((14 << 16) | 3).0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "message to object 7 opcode 3: size 14 is not a multiple of 4"
    );
}

#[test]
fn malformed_bodies_are_refused() {
    let (_, global) = msg("wl_registry", Event, "global");
    let (_, bind) = msg("wl_registry", Request, "bind");
    let (_, attach) = msg("wl_surface", Request, "attach");
    let (_, create_surface) = msg("wl_compositor", Request, "create_surface");
    let (_, enter) = msg("wl_keyboard", Event, "enter");
    let body = |w: Wire| w.0;

    // Truncated: a missing fixed argument, a string longer than what remains.
    let e = decode(global, &body(Wire::default().u32(1).str("wl_shm"))).unwrap_err();
    assert!(
        matches!(e, CodecError::Truncated { arg: "version", .. }),
        "{e}"
    );
    let e = decode(
        global,
        &body(Wire::default().u32(1).u32(100).raw(b"wl_shm\0\0").u32(1)),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::Truncated {
                arg: "interface",
                offset: 16,
                need: 100,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("global") && e.to_string().contains("offset 16"),
        "{e}"
    );
    // Half a word.
    assert!(matches!(
        decode(create_surface, &[1, 0]),
        Err(CodecError::Truncated { .. })
    ));
    assert!(matches!(
        decode(create_surface, &[]),
        Err(CodecError::Truncated { .. })
    ));
    // A length that fits but whose padding does not.
    let e = decode(global, &body(Wire::default().u32(1).u32(5).raw(b"wl_s\0"))).unwrap_err();
    assert!(matches!(e, CodecError::Truncated { .. }), "{e}");

    // Oversize lengths, up to u32::MAX: no overflow.
    for len in [u32::MAX, u32::MAX - 2, 0x8000_0000, 4097] {
        let e = decode(global, &body(Wire::default().u32(1).u32(len).u32(0).u32(2))).unwrap_err();
        assert!(matches!(e, CodecError::Truncated { .. }), "{len}: {e}");
        let e = decode(enter, &body(Wire::default().u32(1).u32(2).u32(len))).unwrap_err();
        assert!(matches!(e, CodecError::Truncated { .. }), "{len}: {e}");
    }

    // Missing NUL.
    let e = decode(
        global,
        &body(Wire::default().u32(1).blob(b"wl_shm!!").u32(2)),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::MissingNul {
                arg: "interface",
                offset: 12,
                ..
            }
        ),
        "{e}"
    );

    // Null where not allowed: string, object, new id, bind's interface.
    let e = decode(global, &body(Wire::default().u32(1).u32(0).u32(2))).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::NullNotAllowed {
                arg: "interface",
                ..
            }
        ),
        "{e}"
    );
    let (_, frame) = msg("wl_surface", Request, "frame");
    assert!(matches!(
        decode(frame, &0u32.to_ne_bytes()),
        Err(CodecError::NullNotAllowed { .. })
    ));
    let (_, set_parent) = msg("xdg_toplevel", Request, "set_parent");
    assert!(
        decode(set_parent, &0u32.to_ne_bytes()).is_ok(),
        "set_parent allows null"
    );
    let (_, get_xdg_surface) = msg("xdg_wm_base", Request, "get_xdg_surface");
    let e = decode(get_xdg_surface, &body(Wire::default().u32(9).u32(0))).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::NullNotAllowed {
                arg: "surface",
                offset: 12,
                ..
            }
        ),
        "{e}"
    );
    let e = decode(bind, &body(Wire::default().u32(1).u32(0).u32(1).u32(3))).unwrap_err();
    assert!(
        matches!(e, CodecError::NullNotAllowed { arg: "id", .. }),
        "{e}"
    );
    let e = decode(
        bind,
        &body(Wire::default().u32(1).str("wl_seat").u32(1).u32(0)),
    )
    .unwrap_err();
    assert!(
        matches!(e, CodecError::NullNotAllowed { arg: "id", .. }),
        "{e}"
    );
    // A null buffer is fine for attach (allow-null), not a non-null string check mistake.
    assert!(decode(attach, &body(Wire::default().u32(0).u32(0).u32(0))).is_ok());

    // Trailing garbage: whole words and partial words.
    let e = decode(create_surface, &body(Wire::default().u32(3).u32(0xdead))).unwrap_err();
    assert_eq!(
        e,
        CodecError::TrailingBytes {
            message: "create_surface",
            offset: 12,
            extra: 4
        }
    );
    assert!(e.to_string().contains("4 trailing bytes"), "{e}");
    let e = decode(create_surface, &[3, 0, 0, 0, 1]).unwrap_err();
    assert!(
        matches!(e, CodecError::TrailingBytes { extra: 1, .. }),
        "{e}"
    );
    let (_, commit) = msg("wl_surface", Request, "commit");
    assert!(matches!(
        decode(commit, &[0; 4]),
        Err(CodecError::TrailingBytes { .. })
    ));
}

#[test]
fn encode_refuses_what_decode_would() {
    let (op, bind) = msg("wl_registry", Request, "bind");
    let (_, frame) = msg("wl_surface", Request, "frame");
    let (_, global) = msg("wl_registry", Event, "global");
    let mut out = vec![1, 2, 3];
    let bad: [(&Message, Vec<Value>); 5] = [
        (bind, vec![Value::Uint(1)]),
        (
            bind,
            vec![
                Value::Uint(1),
                Value::NewId {
                    interface: None,
                    version: 0,
                    id: 3,
                },
            ],
        ),
        (
            frame,
            vec![Value::NewId {
                interface: None,
                version: 0,
                id: 0,
            }],
        ),
        (
            global,
            vec![Value::Uint(1), Value::String(None), Value::Uint(1)],
        ),
        (
            global,
            vec![
                Value::Uint(1),
                Value::String(Some(&[b'x'; 5000])),
                Value::Uint(1),
            ],
        ),
    ];
    for (m, values) in &bad {
        assert!(
            encode(2, op, m, values, &mut out).is_err(),
            "{} {values:?}",
            m.name
        );
        assert_eq!(out, [1, 2, 3], "nothing appended on error");
    }
}

// ---------------------------------------------------------------------------------------------
// The object map

#[test]
fn object_map_follows_a_session() {
    let mut map = ObjectMap::new();
    assert_eq!(map.len(), 1);
    assert_eq!(map.interface_of(1).unwrap().name, "wl_display");
    assert!(map.interface_of(2).is_none() && !map.contains(2));
    // An unknown object and an out-of-range opcode have no message.
    assert!(map
        .message(
            &Header {
                object: 2,
                opcode: 0,
                size: 8
            },
            Request
        )
        .is_none());
    assert!(map
        .message(
            &Header {
                object: 1,
                opcode: 2,
                size: 8
            },
            Request
        )
        .is_none());
    assert_eq!(
        map.message(
            &Header {
                object: 1,
                opcode: 1,
                size: 12
            },
            Request
        )
        .unwrap()
        .name,
        "get_registry"
    );

    // wl_display.get_registry(2)
    feed(&mut map, Request, &Wire::default().u32(2).message(1, 1)).unwrap();
    assert_eq!(map.interface_of(2).unwrap().name, "wl_registry");
    // wl_registry.global(1, "wl_compositor", 6) — no effect on the map
    feed(
        &mut map,
        Event,
        &Wire::default()
            .u32(1)
            .str("wl_compositor")
            .u32(6)
            .message(2, 0),
    )
    .unwrap();
    // wl_registry.bind(1, "wl_compositor" v5, 3)
    feed(
        &mut map,
        Request,
        &Wire::default()
            .u32(1)
            .str("wl_compositor")
            .u32(5)
            .u32(3)
            .message(2, 0),
    )
    .unwrap();
    assert_eq!(map.interface_of(3).unwrap().name, "wl_compositor");
    assert_eq!(map.version_of(3), Some(5));
    // wl_compositor.create_surface(4): the child inherits the version
    feed(&mut map, Request, &Wire::default().u32(4).message(3, 0)).unwrap();
    assert_eq!(map.interface_of(4).unwrap().name, "wl_surface");
    assert_eq!(map.version_of(4), Some(5));
    // wl_surface.frame(5), then wl_callback.done (a destructor event) and delete_id(5)
    feed(&mut map, Request, &Wire::default().u32(5).message(4, 3)).unwrap();
    assert_eq!(map.interface_of(5).unwrap().name, "wl_callback");
    assert_eq!(map.len(), 5);
    feed(&mut map, Event, &Wire::default().u32(1234).message(5, 0)).unwrap();
    assert!(map.contains(5), "kept until delete_id");
    feed(&mut map, Event, &Wire::default().u32(5).message(1, 1)).unwrap();
    assert!(!map.contains(5));
    assert_eq!(map.len(), 4);

    // wl_surface.destroy: a zombie until delete_id, its messages still decodable
    feed(&mut map, Request, &Wire::default().message(4, 0)).unwrap();
    assert_eq!(map.interface_of(4).unwrap().name, "wl_surface");
    let enter = Wire::default().u32(9).message(4, 0); // wl_surface.enter(output 9), late
    feed(&mut map, Event, &enter).unwrap();
    // Reusing it before delete_id is refused; after, it is fine.
    let again = Wire::default().u32(4).message(3, 0);
    assert!(matches!(
        feed(&mut map, Request, &again),
        Err(CodecError::IdInUse { id: 4, .. })
    ));
    feed(&mut map, Event, &Wire::default().u32(4).message(1, 1)).unwrap();
    assert!(!map.contains(4));
    feed(&mut map, Request, &again).unwrap();
    assert_eq!(map.interface_of(4).unwrap().name, "wl_surface");
}

#[test]
fn object_map_server_ids_and_unknown_interfaces() {
    let mut map = ObjectMap::new();
    feed(&mut map, Request, &Wire::default().u32(2).message(1, 1)).unwrap();
    // bind wl_data_device_manager (3) and wl_seat (4), get_data_device(5, seat 4)
    let bind = |name: u32, iface: &str, v: u32, id: u32| {
        Wire::default()
            .u32(name)
            .str(iface)
            .u32(v)
            .u32(id)
            .message(2, 0)
    };
    feed(&mut map, Request, &bind(1, "wl_data_device_manager", 3, 3)).unwrap();
    feed(&mut map, Request, &bind(2, "wl_seat", 7, 4)).unwrap();
    feed(
        &mut map,
        Request,
        &Wire::default().u32(5).u32(4).message(3, 1),
    )
    .unwrap();
    assert_eq!(map.interface_of(5).unwrap().name, "wl_data_device");

    // The compositor creates an offer: wl_data_device.data_offer(new id 0xff000000)
    let offer = Wire::default().u32(SERVER_ID_START).message(5, 0);
    feed(&mut map, Event, &offer).unwrap();
    assert_eq!(
        map.interface_of(SERVER_ID_START).unwrap().name,
        "wl_data_offer"
    );
    // A client-range id in an event, a server-range id in a request: refused.
    let e = feed(&mut map, Event, &Wire::default().u32(6).message(5, 0)).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::WrongIdSpace {
                id: 6,
                dir: Event,
                ..
            }
        ),
        "{e}"
    );
    let e = feed(
        &mut map,
        Request,
        &Wire::default()
            .u32(SERVER_ID_START + 1)
            .u32(4)
            .message(3, 1),
    )
    .unwrap_err();
    assert!(
        matches!(e, CodecError::WrongIdSpace { dir: Request, .. }),
        "{e}"
    );
    // wl_data_offer.destroy frees a server id at once, and the id can be reused.
    feed(
        &mut map,
        Request,
        &Wire::default().message(SERVER_ID_START, 2),
    )
    .unwrap();
    assert!(!map.contains(SERVER_ID_START));
    feed(&mut map, Event, &offer).unwrap();

    // Binding an interface we do not know: recorded, unknown, no messages.
    feed(&mut map, Request, &bind(9, "zzz_vendor_thing_v1", 1, 6)).unwrap();
    assert!(map.contains(6));
    assert!(map.interface_of(6).is_none());
    assert!(map
        .message(
            &Header {
                object: 6,
                opcode: 0,
                size: 8
            },
            Request
        )
        .is_none());
    // Its (undecodable) request created id 7; the next known id 8 fills the gap.
    feed(&mut map, Request, &Wire::default().u32(8).message(1, 0)).unwrap(); // wl_display.sync(8)
    assert!(map.contains(7) && map.interface_of(7).is_none());
    assert_eq!(map.interface_of(8).unwrap().name, "wl_callback");
    // … and an unknown entry can be replaced by a known new id.
    feed(&mut map, Request, &Wire::default().u32(7).message(1, 0)).unwrap();
    assert_eq!(map.interface_of(7).unwrap().name, "wl_callback");

    // delete_id of wl_display itself, of free ids, of server ids: harmless.
    let before = map.len();
    for id in [1, 0, 999, 0xffff_ffff] {
        feed(&mut map, Event, &Wire::default().u32(id).message(1, 1)).unwrap();
    }
    assert_eq!(map.len(), before);
    assert_eq!(map.interface_of(1).unwrap().name, "wl_display");

    // Ids far beyond the map's bound are refused, not allocated.
    let far = Wire::default().u32(0xfe00_0000).message(1, 0);
    assert!(matches!(
        feed(&mut map, Request, &far),
        Err(CodecError::TooManyObjects { .. })
    ));
    let far = Wire::default().u32(MAX_OBJECTS as u32).message(1, 0);
    assert!(matches!(
        feed(&mut map, Request, &far),
        Err(CodecError::TooManyObjects { .. })
    ));
    assert!(map.len() < 20);
}

// ---------------------------------------------------------------------------------------------
// Robustness and speed

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A valid-looking message for the map's current state, to mutate.
fn plausible(rng: &mut Rng, map: &ObjectMap, dir: Direction) -> Vec<u8> {
    let object = match rng.below(4) {
        0 => 1,
        1 => rng.below(64) as u32 + 1,
        2 => SERVER_ID_START + rng.below(16) as u32,
        _ => rng.next() as u32,
    };
    let interface = map
        .interface_of(object)
        .unwrap_or_else(|| iface("wl_display"));
    let list = match dir {
        Request => interface.requests,
        Event => interface.events,
    };
    let opcode = if list.is_empty() {
        0
    } else {
        rng.below(list.len() as u64) as usize
    };
    let mut w = Wire::default();
    if let Some(m) = list.get(opcode) {
        for a in m.args {
            w = match a.ty {
                ArgType::Int | ArgType::Uint | ArgType::Fixed => w.u32(rng.next() as u32),
                ArgType::Object => w.u32(rng.below(64) as u32),
                ArgType::NewId if a.interface.is_none() => {
                    let name = INTERFACES[rng.below(INTERFACES.len() as u64) as usize].name;
                    w.str(name)
                        .u32(rng.below(10) as u32)
                        .u32(rng.below(80) as u32 + 1)
                }
                ArgType::NewId => match dir {
                    Request => w.u32(rng.below(200) as u32 + 1),
                    Event => w.u32(SERVER_ID_START + rng.below(200) as u32),
                },
                ArgType::String => w.str(&"x".repeat(rng.below(12) as usize)),
                ArgType::Array => w.blob(&vec![0xab; rng.below(20) as usize]),
                ArgType::Fd => w,
            };
        }
    }
    w.message(object, opcode as u16)
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.next() as u8;
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            2 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            3 => bytes.extend((0..rng.below(9)).map(|_| rng.next() as u8)),
            4 if bytes.len() >= 12 => {
                // A hostile length word somewhere in the body.
                let i = 8 + 4 * rng.below((bytes.len() as u64 - 8) / 4) as usize;
                let v = [0u32, 1, 3, 4, 0xffff_fffc, 0xffff_ffff, 4096, 0x8000_0000]
                    [rng.below(8) as usize];
                bytes[i..i + 4].copy_from_slice(&v.to_ne_bytes());
            }
            _ => {}
        }
    }
}

#[test]
fn randomized_messages_never_panic_and_the_map_stays_bounded() {
    let mut rng = Rng(0x5eed_0000_dead_beef);
    let mut map = ObjectMap::new();
    let (mut decoded, mut applied, mut refused) = (0u32, 0u32, 0u32);
    for round in 0..200_000u32 {
        let dir = if rng.below(2) == 0 { Request } else { Event };
        let mut bytes = if rng.below(10) == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            plausible(&mut rng, &map, dir)
        };
        if rng.below(3) != 0 {
            mutate(&mut rng, &mut bytes);
        }
        // As the relay would: frame, look up, decode whatever the header says is there.
        match header(&bytes) {
            Ok(Some(h)) => {
                let end = usize::from(h.size).min(bytes.len());
                if let Some(m) = map.message(&h, dir) {
                    match decode(m, &bytes[8..end]) {
                        Ok(args) => {
                            decoded += 1;
                            assert_eq!(args.len(), m.args.len());
                            match map.apply(&h, dir, m, &args) {
                                Ok(()) => applied += 1,
                                Err(e) => {
                                    assert!(!e.to_string().is_empty());
                                    refused += 1;
                                }
                            }
                        }
                        Err(e) => {
                            assert!(!e.to_string().is_empty());
                            refused += 1;
                        }
                    }
                }
            }
            Ok(None) => assert!(bytes.len() < 8),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
        assert!(
            map.len() <= 2 * MAX_OBJECTS,
            "round {round}: {} objects",
            map.len()
        );
        assert_eq!(map.interface_of(1).unwrap().name, "wl_display");
        // Now and then, start a new connection.
        if rng.below(5000) == 0 {
            map = ObjectMap::new();
        }
    }
    eprintln!(
        "decoded {decoded}, applied {applied}, refused {refused}, final map {}",
        map.len()
    );
    assert!(
        decoded > 20_000 && applied > 10_000 && refused > 20_000,
        "{decoded} {applied} {refused}"
    );
}

#[test]
fn decode_throughput() {
    // A realistic mix: surface commits and damage, frame callbacks, pointer motion, globals.
    let mut msgs: Vec<(&'static Message, Vec<u8>)> = Vec::new();
    let add = |msgs: &mut Vec<_>, i: &str, d, n: &str, w: Wire| msgs.push((msg(i, d, n).1, w.0));
    add(
        &mut msgs,
        "wl_surface",
        Request,
        "attach",
        Wire::default().u32(7).u32(0).u32(0),
    );
    add(
        &mut msgs,
        "wl_surface",
        Request,
        "damage_buffer",
        Wire::default().u32(0).u32(0).u32(1920).u32(1080),
    );
    add(
        &mut msgs,
        "wl_surface",
        Request,
        "frame",
        Wire::default().u32(9),
    );
    add(&mut msgs, "wl_surface", Request, "commit", Wire::default());
    add(
        &mut msgs,
        "wl_callback",
        Event,
        "done",
        Wire::default().u32(1),
    );
    add(
        &mut msgs,
        "wl_pointer",
        Event,
        "motion",
        Wire::default().u32(1).u32(2).u32(3),
    );
    add(
        &mut msgs,
        "wl_registry",
        Event,
        "global",
        Wire::default().u32(1).str("wl_compositor").u32(6),
    );
    add(
        &mut msgs,
        "wl_registry",
        Request,
        "bind",
        Wire::default().u32(1).str("wl_compositor").u32(6).u32(3),
    );
    let n = if cfg!(debug_assertions) {
        200_000
    } else {
        2_000_000
    };
    let start = Instant::now();
    let mut total = 0usize;
    for i in 0..n {
        let (m, body) = &msgs[i % msgs.len()];
        total += decode(m, body).unwrap().len();
    }
    let elapsed = start.elapsed();
    let rate = n as f64 / elapsed.as_secs_f64();
    eprintln!(
        "decode: {n} messages ({total} args) in {elapsed:?}: {:.1} M msgs/s",
        rate / 1e6
    );
    assert!(rate > 50_000.0, "decode is too slow: {rate:.0} msgs/s");
}
