//! The token file (SPEC §8): a regular file of ours, mode 0600 or stricter, holding
//! `MIN_SECRET..=MAX_SECRET` bytes, whose whole content is the secret. Each limit is tried on
//! both sides of its boundary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use waysock_bridge::auth::{Token, TokenError, MAX_SECRET, MIN_SECRET};

/// A scratch dir removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("waysock-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        Dir(p)
    }

    /// A 0600 file `name` holding `content`.
    fn token(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(p: &Path) -> Result<Token, TokenError> {
    Token::load(p)
}

#[test]
fn the_secret_is_the_whole_file_at_both_length_limits() {
    assert_eq!(MAX_SECRET, 64 * 1024);
    let d = Dir::new("limits");
    for len in [MIN_SECRET, MAX_SECRET] {
        let t = load(&d.token(&format!("ok{len}"), &vec![b'k'; len])).expect("accepted");
        // Debug shows the length only: the whole file was read, nothing more, nothing less.
        assert_eq!(format!("{t:?}"), format!("Token({len} bytes, redacted)"));
    }
    for len in [0, MIN_SECRET - 1, MAX_SECRET + 1] {
        match load(&d.token(&format!("bad{len}"), &vec![b'k'; len])) {
            Err(TokenError::Length { len: got, .. }) => assert_eq!(got, len as u64),
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}

#[test]
fn a_token_file_group_or_others_can_read_is_refused() {
    let d = Dir::new("mode");
    let p = d.token("t", b"0123456789abcdef0123");
    for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        match load(&p) {
            Ok(_) if ok => {}
            Err(TokenError::Mode { mode: m, .. }) if !ok => assert_eq!(m, mode),
            other => panic!("mode {mode:04o}: {other:?}"),
        }
    }
}

#[test]
fn a_token_that_is_not_a_regular_file_is_refused() {
    let d = Dir::new("kind");
    let dir = d.0.join("adir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        matches!(load(&dir), Err(TokenError::NotFile { .. })),
        "a directory was accepted"
    );
    let fifo = d.0.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Opened non-blocking: a FIFO nobody writes to cannot hang us.
    assert!(
        matches!(load(&fifo), Err(TokenError::NotFile { .. })),
        "a FIFO was accepted"
    );
}

#[test]
fn a_token_file_of_another_uid_is_refused() {
    if !waysock_testkit::is_root() {
        return waysock_testkit::skip(
            "a_token_file_of_another_uid_is_refused",
            "needs root to give a file to another uid",
        );
    }
    let d = Dir::new("owner");
    let p = d.token("t", b"0123456789abcdef0123");
    std::os::unix::fs::chown(&p, Some(1001), Some(1001)).unwrap();
    match load(&p) {
        Err(TokenError::Owner { owner, uid, .. }) => assert_eq!((owner, uid), (1001, 0)),
        other => panic!("{other:?}"),
    }
}
