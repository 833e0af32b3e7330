//! Strict framing and argument decoding of Wayland messages, and the per-connection object map.
//!
//! A Wayland message is an 8-byte header — the target object id, then a word holding the
//! message size (high 16 bits, header included) and the opcode (low 16 bits), both in native
//! byte order — followed by the arguments laid out by the message's signature
//! ([`protocol::Message`](crate::protocol::Message)). File descriptors travel out of band and
//! take no bytes. Which signature applies depends on the interface of the target object, so
//! every connection keeps an [`ObjectMap`] that follows object creation and destruction.
//!
//! Everything here treats its input as hostile: every length is checked against what remains,
//! nothing panics on any byte sequence, and the map is bounded ([`MAX_OBJECTS`] per id space).
//! The rules are libwayland's (`wl_closure_demarshal`, `wl_map_insert_at`): sizes are multiples
//! of 4 and at most [`MAX_MESSAGE`], strings are NUL-terminated, null objects and strings only
//! where the XML says `allow-null`, new ids are non-zero, in the sender's id range, and
//! allocated compactly.
//!
//! ```
//! use waysock_bridge::codec::{decode, header, Direction, ObjectMap, Value};
//! // wl_display@1.get_registry(new id 2)
//! let mut bytes = Vec::new();
//! bytes.extend_from_slice(&1u32.to_ne_bytes());
//! bytes.extend_from_slice(&((12u32 << 16) | 1).to_ne_bytes());
//! bytes.extend_from_slice(&2u32.to_ne_bytes());
//!
//! let mut map = ObjectMap::new();
//! let h = header(&bytes).unwrap().unwrap();
//! let msg = map.message(&h, Direction::Request).unwrap();
//! let args = decode(msg, &bytes[8..h.size as usize]).unwrap();
//! assert_eq!(args, [Value::NewId { interface: None, version: 0, id: 2 }]);
//! map.apply(&h, Direction::Request, msg, &args).unwrap();
//! assert_eq!(map.interface_of(2).unwrap().name, "wl_registry");
//! ```

use crate::protocol::{find_interface, find_interface_bytes, Arg, ArgType, Interface, Message};

/// The largest message, header included, that libwayland sends or accepts.
pub const MAX_MESSAGE: usize = 4096;

/// The size of the message header.
pub const HEADER_SIZE: usize = 8;

/// The first id of the compositor-allocated id range; ids below it are the client's.
pub const SERVER_ID_START: u32 = 0xff00_0000;

/// The most ids an [`ObjectMap`] tracks in each id space (client-allocated and
/// compositor-allocated): ids are allocated compactly, so a new id at or beyond this offset
/// from the start of its range is refused with [`CodecError::TooManyObjects`].
pub const MAX_OBJECTS: usize = 65536;

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The target object's id.
    pub object: u32,
    /// The request or event number within the object's interface.
    pub opcode: u16,
    /// The message size in bytes, the 8-byte header included.
    pub size: u16,
}

impl Header {
    /// The size of the arguments (the message without its header).
    pub fn body_len(&self) -> usize {
        usize::from(self.size).saturating_sub(HEADER_SIZE)
    }

    /// The header as it goes on the wire (native byte order).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0; HEADER_SIZE];
        b[..4].copy_from_slice(&self.object.to_ne_bytes());
        let word = (u32::from(self.size) << 16) | u32::from(self.opcode);
        b[4..].copy_from_slice(&word.to_ne_bytes());
        b
    }
}

/// Whether a message goes from client to compositor or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → compositor.
    Request,
    /// Compositor → client.
    Event,
}

/// Why a message (or an object it creates) was refused. Offsets count from the start of the
/// message, header included.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The header names object 0, which never exists.
    #[error("message header names object id 0 (opcode {opcode}, size {size})")]
    NullObject {
        /// The header's opcode.
        opcode: u16,
        /// The header's size.
        size: u16,
    },
    /// The header's size is smaller than the header itself.
    #[error(
        "message to object {object} opcode {opcode}: size {size} is smaller than the 8-byte header"
    )]
    TooShort {
        /// The target object.
        object: u32,
        /// The opcode.
        opcode: u16,
        /// The size the header gives.
        size: u16,
    },
    /// The header's size is not a multiple of 4.
    #[error("message to object {object} opcode {opcode}: size {size} is not a multiple of 4")]
    Unaligned {
        /// The target object.
        object: u32,
        /// The opcode.
        opcode: u16,
        /// The size the header gives.
        size: u16,
    },
    /// The header's size exceeds [`MAX_MESSAGE`].
    #[error("message to object {object} opcode {opcode}: size {size} exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge {
        /// The target object.
        object: u32,
        /// The opcode.
        opcode: u16,
        /// The size the header gives.
        size: u16,
    },
    /// An argument (or its length prefix) runs past the end of the message.
    #[error(
        "{message}: argument {arg:?} at offset {offset} needs {need} bytes, only {have} remain"
    )]
    Truncated {
        /// The message's name.
        message: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// Where the argument starts (or its payload, after a length prefix).
        offset: usize,
        /// The bytes it needs.
        need: usize,
        /// The bytes left in the message.
        have: usize,
    },
    /// A string's last byte (within its length) is not NUL.
    #[error("{message}: string argument {arg:?} at offset {offset} is not NUL-terminated")]
    MissingNul {
        /// The message's name.
        message: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// Where the string's length prefix starts.
        offset: usize,
    },
    /// A null object, null string or zero new id where the signature does not allow it.
    #[error("{message}: argument {arg:?} at offset {offset} is null but not nullable")]
    NullNotAllowed {
        /// The message's name.
        message: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// Where the argument starts.
        offset: usize,
    },
    /// Bytes remain after the last argument.
    #[error("{message}: {extra} trailing bytes after the last argument, at offset {offset}")]
    TrailingBytes {
        /// The message's name.
        message: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
    /// A new id names an object that is still live (or destroyed but not yet acknowledged by
    /// `wl_display.delete_id`).
    #[error("{message}: new id {id} ({interface}) is already in use")]
    IdInUse {
        /// The creating message's name.
        message: &'static str,
        /// The id.
        id: u32,
        /// The interface the new object would have had (`?` if unknown).
        interface: &'static str,
    },
    /// A new id is outside the sender's id range (a client allocates ids below
    /// [`SERVER_ID_START`], the compositor at or above it).
    #[error("{message}: new id {id:#x} is not in the {dir:?} sender's id range")]
    WrongIdSpace {
        /// The creating message's name.
        message: &'static str,
        /// The id.
        id: u32,
        /// The message's direction.
        dir: Direction,
    },
    /// A new id lies [`MAX_OBJECTS`] or more past the start of its id range.
    #[error(
        "{message}: new id {id:#x} exceeds the object map's limit of {MAX_OBJECTS} ids per range"
    )]
    TooManyObjects {
        /// The creating message's name.
        message: &'static str,
        /// The id.
        id: u32,
    },
    /// [`encode`] was given a value that does not fit the signature.
    #[error("{message}: argument {arg:?}: value {value} does not fit the signature")]
    Mismatch {
        /// The message's name.
        message: &'static str,
        /// The argument's name (`-` if there are too few or too many values).
        arg: &'static str,
        /// What was given.
        value: String,
    },
    /// [`encode`] would produce a message larger than [`MAX_MESSAGE`].
    #[error("{message}: encoded size {size} exceeds the {MAX_MESSAGE}-byte limit")]
    EncodeTooLarge {
        /// The message's name.
        message: &'static str,
        /// The size it would have had.
        size: usize,
    },
}

/// Reads a message header from the start of `buf`.
///
/// `Ok(None)` if fewer than 8 bytes are available. Refuses a size below 8, not a multiple of
/// 4 or above [`MAX_MESSAGE`], and object id 0. The body may not all be in `buf` yet: the
/// message is complete once `buf.len() >= size`.
pub fn header(buf: &[u8]) -> Result<Option<Header>, CodecError> {
    let Some(bytes) = buf.first_chunk::<HEADER_SIZE>() else {
        return Ok(None);
    };
    let object = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let word = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let (size, opcode) = ((word >> 16) as u16, word as u16);
    if object == 0 {
        return Err(CodecError::NullObject { opcode, size });
    }
    if usize::from(size) < HEADER_SIZE {
        return Err(CodecError::TooShort {
            object,
            opcode,
            size,
        });
    }
    if size % 4 != 0 {
        return Err(CodecError::Unaligned {
            object,
            opcode,
            size,
        });
    }
    if usize::from(size) > MAX_MESSAGE {
        return Err(CodecError::TooLarge {
            object,
            opcode,
            size,
        });
    }
    Ok(Some(Header {
        object,
        opcode,
        size,
    }))
}

/// One decoded argument; byte strings and arrays borrow from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `int`.
    Int(i32),
    /// `uint`.
    Uint(u32),
    /// `fixed` (24.8), raw.
    Fixed(i32),
    /// `string`, without its NUL; `None` for a null string.
    String(Option<&'a [u8]>),
    /// `object`; 0 for null.
    Object(u32),
    /// `new_id`. For an untyped new id (`wl_registry.bind`), `interface` and `version` are the
    /// name and version that precede it on the wire; for a typed one they are `None` and 0
    /// (the interface is the argument's, the version the creating object's).
    NewId {
        /// The interface name sent on the wire (untyped new ids only).
        interface: Option<&'a [u8]>,
        /// The version sent on the wire (untyped new ids only).
        version: u32,
        /// The new object's id.
        id: u32,
    },
    /// `array`, without its padding.
    Array(&'a [u8]),
    /// `fd`: carried out of band, in the order the fd arguments appear.
    Fd,
}

/// A bounds-checked cursor over a message body.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn truncated(&self, arg: &Arg, at: usize, need: usize) -> CodecError {
        CodecError::Truncated {
            message: self.message,
            arg: arg.name,
            offset: HEADER_SIZE + at,
            need,
            have: self.body.len().saturating_sub(at),
        }
    }

    fn offset(&self) -> usize {
        HEADER_SIZE + self.pos
    }

    fn u32(&mut self, arg: &Arg) -> Result<u32, CodecError> {
        match self.body.get(self.pos..).and_then(<[u8]>::first_chunk::<4>) {
            Some(b) => {
                self.pos += 4;
                Ok(u32::from_ne_bytes(*b))
            }
            None => Err(self.truncated(arg, self.pos, 4)),
        }
    }

    /// A length-prefixed payload padded to 4 bytes; `None` for length 0.
    fn bytes(&mut self, arg: &Arg) -> Result<Option<&'a [u8]>, CodecError> {
        let len = self.u32(arg)? as usize;
        if len == 0 {
            return Ok(None);
        }
        let start = self.pos;
        let remaining = self.body.len() - start;
        // `len` is checked against what remains before rounding, so the rounding cannot
        // overflow (what remains is at most a message).
        if len > remaining || (len + 3) & !3 > remaining {
            return Err(self.truncated(arg, start, len));
        }
        self.pos = start + ((len + 3) & !3);
        Ok(Some(&self.body[start..start + len]))
    }

    fn string(&mut self, arg: &Arg, nullable: bool) -> Result<Option<&'a [u8]>, CodecError> {
        let at = self.offset();
        match self.bytes(arg)? {
            None if nullable => Ok(None),
            None => Err(CodecError::NullNotAllowed {
                message: self.message,
                arg: arg.name,
                offset: at,
            }),
            Some([s @ .., 0]) => Ok(Some(s)),
            Some(_) => Err(CodecError::MissingNul {
                message: self.message,
                arg: arg.name,
                offset: at,
            }),
        }
    }

    fn id(&mut self, arg: &Arg, nullable: bool) -> Result<u32, CodecError> {
        let at = self.offset();
        match self.u32(arg)? {
            0 if !nullable => Err(CodecError::NullNotAllowed {
                message: self.message,
                arg: arg.name,
                offset: at,
            }),
            id => Ok(id),
        }
    }
}

/// Decodes a message body (the bytes after the 8-byte header) by its signature.
///
/// Returns one [`Value`] per argument of `msg` (an untyped new id is one value). Strict, as
/// libwayland is: truncated arguments, strings without their NUL, nulls where the signature
/// does not allow them, zero new ids and trailing bytes are errors. Never panics; allocates
/// only the returned `Vec`.
pub fn decode<'a>(msg: &Message, body: &'a [u8]) -> Result<Vec<Value<'a>>, CodecError> {
    let mut out = Vec::with_capacity(msg.args.len());
    let mut r = Reader {
        body,
        pos: 0,
        message: msg.name,
    };
    for arg in msg.args {
        let value = match arg.ty {
            ArgType::Int => Value::Int(r.u32(arg)? as i32),
            ArgType::Uint => Value::Uint(r.u32(arg)?),
            ArgType::Fixed => Value::Fixed(r.u32(arg)? as i32),
            ArgType::String => Value::String(r.string(arg, arg.nullable)?),
            ArgType::Object => Value::Object(r.id(arg, arg.nullable)?),
            ArgType::NewId if arg.interface.is_none() => {
                let interface = r.string(arg, false)?;
                let version = r.u32(arg)?;
                let id = r.id(arg, false)?;
                Value::NewId {
                    interface,
                    version,
                    id,
                }
            }
            ArgType::NewId => Value::NewId {
                interface: None,
                version: 0,
                id: r.id(arg, false)?,
            },
            ArgType::Array => Value::Array(r.bytes(arg)?.unwrap_or(&[])),
            ArgType::Fd => Value::Fd,
        };
        out.push(value);
    }
    if r.pos != body.len() {
        return Err(CodecError::TrailingBytes {
            message: msg.name,
            offset: r.offset(),
            extra: body.len() - r.pos,
        });
    }
    Ok(out)
}

/// Encodes a whole message (header and arguments) onto `out`, by `msg`'s signature.
///
/// The inverse of [`header`] + [`decode`], with the same rules: `args` must hold one value of
/// the right type per argument, nulls only where allowed, and the result must fit in
/// [`MAX_MESSAGE`]. On error nothing is appended.
pub fn encode(
    object: u32,
    opcode: u16,
    msg: &Message,
    args: &[Value<'_>],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mismatch = |arg: &'static str, value: &dyn std::fmt::Debug| CodecError::Mismatch {
        message: msg.name,
        arg,
        value: format!("{value:?}"),
    };
    if args.len() != msg.args.len() {
        return Err(mismatch(
            "-",
            &format_args!("{} values for {} arguments", args.len(), msg.args.len()),
        ));
    }
    if object == 0 {
        return Err(CodecError::NullObject { opcode, size: 0 });
    }
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_SIZE]);
    let put_bytes = |out: &mut Vec<u8>, b: Option<&[u8]>, nul: bool| match b {
        None => out.extend_from_slice(&0u32.to_ne_bytes()),
        Some(b) => {
            let len = b.len() + usize::from(nul);
            out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_ne_bytes());
            out.extend_from_slice(b);
            if nul {
                out.push(0);
            }
            out.resize(out.len() + (4 - len % 4) % 4, 0);
        }
    };
    let result = (|| {
        for (arg, value) in msg.args.iter().zip(args) {
            match (arg.ty, value) {
                (ArgType::Int, Value::Int(v)) | (ArgType::Fixed, Value::Fixed(v)) => {
                    out.extend_from_slice(&v.to_ne_bytes())
                }
                (ArgType::Uint, Value::Uint(v)) => out.extend_from_slice(&v.to_ne_bytes()),
                (ArgType::String, Value::String(s)) if s.is_some() || arg.nullable => {
                    put_bytes(out, *s, true)
                }
                (ArgType::Object, Value::Object(id)) if *id != 0 || arg.nullable => {
                    out.extend_from_slice(&id.to_ne_bytes())
                }
                (
                    ArgType::NewId,
                    Value::NewId {
                        interface: None,
                        id,
                        ..
                    },
                ) if arg.interface.is_some() && *id != 0 => {
                    out.extend_from_slice(&id.to_ne_bytes())
                }
                (
                    ArgType::NewId,
                    Value::NewId {
                        interface: Some(name),
                        version,
                        id,
                    },
                ) if arg.interface.is_none() && *id != 0 => {
                    put_bytes(out, Some(name), true);
                    out.extend_from_slice(&version.to_ne_bytes());
                    out.extend_from_slice(&id.to_ne_bytes());
                }
                (ArgType::Array, Value::Array(a)) => {
                    put_bytes(out, if a.is_empty() { None } else { Some(a) }, false)
                }
                (ArgType::Fd, Value::Fd) => {}
                (_, value) => return Err(mismatch(arg.name, value)),
            }
            if out.len() - start > MAX_MESSAGE {
                return Err(CodecError::EncodeTooLarge {
                    message: msg.name,
                    size: out.len() - start,
                });
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        out.truncate(start);
        return Err(e);
    }
    let size = (out.len() - start) as u16; // <= MAX_MESSAGE, checked above
    out[start..start + HEADER_SIZE].copy_from_slice(
        &Header {
            object,
            opcode,
            size,
        }
        .to_bytes(),
    );
    Ok(())
}

/// What the map knows about one id.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Not in use.
    Free,
    /// In use. `interface` is `None` for an interface missing from the tables (its messages
    /// cannot be decoded and pass through); `zombie` once a destructor was seen for a
    /// client-allocated id, until `wl_display.delete_id` frees it.
    Live {
        interface: Option<&'static Interface>,
        version: u32,
        zombie: bool,
    },
}

/// The objects of one connection: id → interface and version, following creation (every
/// new id), destruction (destructor messages) and `wl_display.delete_id`.
///
/// Ids come in two ranges, allocated compactly by each side as libwayland does: the client's
/// from 1 and the compositor's from [`SERVER_ID_START`]. A new id that skips ahead of the
/// range's end (its creator was a message this map could not decode, such as a request on an
/// object of an unknown interface) fills the gap with objects of unknown interface, so their
/// messages pass through; such entries may be replaced by a later new id.
#[derive(Debug)]
pub struct ObjectMap {
    /// Client-allocated ids, indexed by id (index 0 is always free).
    client: Vec<Slot>,
    /// Compositor-allocated ids, indexed by `id - SERVER_ID_START`.
    server: Vec<Slot>,
    /// How many ids are in use (live or zombie).
    live: usize,
}

impl Default for ObjectMap {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectMap {
    /// A fresh connection's map: only id 1, `wl_display` (version 1).
    pub fn new() -> Self {
        let display = find_interface("wl_display");
        ObjectMap {
            client: vec![
                Slot::Free,
                Slot::Live {
                    interface: display,
                    version: 1,
                    zombie: false,
                },
            ],
            server: Vec::new(),
            live: 1,
        }
    }

    fn slot(&self, id: u32) -> Option<&Slot> {
        if id >= SERVER_ID_START {
            self.server.get((id - SERVER_ID_START) as usize)
        } else {
            self.client.get(id as usize)
        }
    }

    fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        if id >= SERVER_ID_START {
            self.server.get_mut((id - SERVER_ID_START) as usize)
        } else {
            self.client.get_mut(id as usize)
        }
    }

    /// The interface of object `id`, if it is in use and its interface is in the tables.
    pub fn interface_of(&self, id: u32) -> Option<&'static Interface> {
        match self.slot(id) {
            Some(Slot::Live { interface, .. }) => *interface,
            _ => None,
        }
    }

    /// Whether `id` is in use (possibly with an unknown interface, possibly destroyed but not
    /// yet freed by `wl_display.delete_id`).
    pub fn contains(&self, id: u32) -> bool {
        matches!(self.slot(id), Some(Slot::Live { .. }))
    }

    /// The version of object `id` (as bound, or inherited from its creator), if in use.
    pub fn version_of(&self, id: u32) -> Option<u32> {
        match self.slot(id) {
            Some(Slot::Live { version, .. }) => Some(*version),
            _ => None,
        }
    }

    /// The signature of the message `h` names, going in direction `dir`; `None` if the object
    /// is not in use, its interface is unknown, or the opcode is out of range.
    pub fn message(&self, h: &Header, dir: Direction) -> Option<&'static Message> {
        let interface = self.interface_of(h.object)?;
        let messages = match dir {
            Direction::Request => interface.requests,
            Direction::Event => interface.events,
        };
        messages.get(usize::from(h.opcode))
    }

    /// Applies a decoded message's effect on the objects: registers every new id (typed by
    /// the argument's interface, untyped by the interface name on the wire; names missing from
    /// the tables are recorded as unknown), frees the id of a `wl_display.delete_id` event, and
    /// handles destructors: a client-allocated id stays (as a zombie, so late events to it can
    /// still be decoded) until `delete_id`; a compositor-allocated one is freed at once.
    ///
    /// `msg` must be the signature of `h` (from [`ObjectMap::message`]) and `args` its
    /// [`decode`]d arguments. On error (a new id in use, outside its sender's range or beyond
    /// [`MAX_OBJECTS`]) the ids created by earlier arguments of this message stay registered;
    /// the connection should be ended anyway.
    pub fn apply(
        &mut self,
        h: &Header,
        dir: Direction,
        msg: &Message,
        args: &[Value<'_>],
    ) -> Result<(), CodecError> {
        let parent_version = self.version_of(h.object).unwrap_or(1);
        for (arg, value) in msg.args.iter().zip(args) {
            if let Value::NewId {
                interface,
                version,
                id,
            } = *value
            {
                let (interface, version) = match arg.interface {
                    Some(name) => (find_interface(name), parent_version),
                    None => (interface.and_then(find_interface_bytes), version),
                };
                self.insert(msg.name, dir, id, interface, version)?;
            }
        }
        if dir == Direction::Event
            && msg.name == "delete_id"
            && self
                .interface_of(h.object)
                .is_some_and(|i| i.name == "wl_display")
        {
            if let Some(&Value::Uint(id)) = args.first() {
                if id != 1 {
                    self.free(id);
                }
            }
        }
        if msg.destructor && h.object != 1 {
            if h.object >= SERVER_ID_START {
                self.free(h.object);
            } else if let Some(Slot::Live { zombie, .. }) = self.slot_mut(h.object) {
                *zombie = true;
            }
        }
        Ok(())
    }

    fn insert(
        &mut self,
        message: &'static str,
        dir: Direction,
        id: u32,
        interface: Option<&'static Interface>,
        version: u32,
    ) -> Result<(), CodecError> {
        let in_range = match dir {
            Direction::Request => (1..SERVER_ID_START).contains(&id),
            Direction::Event => id >= SERVER_ID_START,
        };
        if !in_range {
            return Err(CodecError::WrongIdSpace { message, id, dir });
        }
        let (table, index) = match dir {
            Direction::Request => (&mut self.client, id as usize),
            Direction::Event => (&mut self.server, (id - SERVER_ID_START) as usize),
        };
        if index >= MAX_OBJECTS {
            return Err(CodecError::TooManyObjects { message, id });
        }
        if index >= table.len() {
            // Ids in between were created by messages we could not decode: unknown objects.
            let gap = index - table.len();
            table.resize(
                index + 1,
                Slot::Live {
                    interface: None,
                    version: 0,
                    zombie: false,
                },
            );
            self.live += gap + 1;
        } else {
            match table[index] {
                Slot::Free => self.live += 1,
                Slot::Live {
                    interface: None, ..
                } => {}
                Slot::Live {
                    interface: Some(old),
                    ..
                } => {
                    return Err(CodecError::IdInUse {
                        message,
                        id,
                        interface: old.name,
                    });
                }
            }
        }
        table[index] = Slot::Live {
            interface,
            version,
            zombie: false,
        };
        Ok(())
    }

    fn free(&mut self, id: u32) {
        if let Some(slot @ Slot::Live { .. }) = self.slot_mut(id) {
            *slot = Slot::Free;
            self.live -= 1;
        }
    }

    /// How many ids are in use (live objects, zombies awaiting `delete_id`, and objects of
    /// unknown interface), `wl_display` included.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no id is in use (never true in practice: `wl_display` is never freed).
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(interface: &str, dir: Direction, name: &str) -> &'static Message {
        let i = find_interface(interface).unwrap();
        let list = if dir == Direction::Request {
            i.requests
        } else {
            i.events
        };
        list.iter().find(|m| m.name == name).unwrap()
    }

    #[test]
    fn header_rules() {
        assert_eq!(header(&[0; 7]), Ok(None));
        let h = Header {
            object: 3,
            opcode: 2,
            size: 16,
        };
        assert_eq!(header(&h.to_bytes()), Ok(Some(h)));
        let bad = |object, size| {
            header(
                &Header {
                    object,
                    opcode: 0,
                    size,
                }
                .to_bytes(),
            )
        };
        assert!(matches!(bad(0, 8), Err(CodecError::NullObject { .. })));
        assert!(matches!(bad(1, 4), Err(CodecError::TooShort { .. })));
        assert!(matches!(bad(1, 10), Err(CodecError::Unaligned { .. })));
        assert!(matches!(bad(1, 4100), Err(CodecError::TooLarge { .. })));
        assert!(bad(1, 4096).is_ok());
    }

    #[test]
    fn encode_decode_roundtrip() {
        let bind = msg("wl_registry", Direction::Request, "bind");
        let args = [
            Value::Uint(7),
            Value::NewId {
                interface: Some(b"wl_compositor"),
                version: 4,
                id: 3,
            },
        ];
        let mut out = Vec::new();
        encode(2, 0, bind, &args, &mut out).unwrap();
        let h = header(&out).unwrap().unwrap();
        assert_eq!(usize::from(h.size), out.len());
        assert_eq!(decode(bind, &out[8..]).unwrap(), args);
        // Refusals leave `out` untouched.
        let wrong = [
            Value::Uint(7),
            Value::NewId {
                interface: None,
                version: 0,
                id: 3,
            },
        ];
        assert!(encode(2, 0, bind, &wrong, &mut out).is_err());
        assert_eq!(usize::from(h.size), out.len());
    }

    #[test]
    fn gap_ids_become_unknown_and_replaceable() {
        let mut map = ObjectMap::new();
        let h = Header {
            object: 1,
            opcode: 1,
            size: 12,
        };
        let get_registry = msg("wl_display", Direction::Request, "get_registry");
        let args = [Value::NewId {
            interface: None,
            version: 0,
            id: 5,
        }];
        map.apply(&h, Direction::Request, get_registry, &args)
            .unwrap();
        assert_eq!(map.len(), 5);
        assert!(map.contains(3) && map.interface_of(3).is_none());
        let args = [Value::NewId {
            interface: None,
            version: 0,
            id: 3,
        }];
        map.apply(&h, Direction::Request, get_registry, &args)
            .unwrap();
        assert_eq!(map.interface_of(3).unwrap().name, "wl_registry");
        assert!(matches!(
            map.apply(&h, Direction::Request, get_registry, &args),
            Err(CodecError::IdInUse { id: 3, .. })
        ));
        let args = [Value::NewId {
            interface: None,
            version: 0,
            id: SERVER_ID_START,
        }];
        assert!(matches!(
            map.apply(&h, Direction::Request, get_registry, &args),
            Err(CodecError::WrongIdSpace { .. })
        ));
        let args = [Value::NewId {
            interface: None,
            version: 0,
            id: MAX_OBJECTS as u32,
        }];
        assert!(matches!(
            map.apply(&h, Direction::Request, get_registry, &args),
            Err(CodecError::TooManyObjects { .. })
        ));
    }
}
