//! Arbitrary bytes as a Wayland stream: frame with `header`, look up with the `ObjectMap`,
//! `decode`, `apply` — nothing may panic, the map stays bounded, and whatever decodes
//! re-encodes to something that decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waysock_bridge::codec::{
    decode, encode, header, Direction, ObjectMap, HEADER_SIZE, MAX_OBJECTS,
};

fuzz_target!(|data: &[u8]| {
    // First byte: one direction bit per message (cycled), so both directions interleave.
    let Some((&dirs, mut rest)) = data.split_first() else {
        return;
    };
    let mut map = ObjectMap::new();
    let mut n = 0u32;
    while let Ok(Some(h)) = header(rest) {
        let size = usize::from(h.size);
        if rest.len() < size {
            break;
        }
        let (bytes, tail) = rest.split_at(size);
        rest = tail;
        let dir = if dirs >> (n % 8) & 1 == 0 {
            Direction::Request
        } else {
            Direction::Event
        };
        n += 1;
        let Some(msg) = map.message(&h, dir) else {
            continue;
        };
        let Ok(args) = decode(msg, &bytes[HEADER_SIZE..]) else {
            continue;
        };
        assert_eq!(args.len(), msg.args.len());
        let mut again = Vec::new();
        encode(h.object, h.opcode, msg, &args, &mut again).expect("decoded values re-encode");
        assert_eq!(again.len(), size, "re-encoding keeps the size");
        assert_eq!(decode(msg, &again[HEADER_SIZE..]).as_ref(), Ok(&args));
        let _ = map.apply(&h, dir, msg, &args);
        assert!(map.len() <= 2 * MAX_OBJECTS);
    }
});
