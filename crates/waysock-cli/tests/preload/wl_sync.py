"""A raw Wayland client: connects to abstract socket NAME, sends wl_display.sync, and prints one
line saying what came back: `RESULT done` (a wl_callback.done for it), or how it ended without
one (`RESULT eof`, `RESULT error ERRNO`, `RESULT send-failed ERRNO`, `RESULT timeout`...)."""
import socket
import struct
import sys

name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect("\0" + name)
except OSError as e:
    print("RESULT connect-failed", e.errno)
    sys.exit(0)
try:
    # wl_display (object 1) opcode 0 = sync(new_id callback = 2); header: id, size << 16 | opcode.
    s.sendall(struct.pack("<III", 1, (12 << 16) | 0, 2))
except OSError as e:
    print("RESULT send-failed", e.errno)
    sys.exit(0)
buf = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            print("RESULT eof", len(buf))
            break
        buf += d
        off = 0
        done = False
        while off + 8 <= len(buf):
            obj, size_op = struct.unpack_from("<II", buf, off)
            size = size_op >> 16
            if size < 8 or off + size > len(buf):
                break
            if obj == 2 and size_op & 0xFFFF == 0:
                done = True
            off += size
        if done:
            print("RESULT done")
            break
except socket.timeout:
    print("RESULT timeout", len(buf))
except OSError as e:
    print("RESULT error", e.errno, len(buf))
