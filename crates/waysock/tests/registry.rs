//! The per-user registry (SPEC §6) on real files in a scratch dir: what counts as live, what is
//! pruned, what is refused (symlinks, other owners, loose modes), that concurrent publishers
//! lose nothing; and the sealed-memfd handoff (`WAYSOCK_STATE_FD`) used where `/dev/shm` is not.
//!
//! "Live" endpoints are `UnixListener`s bound in the scratch dir by this process: the kernel
//! queues connections to them, which is all `accepts` needs.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use waysock::registry::{process_start_time, Record, Registry, RegistryError, StateFd};
use waysock::{Endpoint, Strategy};
use waysock_testkit::{mode_of, set_mode, snapshot, Scratch};

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn me() -> u32 {
    std::process::id()
}

/// A listening socket at `dir/name` and its endpoint.
fn listener(dir: &Path, name: &str) -> (UnixListener, Endpoint) {
    let path = dir.join(name);
    let l = UnixListener::bind(&path).unwrap();
    (l, Endpoint::Unix(path))
}

/// A record for `pid` (which must be running) at `ep`, published `unix_time`.
fn record(display: &str, ep: &Endpoint, pid: u32, unix_time: u64) -> Record {
    let mut r = Record::for_process(display, ep.clone(), pid, Some(Strategy::PrivateTmp))
        .expect("the process runs");
    r.unix_time = unix_time;
    r
}

/// A child that sleeps until killed (and is killed on drop).
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

fn setup(prefix: &str) -> (Scratch, PathBuf, Registry) {
    let scratch = Scratch::new(prefix);
    let dir = scratch.path().to_path_buf();
    let reg = Registry::in_dir(&dir, uid());
    (scratch, dir, reg)
}

fn displays(v: &[Record]) -> Vec<&str> {
    v.iter().map(|r| r.display.as_str()).collect()
}

fn assert_unsafe(r: Result<impl std::fmt::Debug, RegistryError>, why: &str) {
    match r {
        Err(RegistryError::Unsafe { why: w, .. }) if w.contains(why) => {}
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[test]
fn publish_read_withdraw_and_file_modes() {
    let (_s, dir, reg) = setup("reg-basic");
    assert_eq!(
        reg.read().unwrap(),
        vec![],
        "no file yet is an empty registry"
    );
    reg.usable().unwrap();
    let (_l1, ep1) = listener(&dir, "wayland-1");
    let (_l2, ep2) = listener(&dir, "wayland-2");
    let older = record("wayland-1", &ep1, me(), 1_000);
    let newer = record("wayland-2", &ep2, me(), 2_000);
    reg.publish(&older).unwrap();
    reg.publish(&newer).unwrap();
    assert_eq!(reg.read().unwrap(), vec![older.clone(), newer.clone()]);
    assert_eq!(displays(&reg.live().unwrap()), ["wayland-2", "wayland-1"]);

    // Publishing the same endpoint again replaces its record.
    let again = record("wayland-1", &ep1, me(), 3_000);
    reg.publish(&again).unwrap();
    assert_eq!(reg.read().unwrap(), vec![newer.clone(), again]);

    assert_eq!(mode_of(reg.path()), 0o600);
    let lock = dir.join(format!("waysock-{}.registry.lock", uid()));
    assert_eq!(mode_of(&lock), 0o600);
    // Only the registry, its lock and our sockets: no temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "wayland-1".to_string(),
            "wayland-2".into(),
            format!("waysock-{}.registry", uid()),
            format!("waysock-{}.registry.lock", uid()),
        ]
    );

    reg.withdraw(me()).unwrap();
    assert_eq!(reg.read().unwrap(), vec![]);
    assert_eq!(std::fs::read_to_string(reg.path()).unwrap(), "");
}

#[test]
fn dead_pid_is_not_live_and_is_pruned_on_write() {
    let (_s, dir, reg) = setup("reg-dead");
    let (_l1, ep1) = listener(&dir, "wayland-1");
    let (_l2, ep2) = listener(&dir, "wayland-2");
    let mut child = Sleeper::start();
    let theirs = record("wayland-1", &ep1, child.pid(), 1_000);
    reg.publish(&theirs).unwrap();
    assert!(theirs.is_live());
    assert_eq!(displays(&reg.live().unwrap()), ["wayland-1"]);

    child.kill();
    assert!(!theirs.process_alive());
    assert!(!theirs.is_live());
    assert_eq!(reg.live().unwrap(), vec![]);
    // Readers leave it; the next write prunes it.
    assert_eq!(reg.read().unwrap(), vec![theirs]);
    let ours = record("wayland-2", &ep2, me(), 2_000);
    reg.publish(&ours).unwrap();
    assert_eq!(reg.read().unwrap(), vec![ours]);
}

#[test]
fn recycled_pid_with_another_start_time_is_not_live() {
    let (_s, dir, reg) = setup("reg-recycled");
    let (_l, ep) = listener(&dir, "wayland-1");
    let (_l2, ep2) = listener(&dir, "wayland-2");
    let real = process_start_time(me()).unwrap();
    // Our pid, but a start time of another process that had it before us.
    let mut ghost = record("wayland-1", &ep, me(), 1_000);
    ghost.start_time = real.saturating_sub(1);
    assert!(!ghost.process_alive());
    assert!(
        !ghost.is_live(),
        "the endpoint answers, but the process is not the one recorded"
    );
    std::fs::write(reg.path(), ghost.to_line().unwrap() + "\n").unwrap();
    set_mode(reg.path(), 0o600);
    assert_eq!(reg.live().unwrap(), vec![]);
    reg.publish(&record("wayland-2", &ep2, me(), 2_000))
        .unwrap();
    assert_eq!(displays(&reg.read().unwrap()), ["wayland-2"]);
}

#[test]
fn endpoint_not_answering_is_not_live() {
    let (_s, dir, reg) = setup("reg-silent");
    let (l, ep) = listener(&dir, "wayland-1");
    let rec = record("wayland-1", &ep, me(), 1_000);
    reg.publish(&rec).unwrap();
    assert!(rec.is_live());
    // The socket file stays, nobody listens: connect is refused. Shut down before closing: a
    // child forked by another test thread may hold a copy of the fd until it execs.
    rustix::net::shutdown(&l, rustix::net::Shutdown::Both).unwrap();
    drop(l);
    assert!(rec.process_alive());
    assert!(!rec.is_live());
    assert_eq!(reg.live().unwrap(), vec![]);
    // An endpoint that was never there, and an abstract one nobody serves.
    let gone = record(
        "wayland-2",
        &Endpoint::Unix(dir.join("nothing")),
        me(),
        1_000,
    );
    let abs = record(
        "wayland-3",
        &Endpoint::Abstract(waysock_testkit::unique("waysock-test-none")),
        me(),
        1_000,
    );
    assert!(!gone.is_live());
    assert!(!abs.is_live());
    // A write prunes the silent record.
    reg.withdraw(u32::MAX - 1).unwrap();
    assert_eq!(reg.read().unwrap(), vec![]);
}

#[test]
fn malformed_lines_are_ignored_by_readers_and_dropped_by_writers() {
    let (_s, dir, reg) = setup("reg-malformed");
    let (_l, ep) = listener(&dir, "wayland-1");
    let good = record("wayland-1", &ep, me(), 1_000);
    let text = format!(
        "garbage\n{}\nwayland-9 unix:relative 1 2 3\n\n",
        good.to_line().unwrap()
    );
    std::fs::write(reg.path(), text).unwrap();
    set_mode(reg.path(), 0o600);
    assert_eq!(reg.read().unwrap(), vec![good.clone()]);
    reg.withdraw(u32::MAX - 1).unwrap();
    assert_eq!(
        std::fs::read_to_string(reg.path()).unwrap(),
        good.to_line().unwrap() + "\n"
    );
}

#[test]
fn symlink_at_the_registry_path_is_never_followed() {
    let (s, dir, reg) = setup("reg-symlink");
    let (_l, ep) = listener(&dir, "wayland-1");
    // The target is ours and 0600, so only the symlink itself can be the reason to refuse.
    let target = dir.join("elsewhere");
    let bait = record("wayland-1", &ep, me(), 1_000);
    std::fs::write(&target, bait.to_line().unwrap() + "\n").unwrap();
    set_mode(&target, 0o600);
    symlink(&target, reg.path()).unwrap();
    let before = snapshot(s.path());

    match reg.read() {
        Err(RegistryError::Sys { errno, .. }) => assert_eq!(errno.name(), "ELOOP"),
        other => panic!("read through a symlink: {other:?}"),
    }
    assert!(reg.live().is_err());
    assert!(reg.usable().is_err());
    assert!(reg.publish(&record("wayland-1", &ep, me(), 2_000)).is_err());
    assert!(reg.withdraw(me()).is_err());

    let after: Vec<String> = snapshot(s.path())
        .into_iter()
        .filter(|l| !l.contains(".registry.lock"))
        .collect();
    assert_eq!(after, before, "the symlink or its target was changed");
    assert!(std::fs::symlink_metadata(reg.path())
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlink_at_the_lock_path_is_never_followed() {
    let (s, dir, reg) = setup("reg-symlink-lock");
    let (_l, ep) = listener(&dir, "wayland-1");
    let target = dir.join("victim");
    std::fs::write(&target, "precious\n").unwrap();
    symlink(
        &target,
        dir.join(format!("waysock-{}.registry.lock", uid())),
    )
    .unwrap();
    let before = snapshot(s.path());
    assert!(reg.publish(&record("wayland-1", &ep, me(), 1_000)).is_err());
    assert_eq!(snapshot(s.path()), before);
    assert!(!reg.path().exists());
}

#[test]
fn registry_of_another_uid_is_refused() {
    let (_s, dir, reg) = setup("reg-owner");
    let (_l, ep) = listener(&dir, "wayland-1");
    reg.publish(&record("wayland-1", &ep, me(), 1_000)).unwrap();
    let content = std::fs::read_to_string(reg.path()).unwrap();
    // A registry for some other uid, whose files (made by us) belong to the wrong owner: that
    // is exactly what a file planted in /dev/shm by another user looks like.
    let other = uid() + 4242;
    let theirs = Registry::in_dir(&dir, other);
    std::fs::copy(reg.path(), theirs.path()).unwrap();
    set_mode(theirs.path(), 0o600);
    assert_unsafe(theirs.read(), &format!("belongs to uid {}", uid()));
    assert_unsafe(
        theirs.publish(&record("wayland-1", &ep, me(), 2_000)),
        "belongs to uid",
    );
    assert_eq!(std::fs::read_to_string(theirs.path()).unwrap(), content);
}

#[test]
fn registry_with_mode_0644_is_refused_not_repaired() {
    let (_s, dir, reg) = setup("reg-mode");
    let (_l, ep) = listener(&dir, "wayland-1");
    reg.publish(&record("wayland-1", &ep, me(), 1_000)).unwrap();
    set_mode(reg.path(), 0o644);
    let content = std::fs::read_to_string(reg.path()).unwrap();
    assert_unsafe(reg.read(), "mode is 0644");
    assert_unsafe(reg.live(), "mode is 0644");
    assert_unsafe(
        reg.publish(&record("wayland-1", &ep, me(), 2_000)),
        "mode is 0644",
    );
    assert_eq!(mode_of(reg.path()), 0o644, "refused, not chmod-ed");
    assert_eq!(std::fs::read_to_string(reg.path()).unwrap(), content);
}

#[test]
fn fifo_at_the_registry_path_is_refused_without_hanging() {
    let (_s, _dir, reg) = setup("reg-fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        reg.path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // A reader blocking in open(2) would hang the test here (the harness has no timeout, so
    // run it in a thread and bound the wait).
    let reg2 = reg.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(format!("{:?}", reg2.read()));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("reading a FIFO registry hung");
    assert!(got.contains("FIFO"), "{got}");
}

#[test]
fn concurrent_publishers_lose_no_record() {
    let (_s, dir, reg) = setup("reg-concurrent");
    const THREADS: usize = 8;
    const EACH: usize = 5;
    let mut listeners = Vec::new();
    let mut eps = Vec::new();
    for n in 0..THREADS * EACH {
        let (l, ep) = listener(&dir, &format!("wayland-{n}"));
        listeners.push(l);
        eps.push(ep);
    }
    let eps = Arc::new(eps);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let reg = reg.clone();
            let eps = Arc::clone(&eps);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let n = t * EACH + i;
                    let rec = record(&format!("wayland-{n}"), &eps[n], me(), n as u64);
                    reg.publish(&rec).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut got: Vec<u64> = reg.read().unwrap().iter().map(|r| r.unix_time).collect();
    got.sort();
    assert_eq!(got, (0..(THREADS * EACH) as u64).collect::<Vec<_>>());
}

/// Set in the children of `concurrent_processes_lose_no_record`: `DIR:FIRST:COUNT:PID`.
const CHILD_VAR: &str = "WAYSOCK_TEST_REGISTRY_CHILD";

#[test]
fn concurrent_processes_lose_no_record() {
    const PROCS: usize = 4;
    const EACH: usize = 10;
    if let Some(v) = std::env::var_os(CHILD_VAR) {
        // A child: publish COUNT records for the parent's pid, as fast as it can.
        let v = v.to_string_lossy().into_owned();
        let f: Vec<&str> = v.rsplitn(4, ':').collect();
        let (pid, count, first, dir): (u32, usize, usize, &str) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3],
        );
        let reg = Registry::in_dir(Path::new(dir), uid());
        for n in first..first + count {
            let ep = Endpoint::Unix(Path::new(dir).join(format!("wayland-{n}")));
            reg.publish(&record(&format!("wayland-{n}"), &ep, pid, n as u64))
                .unwrap();
        }
        return;
    }
    let (_s, dir, reg) = setup("reg-procs");
    // The endpoints must answer for the records to survive pruning: we listen, they publish.
    let listeners: Vec<_> = (0..PROCS * EACH)
        .map(|n| listener(&dir, &format!("wayland-{n}")))
        .collect();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|k| {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "--exact",
                "concurrent_processes_lose_no_record",
                "--test-threads=1",
            ])
            .env(
                CHILD_VAR,
                format!("{}:{}:{EACH}:{}", dir.display(), k * EACH, me()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            std::thread::spawn(move || waysock_testkit::run_command(cmd, Duration::from_secs(30)))
        })
        .collect();
    for c in children {
        let run = c.join().unwrap();
        run.assert_code(0);
    }
    let mut got: Vec<u64> = reg.read().unwrap().iter().map(|r| r.unix_time).collect();
    got.sort();
    assert_eq!(got, (0..(PROCS * EACH) as u64).collect::<Vec<_>>());
    assert_eq!(reg.live().unwrap().len(), PROCS * EACH);
    drop(listeners);
}

// ---- WAYSOCK_STATE_FD ------------------------------------------------------------------------

#[test]
fn state_fd_round_trip_and_seal() {
    let scratch = Scratch::new("statefd");
    let (_l, ep) = listener(scratch.path(), "wayland-1");
    let rec = record("wayland-1", &ep, me(), 1_000);
    let fd = StateFd::create().unwrap();
    let raw = fd.raw().to_string();
    fd.publish(&rec).unwrap();
    assert_eq!(StateFd::read_inherited(OsStr::new(&raw)).unwrap(), rec);
    // Sealed: nobody can change it any more.
    assert!(rustix::io::pwrite(fd.as_fd(), b"x", 0).is_err());
    assert!(rustix::fs::ftruncate(fd.as_fd(), 0).is_err());
    // Inheritable on purpose (children of `run` get it).
    let flags = rustix::io::fcntl_getfd(fd.as_fd()).unwrap();
    assert!(!flags.contains(rustix::io::FdFlags::CLOEXEC));
}

#[test]
fn state_fd_unsealed_memfd_is_refused() {
    let fd = StateFd::create().unwrap();
    let raw = fd.raw().to_string();
    let e = StateFd::read_inherited(OsStr::new(&raw))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not sealed"), "{e}");
    // Written but not sealed (what a forger would hand on) is refused as well.
    rustix::io::pwrite(fd.as_fd(), b"wayland-1 unix:/x/wayland-1 1 1 1\n", 0).unwrap();
    let e = StateFd::read_inherited(OsStr::new(&raw))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not sealed"), "{e}");
}

#[test]
fn state_fd_regular_file_and_garbage_are_refused() {
    let scratch = Scratch::new("statefd-file");
    let path = scratch.path().join("state");
    std::fs::write(&path, "wayland-1 unix:/x/wayland-1 1 1 1\n").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let raw = file.as_raw_fd().to_string();
    let e = StateFd::read_inherited(OsStr::new(&raw))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a sealable memfd"), "{e}");
    for bad in ["abc", "-1", "", "3x"] {
        let e = StateFd::read_inherited(OsStr::new(bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a descriptor number"), "{bad:?}: {e}");
    }
    let e = StateFd::read_inherited(OsStr::new("99999"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an open descriptor"), "{e}");
    // Unchanged.
    assert_eq!(std::fs::metadata(&path).unwrap().size(), 34);
}

#[test]
fn symlink_at_the_lock_path_is_never_followed_even_to_a_private_file_of_ours() {
    // The target passes every ownership and mode check: only O_NOFOLLOW refuses it.
    let (s, dir, reg) = setup("reg-symlink-lock-0600");
    let (_l, ep) = listener(&dir, "wayland-1");
    let target = dir.join("victim");
    std::fs::write(&target, "precious\n").unwrap();
    set_mode(&target, 0o600);
    symlink(
        &target,
        dir.join(format!("waysock-{}.registry.lock", uid())),
    )
    .unwrap();
    let before = snapshot(s.path());
    match reg.publish(&record("wayland-1", &ep, me(), 1_000)) {
        Err(RegistryError::Sys { errno, .. }) => assert_eq!(errno.name(), "ELOOP"),
        other => panic!("locked through a symlink: {other:?}"),
    }
    assert_eq!(snapshot(s.path()), before);
    assert!(!reg.path().exists());
}

/// A temporary file's name as `update` makes them (`.NAME.tmp.` and a random suffix), here
/// with a suffix someone could have guessed: the old, predictable one (our pid).
fn tmp_path(dir: &Path) -> PathBuf {
    dir.join(format!(".waysock-{}.registry.tmp.{}", uid(), me()))
}

/// The temporary files in `dir` now.
fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".registry.tmp."))
        .collect()
}

#[test]
fn a_temporary_file_left_by_a_dead_writer_of_ours_is_replaced() {
    let (_s, dir, reg) = setup("reg-tmp-stale");
    let (_l, ep) = listener(&dir, "wayland-1");
    std::fs::write(tmp_path(&dir), "half a line").unwrap();
    set_mode(&tmp_path(&dir), 0o600);
    reg.publish(&record("wayland-1", &ep, me(), 1_000)).unwrap();
    assert!(!tmp_path(&dir).exists());
    assert_eq!(displays(&reg.read().unwrap()), ["wayland-1"]);
    assert!(tmp_files(&dir).is_empty(), "{:?}", tmp_files(&dir));
}

#[test]
fn a_symlink_at_the_temporary_path_is_never_followed_nor_removed() {
    let (s, dir, reg) = setup("reg-tmp-symlink");
    let (_l, ep) = listener(&dir, "wayland-1");
    let target = dir.join("victim");
    std::fs::write(&target, "precious\n").unwrap();
    set_mode(&target, 0o600);
    symlink(&target, tmp_path(&dir)).unwrap();
    let before: Vec<String> = snapshot(s.path())
        .into_iter()
        .filter(|l| !l.contains(".registry.lock"))
        .collect();
    // The temporary name is not guessable: a planted name blocks nothing.
    reg.publish(&record("wayland-1", &ep, me(), 1_000)).unwrap();
    assert_eq!(displays(&reg.read().unwrap()), ["wayland-1"]);
    let after: Vec<String> = snapshot(s.path())
        .into_iter()
        .filter(|l| {
            !l.contains(".registry.lock") && !l.starts_with(&format!("waysock-{}.registry ", uid()))
        })
        .collect();
    assert_eq!(after, before, "the symlink or its target was changed");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

#[test]
fn a_temporary_file_of_another_uid_is_left_alone() {
    let name = "a_temporary_file_of_another_uid_is_left_alone";
    if !waysock_testkit::is_root() {
        return waysock_testkit::skip(name, "needs root to chown a file to another uid");
    }
    let (_s, dir, reg) = setup("reg-tmp-owner");
    let (_l, ep) = listener(&dir, "wayland-1");
    std::fs::write(tmp_path(&dir), "theirs").unwrap();
    std::os::unix::fs::chown(tmp_path(&dir), Some(1001), Some(1001)).unwrap();
    // Not guessable, so not blocked; and another uid's file is never removed.
    reg.publish(&record("wayland-1", &ep, me(), 1_000)).unwrap();
    assert_eq!(displays(&reg.read().unwrap()), ["wayland-1"]);
    assert_eq!(std::fs::read_to_string(tmp_path(&dir)).unwrap(), "theirs");
    assert_eq!(std::fs::metadata(tmp_path(&dir)).unwrap().uid(), 1001);
}

#[test]
fn a_record_with_an_empty_or_spaced_field_has_no_line() {
    let (_s, dir, _reg) = setup("reg-line");
    let (_l, ep) = listener(&dir, "wayland-1");
    assert!(record("wayland-1", &ep, me(), 1_000).to_line().is_some());
    assert!(record("", &ep, me(), 1_000).to_line().is_none());
    assert!(record("wayland 1", &ep, me(), 1_000).to_line().is_none());
    let spaced = Endpoint::Unix(dir.join("a b"));
    assert!(record("wayland-1", &spaced, me(), 1_000)
        .to_line()
        .is_none());
}

#[test]
fn a_record_is_stamped_with_the_current_time() {
    let before = waysock::registry::now();
    let r = Record::for_process("wayland-1", Endpoint::Abstract("x".into()), me(), None).unwrap();
    let after = waysock::registry::now();
    // The clock is the system's: only that the stamp is taken from it, between two readings.
    assert!(before > 1_600_000_000, "{before}");
    assert!((before..=after).contains(&r.unix_time), "{}", r.unix_time);
}
