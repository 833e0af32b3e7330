//! Telling a local Wayland client why the bridge cannot serve it, the way a compositor would:
//! a `wl_display.error` event on object 1 carrying the reason. libwayland prints it
//! (`wl_display@1: error 3: waysock bridge: tcp:10.0.0.1:7060 refused the connection`) and
//! fails the client's next roundtrip, so the client ends with its reason instead of finding an
//! empty registry.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::codec::{self, Direction, Header, ObjectMap, Value};

/// `wl_display.error` code `implementation`: the error is the server's (here the bridge's),
/// not the client's.
pub const IMPLEMENTATION: u32 = 3;
/// Longest message sent (bytes); a longer one is cut at a character boundary and ends in `…`.
pub const MAX_TEXT: usize = 1024;
/// How long [`tell`] waits for the client to take the event and hang up.
pub const LINGER: Duration = Duration::from_secs(2);

/// The `wl_display.error` event (object 1, opcode 0) with `object_id` 1, `code` and `text`
/// (cut to [`MAX_TEXT`] bytes), in native byte order as Wayland sends it.
pub fn encode(code: u32, text: &str) -> Vec<u8> {
    let mut text = text.replace('\0', " ");
    if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let map = ObjectMap::new();
    let head = Header {
        object: 1,
        opcode: 0,
        size: 0,
    };
    let mut out = Vec::new();
    let encoded = map
        .message(&head, Direction::Event)
        .ok_or_else(|| "wl_display has no event 0 in the tables".to_string())
        .and_then(|msg| {
            codec::encode(
                1,
                0,
                msg,
                &[
                    Value::Object(1),
                    Value::Uint(code),
                    Value::String(Some(text.as_bytes())),
                ],
                &mut out,
            )
            .map_err(|e| e.to_string())
        });
    if let Err(e) = encoded {
        // The tables are checked in and the text is bounded: this cannot happen.
        unreachable!("encoding wl_display.error: {e}");
    }
    out
}

/// Sends `wl_display.error` (`code`, `text`) to `client` and closes its write side, then reads
/// and drops what the client sends until it hangs up or [`LINGER`] is over (closing at once
/// could end the connection before libwayland has read the event). Best effort: a client that
/// is gone already is no error.
pub fn tell(client: &UnixStream, code: u32, text: &str) {
    let until = Instant::now() + LINGER;
    let _ = client.set_write_timeout(Some(LINGER));
    if (&*client).write_all(&encode(code, text)).is_err() {
        return;
    }
    let _ = client.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || client.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*client).read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` as one event on a fresh connection: (object_id, code, text).
    fn decode(bytes: &[u8]) -> (u32, u32, String) {
        let head = codec::header(bytes).unwrap().unwrap();
        assert_eq!((head.object, head.opcode), (1, 0));
        assert_eq!(usize::from(head.size), bytes.len());
        let map = ObjectMap::new();
        let msg = map.message(&head, Direction::Event).unwrap();
        assert_eq!(msg.name, "error");
        match codec::decode(msg, &bytes[codec::HEADER_SIZE..]).unwrap()[..] {
            [Value::Object(o), Value::Uint(c), Value::String(Some(t))] => {
                (o, c, String::from_utf8(t.to_vec()).unwrap())
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wl_display_error_a_client_library_can_decode() {
        let text = "waysock bridge: tcp:10.0.0.1:7060 refused the connection";
        assert_eq!(
            decode(&encode(IMPLEMENTATION, text)),
            (1, 3, text.to_string())
        );
    }

    #[test]
    fn long_text_is_cut_at_a_character_and_a_nul_cannot_end_it_early() {
        let long = "é".repeat(2000);
        let (_, _, got) = decode(&encode(IMPLEMENTATION, &long));
        assert!(got.len() <= MAX_TEXT && got.ends_with('…'), "{}", got.len());
        let (_, _, got) = decode(&encode(0, "a\0b"));
        assert_eq!(got, "a b");
    }

    #[test]
    fn tell_delivers_the_event_then_hangs_up() {
        let (bridge, mut client) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || tell(&bridge, IMPLEMENTATION, "why"));
        // The client's first requests (get_registry, sync) are read and dropped.
        client.write_all(&[0u8; 24]).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        drop(client);
        t.join().unwrap();
        assert_eq!(decode(&got), (1, 3, "why".to_string()));
    }
}
