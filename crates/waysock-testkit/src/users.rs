//! The unprivileged accounts `.ci/run` creates: the test user and the intruder.

/// The unprivileged user `.ci/run` creates.
pub const TEST_USER: &str = "wstest";

/// The second unprivileged account: the other local user who attacks [`TEST_USER`] in the
/// security tests.
pub const INTRUDER: &str = "wsintruder";

/// The test user's uid and gid, or the reason it cannot be used.
pub fn test_user() -> Result<(u32, u32), String> {
    user(TEST_USER)
}

/// The intruder's uid and gid, or the reason it cannot be used.
pub fn intruder() -> Result<(u32, u32), String> {
    user(INTRUDER)
}

/// `name`'s uid and gid from `/etc/passwd`, or the reason it cannot be used.
pub fn user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2].parse().map_err(|_| "bad uid".to_string())?;
            let gid = f[3].parse().map_err(|_| "bad gid".to_string())?;
            return Ok((uid, gid));
        }
    }
    Err(format!(
        "user {name} does not exist (.ci/run creates it: useradd -m {name})"
    ))
}
