//! Wayland protocol signature tables, generated at build time from the protocol XML.
//!
//! `build.rs` reads `wayland.xml` and every `*.xml` of wayland-protocols (the directories in
//! `WAYSOCK_PROTOCOL_DIRS`, by default `/usr/share/wayland:/usr/share/wayland-protocols`) and
//! emits one static [`Interface`] per interface name (the highest version wins when several
//! files define it). A message's opcode is its index in [`Interface::requests`] or
//! [`Interface::events`], exactly as in the XML.
//!
//! ```
//! use waysock_bridge::protocol::{find_interface, ArgType};
//! let shm = find_interface("wl_shm").unwrap();
//! let create_pool = &shm.requests[0];
//! assert_eq!(create_pool.name, "create_pool");
//! assert_eq!(create_pool.fd_count(), 1);
//! assert_eq!(create_pool.args[1].ty, ArgType::Fd);
//! ```

/// The wire type of one message argument (the `type` attribute of `<arg>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// `int`: a signed 32-bit integer.
    Int,
    /// `uint`: an unsigned 32-bit integer (also enums and bitfields).
    Uint,
    /// `fixed`: a signed 24.8 fixed-point number.
    Fixed,
    /// `string`: a length-prefixed, NUL-terminated byte string, padded to 4 bytes.
    String,
    /// `object`: the id of an existing object (0 = null, only if nullable).
    Object,
    /// `new_id`: the id of an object this message creates. Without an interface (only
    /// `wl_registry.bind`) it is preceded on the wire by the interface name and version.
    NewId,
    /// `array`: a length-prefixed byte array, padded to 4 bytes.
    Array,
    /// `fd`: a file descriptor, sent out of band (`SCM_RIGHTS`); no bytes in the message.
    Fd,
}

/// One argument of a request or event.
#[derive(Debug)]
pub struct Arg {
    /// The argument's name in the XML.
    pub name: &'static str,
    /// Its wire type.
    pub ty: ArgType,
    /// For `object` and `new_id`, the interface the XML names, if any.
    pub interface: Option<&'static str>,
    /// Whether `allow-null="true"`: an object id 0 or a null string is allowed.
    pub nullable: bool,
}

/// One request or event: its signature.
#[derive(Debug)]
pub struct Message {
    /// The message's name in the XML.
    pub name: &'static str,
    /// Its arguments, in wire order.
    pub args: &'static [Arg],
    /// Whether it is `type="destructor"`: the object is destroyed by sending it.
    pub destructor: bool,
}

impl Message {
    /// How many file descriptors the message carries (its `fd` arguments).
    pub fn fd_count(&self) -> usize {
        self.args.iter().filter(|a| a.ty == ArgType::Fd).count()
    }
}

/// One interface: its name, the highest version known, and its messages by opcode.
#[derive(Debug)]
pub struct Interface {
    /// The interface's name, e.g. `wl_surface`.
    pub name: &'static str,
    /// The highest version the installed XML describes.
    pub version: u32,
    /// Requests (client → compositor), indexed by opcode.
    pub requests: &'static [Message],
    /// Events (compositor → client), indexed by opcode.
    pub events: &'static [Message],
}

include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// Looks an interface up by name (binary search over [`INTERFACES`]).
pub fn find_interface(name: &str) -> Option<&'static Interface> {
    INTERFACES
        .binary_search_by(|i| i.name.cmp(name))
        .ok()
        .map(|i| &INTERFACES[i])
}

/// Looks an interface up by a name taken from the wire (as `wl_registry.bind` carries it);
/// `None` if it is not UTF-8 or not known.
pub fn find_interface_bytes(name: &[u8]) -> Option<&'static Interface> {
    INTERFACES
        .binary_search_by(|i| i.name.as_bytes().cmp(name))
        .ok()
        .map(|i| &INTERFACES[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique() {
        assert!(INTERFACES.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn display_is_first_class() {
        let d = find_interface("wl_display").unwrap();
        assert_eq!(d.requests[0].name, "sync");
        assert_eq!(d.requests[1].name, "get_registry");
        assert_eq!(d.events[0].name, "error");
        assert_eq!(d.events[1].name, "delete_id");
        assert!(find_interface("wl_nonexistent").is_none());
        assert!(find_interface_bytes(b"wl_display").is_some());
        assert!(find_interface_bytes(b"\xff").is_none());
    }

    #[test]
    fn referenced_interfaces_mostly_exist() {
        // Every interface an argument names should be in the tables (the installed protocols
        // are self-contained).
        for i in INTERFACES {
            for m in i.requests.iter().chain(i.events) {
                for a in m.args {
                    if let Some(name) = a.interface {
                        assert!(
                            find_interface(name).is_some(),
                            "{}.{}: {name}",
                            i.name,
                            m.name
                        );
                    }
                }
            }
        }
    }
}
