//! Writing to stdout where a closed pipe (`waysock doctor | head`) is success, not an error.

use std::io::{self, Write};

/// Writes `text` to stdout; a broken pipe is swallowed.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
