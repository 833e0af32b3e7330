//! Finding the preload shim and telling when it cannot work.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use waysock::Environment;

/// The shim's file name.
pub const SHIM: &str = "libwaysock_preload.so";

/// Where the shim is: `WAYSOCK_PRELOAD_LIB`, next to this binary, in its `deps/` (a cargo
/// build tree), in `../lib/waysock/` or `/usr/lib/waysock/` (an install); a file found there
/// must pass [`vet_shim`]: it is loaded into the compositor and runs as us. Without any such
/// file, the copy built into this binary is used ([`embedded_shim`]): `cargo install` gives a
/// `waysock` that needs no file beside it.
///
/// In a cargo build tree both of the first two can exist, and only `cargo build` refreshes the
/// copy next to the binary: `cargo test` rebuilds `deps/` alone. The newer of the two wins, so
/// a test run never preloads a stale shim.
pub fn shim_path() -> Result<PathBuf, String> {
    let uid = rustix::process::geteuid().as_raw();
    if let Some(p) = std::env::var_os("WAYSOCK_PRELOAD_LIB") {
        let p = PathBuf::from(p);
        if !p.is_absolute() {
            return Err(format!(
                "WAYSOCK_PRELOAD_LIB={} is not an absolute path",
                p.display()
            ));
        }
        return vet_shim(&p, uid)
            .map(|()| p.clone())
            .map_err(|why| format!("WAYSOCK_PRELOAD_LIB={}: refused: {why}", p.display()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate waysock itself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        dir.join(SHIM),
        dir.join("deps").join(SHIM),
        dir.join("../lib/waysock").join(SHIM),
        PathBuf::from("/usr/lib/waysock").join(SHIM),
    ];
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let found = match (candidates[0].is_file(), candidates[1].is_file()) {
        (true, true) if modified(&candidates[1]) > modified(&candidates[0]) => Some(&candidates[1]),
        _ => candidates.iter().find(|p| p.is_file()),
    };
    let Some(found) = found.map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())) else {
        return embedded_shim().map_err(|why| {
            format!(
                "{SHIM} not found next to {}, and the copy built into waysock cannot be handed \
                 over: {why} (or set WAYSOCK_PRELOAD_LIB)",
                exe.display()
            )
        });
    };
    vet_shim(&found, uid)
        .map(|()| found.clone())
        .map_err(|why| format!("{}: refused: {why}", found.display()))
}

/// The shim built together with this binary (see `build.rs`).
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libwaysock_preload.so"));

/// The lowest descriptor number the embedded shim's memfd takes: far above what `run` and
/// `exec` hand to children (stdio, `LISTEN_FDS` from 3, `WAYLAND_SOCKET`), so no `dup2` into a
/// child's low descriptors replaces it.
const MEMFD_MIN_FD: i32 = 200;

/// The built-in shim as a path a dynamic loader can open: `/proc/self/fd/N`, where `N` is a
/// sealed memfd holding [`EMBEDDED`] that is inherited across `exec` (no `FD_CLOEXEC`), so in
/// the compositor (or client) started with it, `/proc/self/fd/N` is the same sealed file.
///
/// Trusted by construction: we made the memfd and sealed it (no write, shrink, grow, or new
/// seals), so nobody, not even we, can change its content after the seals; nothing is read
/// from a file anyone else could have written. Made once per process.
pub fn embedded_shim() -> Result<PathBuf, String> {
    static MEMFD: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    MEMFD.get_or_init(seal_embedded).clone()
}

fn seal_embedded() -> Result<PathBuf, String> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::os::fd::{AsRawFd, IntoRawFd};
    let fd = rustix::fs::memfd_create(SHIM, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut written = 0;
    while written < EMBEDDED.len() {
        match rustix::io::write(&fd, &EMBEDDED[written..]) {
            Ok(0) => return Err("writing the memfd: no progress".into()),
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("writing the memfd: {e}")),
        }
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .map_err(|e| format!("sealing the memfd: {e}"))?;
    // Moved high (see MEMFD_MIN_FD), then made inheritable: the loader of the program we
    // start opens it by number.
    let high = rustix::io::fcntl_dupfd_cloexec(&fd, MEMFD_MIN_FD)
        .map_err(|e| format!("moving the memfd: {e}"))?;
    drop(fd);
    rustix::io::fcntl_setfd(&high, rustix::io::FdFlags::empty())
        .map_err(|e| format!("making the memfd inheritable: {e}"))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", high.as_raw_fd()));
    // The loader needs /proc to reach it; a sandbox without /proc gets a reason, not a
    // compositor that silently runs without the shim.
    match std::fs::metadata(&path) {
        Ok(m) if m.len() == EMBEDDED.len() as u64 => {}
        Ok(_) => return Err(format!("{} is not the memfd just made", path.display())),
        Err(e) => {
            return Err(format!(
                "{} cannot be opened ({e}); is /proc mounted?",
                path.display()
            ))
        }
    }
    // Kept open for the life of this process (and inherited by what it starts).
    let _ = high.into_raw_fd();
    Ok(path)
}

/// May `path` be loaded into a compositor running as `uid`? It must be a regular file (not a
/// symlink) owned by root or `uid`, writable by no one else, in directories that pass
/// [`waysock::trust`] from `/` down, and really be the shim: an ELF shared object that reads
/// `WAYSOCK_PRELOAD_DIR`. Anything else would either run someone else's code as us or leave
/// the compositor silently without the shim.
pub fn vet_shim(path: &Path, uid: u32) -> Result<(), String> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let dir = path.parent().unwrap_or(Path::new("/"));
    waysock::trust::check_directory_chain(dir, uid).map_err(|d| d.cause)?;
    let st = rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("cannot look at it: {e}"))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Symlink => return Err("it is a symlink: give the real path".into()),
        _ => return Err("it is not a regular file".into()),
    }
    if st.st_uid != 0 && st.st_uid != uid {
        return Err(format!(
            "it belongs to uid {}, neither root nor us (uid {uid}): its code would run as us",
            st.st_uid
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {:04o}): anyone could change the code \
             that runs as us",
            st.st_mode & 0o7777
        ));
    }
    // Read through the same (never followed, never blocking) file that was checked.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open it: {e}"))?;
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(fd)
        .take(64 << 20)
        .read_to_end(&mut bytes);
    const ET_DYN: u16 = 3;
    let is_shared_object =
        bytes.starts_with(b"\x7fELF") && bytes.get(16..18) == Some(&ET_DYN.to_le_bytes()[..]);
    if !is_shared_object {
        return Err("it is not an ELF shared object".into());
    }
    if !contains(&bytes, b"WAYSOCK_PRELOAD_DIR") {
        return Err(format!("it is a shared object, but not {SHIM}"));
    }
    Ok(())
}

/// Resolves `program` through `PATH` like `execvp`.
pub fn resolve(program: &OsStr) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// Why `LD_PRELOAD` cannot reach `program`, if we can tell: a static binary, secure execution
/// (setuid, setgid, file capabilities), or a Rust compositor on wayland-backend's pure-Rust
/// socket code (raw syscalls the shim never sees).
pub fn blockers(program: &OsStr) -> Vec<String> {
    let mut out = Vec::new();
    let Some(path) = resolve(program) else {
        return out; // spawning reports "not found" itself
    };
    let shown = path.display();
    if let Ok(md) = std::fs::metadata(&path) {
        if md.permissions().mode() & 0o6000 != 0 {
            out.push(format!(
                "{shown} is setuid/setgid: the loader ignores LD_PRELOAD under secure execution"
            ));
        }
    }
    if rustix::fs::getxattr(&path, "security.capability", &mut [0u8; 64][..]).is_ok() {
        out.push(format!(
            "{shown} has file capabilities: the loader ignores LD_PRELOAD under secure execution"
        ));
    }
    let mut bytes = Vec::new();
    if let Ok(f) = std::fs::File::open(&path) {
        let _ = f.take(64 << 20).read_to_end(&mut bytes);
    }
    if bytes.starts_with(b"\x7fELF") {
        if !has_interp(&bytes) {
            out.push(format!(
                "{shown} is statically linked: there is no dynamic loader to read LD_PRELOAD"
            ));
        }
        if contains(&bytes, b"wayland-backend") && !contains(&bytes, b"libwayland-server.so") {
            out.push(format!(
                "{shown} looks like a Rust compositor on wayland-backend's pure-Rust sockets \
                 (raw syscalls the shim never sees): build it with the waysock library \
                 (waysock::Binder) instead"
            ));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Does this 64- or 32-bit little-endian ELF file have a `PT_INTERP` program header?
fn has_interp(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as usize)
    };
    let (phoff, phentsize, phnum) = match b.get(4) {
        Some(2) => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        Some(1) => (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c)),
        _ => return true, // unknown class: do not claim it is static
    };
    let (Some(phoff), Some(size), Some(num)) = (phoff, phentsize, phnum) else {
        return true;
    };
    (0..num).any(|i| u32_at(phoff + i * size) == Some(3)) // PT_INTERP
}

/// The directory an abstract-mode program is told is its runtime dir. The shim maps its
/// Wayland sockets and locks, but the program and its children may put other things there
/// (sway's IPC socket, a D-Bus or PulseAudio socket), so it must be a place no other user can
/// write to: our own private dir if one exists, else a system dir that only root owns and
/// nobody else can write (`/run`, `/`). Never `/tmp` or `/dev/shm`.
pub fn runtime_dir_for_shim(env: &Environment) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(x) = env.xdg_runtime_dir.as_ref().filter(|x| !x.is_empty()) {
        candidates.push(PathBuf::from(x));
    }
    candidates.push(env.roots.user_run.join(env.uid.to_string()));
    let private = candidates
        .iter()
        .find(|p| p.is_absolute() && waysock::discover::usable_runtime_dir(p, env.uid));
    if let Some(p) = private {
        return p.clone();
    }
    ["/run", "/"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            std::fs::symlink_metadata(p)
                .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Sets the variables that make `cmd` run under the shim (after ours in `LD_PRELOAD`).
pub fn apply(cmd: &mut Command, shim: &Path, dir: &Path, allow_uids: &[u32]) {
    cmd.envs(vars(shim, dir, allow_uids, std::env::var_os("LD_PRELOAD")));
}

/// The variables that make a program run under the shim: `LD_PRELOAD` (the shim first, then
/// `old_preload`), `WAYSOCK_PRELOAD_DIR` and `XDG_RUNTIME_DIR` (`dir`), and
/// `WAYSOCK_ALLOW_UIDS` when other uids are allowed.
pub fn vars(
    shim: &Path,
    dir: &Path,
    allow_uids: &[u32],
    old_preload: Option<OsString>,
) -> Vec<(&'static str, OsString)> {
    let mut preload = OsString::from(shim);
    if let Some(old) = old_preload.filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut out = vec![
        ("LD_PRELOAD", preload),
        ("WAYSOCK_PRELOAD_DIR", dir.into()),
        ("XDG_RUNTIME_DIR", dir.into()),
    ];
    if !allow_uids.is_empty() {
        let list: Vec<String> = allow_uids.iter().map(u32::to_string).collect();
        out.push(("WAYSOCK_ALLOW_UIDS", list.join(",").into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_have_an_interpreter() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(has_interp(&sh));
        assert!(blockers(OsStr::new("sh")).is_empty());
    }

    #[test]
    fn the_embedded_shim_is_a_sealed_inheritable_copy() {
        use std::io::Write;
        let path = embedded_shim().expect("the embedded shim");
        assert_eq!(embedded_shim().unwrap(), path, "made once");
        let n: i32 = path
            .to_str()
            .and_then(|p| p.strip_prefix("/proc/self/fd/"))
            .and_then(|n| n.parse().ok())
            .expect("a /proc/self/fd path");
        assert!(n >= MEMFD_MIN_FD);
        // Inherited by children: no O_CLOEXEC (octal 02000000) in its flags.
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap();
        assert_eq!(flags & 0o2000000, 0, "{info}");
        // Seals belong to the file, so a second open of it shows them.
        let file = std::fs::File::open(&path).unwrap();
        let seals = rustix::fs::fcntl_get_seals(&file).unwrap();
        let all = rustix::fs::SealFlags::WRITE
            | rustix::fs::SealFlags::SHRINK
            | rustix::fs::SealFlags::GROW
            | rustix::fs::SealFlags::SEAL;
        assert!(seals.contains(all), "{seals:?}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, EMBEDDED);
        assert!(contains(&bytes, b"WAYSOCK_PRELOAD_DIR"));
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&path) {
            assert!(w.write_all(b"x").is_err(), "the sealed shim was writable");
        }
    }

    #[test]
    fn static_binaries_are_named() {
        // A minimal ELF64 header with no program headers: static by construction.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        assert!(!has_interp(&elf));
    }
}
