//! One log line built on the stack and written with a raw `write(2)`: no allocation, no
//! locks, no stdio buffering, usable from any hook.
#![allow(unsafe_code)]

/// A fixed-size line; text beyond 480 bytes is dropped.
pub(crate) struct Line {
    buf: [u8; 480],
    len: usize,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line {
            buf: [0; 480],
            len: 0,
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub(crate) fn int(&mut self, v: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let neg = v < 0;
        let mut u = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (u % 10) as u8;
            u /= 10;
            if u == 0 {
                break;
            }
        }
        if neg {
            self.text("-");
        }
        self.bytes(&digits[i..]);
    }

    /// Writes the line to `fd`, retrying on `EINTR`; errors are ignored (logging must never
    /// change the program's behaviour).
    pub(crate) fn write_to(&self, fd: i32) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: `buf[off..len]` is initialised memory we own for the call's duration.
            let r = unsafe {
                libc::write(
                    fd,
                    self.buf[off..].as_ptr() as *const libc::c_void,
                    self.len - off,
                )
            };
            if r < 0 {
                // SAFETY: reading this thread's errno.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                return;
            }
            off += r as usize;
        }
    }

    /// The bytes so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_without_allocating() {
        let mut l = Line::new();
        l.text("bind(fd=");
        l.int(5);
        l.text(") = ");
        l.int(-1);
        l.text(" ");
        l.int(i64::MIN);
        assert_eq!(l.as_slice(), b"bind(fd=5) = -1 -9223372036854775808");
        let mut long = Line::new();
        for _ in 0..100 {
            long.text("0123456789");
        }
        assert_eq!(long.as_slice().len(), 480);
    }
}
