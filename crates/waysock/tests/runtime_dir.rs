//! Runtime and private directories (SPEC §4), on real directories built in a scratch dir: which
//! directory the chain takes, which it refuses, and that a refused directory is never written
//! into. Every `Environment` is made by hand (roots pointing into the scratch dir), so these
//! tests never touch `/tmp`, `/run` or `/dev/shm` and run in parallel.

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use waysock::{Attempt, Binder, Endpoint, Environment, Errno, Failure, Outcome, Roots, Strategy};
use waysock_testkit::{assert_mode_0700, mode_of, set_mode, skip, snapshot, Scratch};

/// An environment whose every place is under `base`; nothing is inherited from the process.
fn env_in(base: &Path) -> Environment {
    Environment::clean(Roots::under(base))
}

/// Makes `base/tmp`, `base/shm`, … as sticky world-writable dirs, like the real ones.
fn make_roots(env: &Environment) {
    let r = &env.roots;
    for d in [&r.tmp, &r.run, &r.shm, &r.varrun] {
        std::fs::create_dir_all(d).unwrap();
        set_mode(d, 0o1777);
    }
    std::fs::create_dir_all(&r.user_run).unwrap();
    set_mode(&r.user_run, 0o755);
}

fn mkdir_mode(path: &Path, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    set_mode(path, mode);
    path.to_path_buf()
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn private_name() -> String {
    format!("waysock-{}", uid())
}

/// The attempts of one strategy.
fn attempts_of(report: &waysock::Report, s: Strategy) -> Vec<&Attempt> {
    report.attempts.iter().filter(|a| a.strategy == s).collect()
}

/// The one failure of strategy `s`, or a panic showing the whole report.
fn failure_of(report: &waysock::Report, s: Strategy) -> Failure {
    let all = attempts_of(report, s);
    let failed: Vec<&Failure> = all
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "expected one failure of {s}\n{report}");
    failed[0].clone()
}

fn unix(path: &Path) -> Endpoint {
    Endpoint::Unix(path.to_path_buf())
}

#[test]
fn runtime_dir_is_chosen_when_good() {
    let scratch = Scratch::new("rt-good");
    let mut env = env_in(scratch.path());
    make_roots(&env);
    let rt = mkdir_mode(&scratch.path().join("rt"), 0o700);
    env.xdg_runtime_dir = Some(rt.clone().into());

    let report = Binder::new(env.clone()).diagnose().unwrap();
    let choice = report.choice.clone().expect("a choice");
    assert_eq!(choice.strategy, Strategy::RuntimeDir, "{report}");
    assert_eq!(choice.endpoint, unix(&rt.join("wayland-0")), "{report}");

    let bound = Binder::new(env).bind().unwrap();
    assert_eq!(bound.strategy(), Strategy::RuntimeDir);
    assert_eq!(bound.endpoint(), &unix(&rt.join("wayland-0")));
    assert_eq!(bound.runtime_dir(), Some(rt.as_path()));
    assert_eq!(bound.display_name(), Some("wayland-0"));
    // Later strategies were not even tried.
    assert!(
        bound
            .report()
            .attempts
            .iter()
            .all(|a| a.strategy <= Strategy::RuntimeDir),
        "{}",
        bound.report()
    );
    let kinds: Vec<_> = snapshot(&rt)
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(kinds, ["wayland-0 socket", "wayland-0.lock file"]);
    // A client reaches it.
    let _client = std::os::unix::net::UnixStream::connect(rt.join("wayland-0")).unwrap();
    bound.accept().unwrap();
    // The private fallback dirs were not created.
    assert!(!env_in(scratch.path())
        .roots
        .tmp
        .join(private_name())
        .exists());
}

#[test]
fn missing_runtime_dir_is_created_0700() {
    let scratch = Scratch::new("rt-missing");
    let mut env = env_in(scratch.path());
    let rt = scratch.path().join("rt");
    env.xdg_runtime_dir = Some(rt.clone().into());
    // mkdir's mode goes through the umask; the result must still be exactly 0700.
    let bound = Binder::new(env)
        .strategies(vec![Strategy::RuntimeDir])
        .bind()
        .unwrap();
    assert_mode_0700(&rt);
    assert_eq!(std::fs::metadata(&rt).unwrap().uid(), uid());
    let a = &bound.report().attempts[0];
    match &a.outcome {
        Outcome::Ok { note, .. } => assert!(
            note.as_deref().unwrap_or("").contains("created 0700"),
            "{}",
            bound.report()
        ),
        _ => panic!("{}", bound.report()),
    }
}

#[test]
fn too_permissive_runtime_dir_is_refused_then_tightened_with_fix_perms() {
    let scratch = Scratch::new("rt-perm");
    let mut env = env_in(scratch.path());
    let rt = mkdir_mode(&scratch.path().join("rt"), 0o755);
    env.xdg_runtime_dir = Some(rt.clone().into());
    let binder = Binder::new(env).strategies(vec![Strategy::RuntimeDir]);

    let err = binder
        .bind()
        .expect_err("a 0755 runtime dir must be refused");
    let report = err.report().expect("a report");
    let f = failure_of(report, Strategy::RuntimeDir);
    assert!(f.cause.contains("mode 0755"), "{report}");
    assert!(f.remedy.contains("chmod 0700"), "{report}");
    assert!(
        !f.security,
        "our own runtime dir is not a security matter: {report}"
    );
    assert_eq!(mode_of(&rt), 0o755, "refusing must not chmod");
    assert!(
        snapshot(&rt).is_empty(),
        "nothing written: {:?}",
        snapshot(&rt)
    );

    // diagnose never chmods, even when asked to fix.
    let report = binder.clone().fix_perms(true).diagnose().unwrap();
    assert!(report.choice.is_none(), "{report}");
    assert_eq!(mode_of(&rt), 0o755);

    let bound = binder.fix_perms(true).bind().unwrap();
    assert_eq!(mode_of(&rt), 0o700);
    assert_eq!(bound.endpoint(), &unix(&rt.join("wayland-0")));
    match &bound.report().attempts[0].outcome {
        Outcome::Ok { note, .. } => {
            assert!(
                note.as_deref().unwrap_or("").contains("tightened"),
                "{}",
                bound.report()
            )
        }
        _ => panic!("{}", bound.report()),
    }
}

#[test]
fn runtime_dir_owned_by_someone_else_is_not_used() {
    let name = "runtime_dir_owned_by_someone_else_is_not_used";
    if !waysock_testkit::is_root() {
        return skip(name, "needs root to chown a directory to another uid");
    }
    let scratch = Scratch::new("rt-owner");
    let mut env = env_in(scratch.path());
    make_roots(&env);
    let rt = mkdir_mode(&scratch.path().join("rt"), 0o700);
    std::os::unix::fs::chown(&rt, Some(1001), Some(1001)).unwrap();
    env.xdg_runtime_dir = Some(rt.clone().into());
    let before = snapshot(scratch.path());
    let bound = Binder::new(env)
        .strategies(vec![Strategy::RuntimeDir, Strategy::PrivateTmp])
        .bind()
        .unwrap();
    let f = failure_of(bound.report(), Strategy::RuntimeDir);
    assert!(
        f.cause.contains("belongs to uid 1001"),
        "{}",
        bound.report()
    );
    assert_eq!(bound.strategy(), Strategy::PrivateTmp);
    drop(bound);
    assert!(snapshot(&rt).is_empty());
    let after: Vec<_> = snapshot(scratch.path())
        .into_iter()
        .filter(|l| !l.starts_with(&format!("tmp/{}", private_name())))
        .collect();
    assert_eq!(before, after, "only the private dir may be new");
}

/// Plants something at the private-tmp path, then checks that both `diagnose` and `bind` refuse
/// it as a security matter, pick private-shm instead, and leave the planted thing (and whatever
/// it points to) exactly as it was.
fn assert_planted_refused(
    scratch: &Scratch,
    env: &Environment,
    watched: &Path,
    expect_cause: &str,
) -> Failure {
    let planted = env.roots.tmp.join(private_name());
    let before_tmp = snapshot(&env.roots.tmp);
    let before_watched = snapshot(watched);
    let binder = Binder::new(env.clone())
        .strategies(vec![Strategy::PrivateTmp, Strategy::PrivateShm])
        .fix_perms(true);

    let report = binder.diagnose().unwrap();
    let f = failure_of(&report, Strategy::PrivateTmp);
    assert!(f.security, "must be a security refusal\n{report}");
    assert!(
        f.cause.contains(expect_cause),
        "cause: {}\n{report}",
        f.cause
    );
    assert_eq!(
        report.choice.as_ref().map(|c| c.strategy),
        Some(Strategy::PrivateShm),
        "{report}"
    );
    assert_eq!(report.security_warnings().count(), 1, "{report}");

    let bound = binder.bind().unwrap();
    let f = failure_of(bound.report(), Strategy::PrivateTmp);
    assert!(f.security, "{}", bound.report());
    assert_eq!(bound.strategy(), Strategy::PrivateShm);
    assert!(bound
        .endpoint()
        .to_string()
        .starts_with(&format!("unix:{}", env.roots.shm.display())));
    assert_eq!(
        snapshot(&env.roots.tmp),
        before_tmp,
        "{}",
        planted.display()
    );
    assert_eq!(snapshot(watched), before_watched, "{}", watched.display());
    drop(bound);
    assert_eq!(snapshot(&env.roots.tmp), before_tmp);
    assert_eq!(snapshot(watched), before_watched);
    let _ = scratch;
    f
}

#[test]
fn private_dir_planted_as_symlink_is_refused_and_never_followed() {
    let scratch = Scratch::new("priv-symlink");
    let env = env_in(scratch.path());
    make_roots(&env);
    // The target passes every check (ours, 0700): only the symlink itself is wrong.
    let target = mkdir_mode(&scratch.path().join("attacker"), 0o700);
    std::fs::write(target.join("keep"), b"precious").unwrap();
    symlink(&target, env.roots.tmp.join(private_name())).unwrap();
    let f = assert_planted_refused(&scratch, &env, &target, "is a symlink");
    // Linux says ENOTDIR for O_NOFOLLOW|O_DIRECTORY on a symlink; the cause must still say
    // "symlink", not "a directory, not a directory".
    assert!(
        matches!(f.errno, Some(Errno::LOOP) | Some(Errno::NOTDIR)),
        "{:?}",
        f.errno
    );
    assert!(
        f.cause.contains(&target.display().to_string()),
        "{}",
        f.cause
    );
    assert!(f.remedy.contains("remove the symlink"), "{}", f.remedy);
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"precious");
}

#[test]
fn private_dir_owned_by_another_uid_is_refused_and_never_written() {
    let name = "private_dir_owned_by_another_uid_is_refused_and_never_written";
    if !waysock_testkit::is_root() {
        return skip(name, "needs root to chown a directory to another uid");
    }
    let scratch = Scratch::new("priv-owner");
    let env = env_in(scratch.path());
    make_roots(&env);
    let planted = mkdir_mode(&env.roots.tmp.join(private_name()), 0o700);
    std::fs::write(planted.join("keep"), b"x").unwrap();
    std::os::unix::fs::chown(&planted, Some(1001), Some(1001)).unwrap();
    assert_planted_refused(&scratch, &env, &planted, "belongs to uid 1001");
    assert_eq!(std::fs::metadata(&planted).unwrap().uid(), 1001);
}

#[test]
fn private_dir_with_mode_0777_is_refused_and_never_written() {
    let scratch = Scratch::new("priv-0777");
    let env = env_in(scratch.path());
    make_roots(&env);
    let planted = mkdir_mode(&env.roots.tmp.join(private_name()), 0o777);
    let f = assert_planted_refused(&scratch, &env, &planted, "mode 0777");
    // fix_perms is for the user's runtime dir only; a private dir is never tightened.
    assert_eq!(mode_of(&planted), 0o777);
    assert!(f.remedy.contains("rm -r"), "{}", f.remedy);
}

#[test]
fn private_dir_with_mode_0750_is_refused_and_never_tightened() {
    // Not world-writable, so only the `mode & 077` rule can refuse it (0777 is refused by the
    // world-writable rule first): group members could reach the sockets in it.
    let scratch = Scratch::new("priv-0750");
    let env = env_in(scratch.path());
    make_roots(&env);
    let planted = mkdir_mode(&env.roots.tmp.join(private_name()), 0o750);
    std::fs::write(planted.join("keep"), b"x").unwrap();
    let f = assert_planted_refused(&scratch, &env, &planted, "mode 0750");
    assert!(
        f.cause.contains("group or others"),
        "refused for the wrong reason: {}",
        f.cause
    );
    // fix_perms is for the user's runtime dir only; a private dir is never tightened.
    assert_eq!(mode_of(&planted), 0o750);
    assert!(f.remedy.contains("rm -r"), "{}", f.remedy);
}

#[test]
fn private_dir_planted_as_a_file_is_refused() {
    let scratch = Scratch::new("priv-file");
    let env = env_in(scratch.path());
    make_roots(&env);
    std::fs::write(env.roots.tmp.join(private_name()), b"not a dir").unwrap();
    let f = assert_planted_refused(&scratch, &env, &env.roots.tmp, "not a directory");
    assert_eq!(f.errno, Some(Errno::NOTDIR));
}

#[test]
fn parent_world_writable_without_sticky_bit_is_refused() {
    let scratch = Scratch::new("priv-nosticky");
    let env = env_in(scratch.path());
    make_roots(&env);
    set_mode(&env.roots.tmp, 0o777);
    let report = Binder::new(env.clone())
        .strategies(vec![Strategy::PrivateTmp, Strategy::PrivateShm])
        .diagnose()
        .unwrap();
    let f = failure_of(&report, Strategy::PrivateTmp);
    assert!(f.security && f.cause.contains("sticky"), "{report}");
    assert!(snapshot(&env.roots.tmp).is_empty());
}

#[test]
fn socket_path_too_long_records_enametoolong_and_moves_on() {
    let scratch = Scratch::new("rt-long");
    let mut env = env_in(scratch.path());
    make_roots(&env);
    let long = scratch.path().join("d".repeat(60)).join("e".repeat(60));
    mkdir_mode(&long, 0o700);
    set_mode(long.parent().unwrap(), 0o700);
    assert!(long.as_os_str().len() > 100);
    env.xdg_runtime_dir = Some(long.clone().into());
    let bound = Binder::new(env.clone())
        .strategies(vec![Strategy::RuntimeDir, Strategy::PrivateTmp])
        .bind()
        .unwrap();
    let f = failure_of(bound.report(), Strategy::RuntimeDir);
    assert_eq!(f.errno, Some(Errno::NAMETOOLONG), "{}", bound.report());
    assert!(f.cause.contains("sun_path"), "{}", f.cause);
    assert_eq!(bound.strategy(), Strategy::PrivateTmp);
    assert!(
        snapshot(&long).is_empty(),
        "nothing was created in the long dir"
    );
}

#[test]
fn runtime_dir_that_fits_wayland_0_but_not_the_longest_name_is_refused() {
    // sun_path holds 107 bytes: a dir of 97 bytes fits "/wayland-0" (107) but not
    // "/wayland-32" (108). The check is for the longest name we might use.
    let scratch = Scratch::new("rt-edge");
    let mut env = env_in(scratch.path());
    let base = scratch.path().as_os_str().len();
    let dir = scratch.path().join("x".repeat(97 - base - 1));
    assert_eq!(dir.as_os_str().len(), 97);
    mkdir_mode(&dir, 0o700);
    env.xdg_runtime_dir = Some(dir.clone().into());
    let err = Binder::new(env.clone())
        .strategies(vec![Strategy::RuntimeDir])
        .bind()
        .expect_err("wayland-32 would not fit");
    let f = failure_of(err.report().unwrap(), Strategy::RuntimeDir);
    assert_eq!(f.errno, Some(Errno::NAMETOOLONG));
    // With an explicit short display name it fits.
    let bound = Binder::new(env)
        .strategies(vec![Strategy::RuntimeDir])
        .display(Some("wayland-0".into()))
        .bind()
        .unwrap();
    assert_eq!(bound.endpoint(), &unix(&dir.join("wayland-0")));
}

#[test]
fn diagnose_leaves_nothing_behind() {
    let scratch = Scratch::new("diag-clean");
    let mut env = env_in(scratch.path());
    make_roots(&env);
    // /var/run -> /run, as on Debian: the second is skipped as the same directory.
    std::fs::remove_dir(&env.roots.varrun).unwrap();
    symlink(&env.roots.run, &env.roots.varrun).unwrap();
    // A missing runtime dir, a good user-run dir, a HOME without .local.
    env.xdg_runtime_dir = Some(scratch.path().join("missing-rt").into());
    mkdir_mode(&env.roots.user_run.join(uid().to_string()), 0o700);
    let home = mkdir_mode(&scratch.path().join("home"), 0o755);
    env.home = Some(home.into());
    let display = format!("wayland-{}", unique_number());
    let before = snapshot(scratch.path());

    let report = Binder::new(env)
        .display(Some(display.clone()))
        .fix_perms(true)
        .diagnose()
        .unwrap();
    assert_eq!(
        snapshot(scratch.path()),
        before,
        "diagnose created or changed something\n{report}"
    );
    // It tried every strategy (probe mode does not stop at the first success).
    let ok: Vec<Strategy> = report
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Ok { .. }))
        .filter_map(|a| a.strategy.strategy())
        .collect();
    assert_eq!(
        ok,
        [
            Strategy::RuntimeDir,
            Strategy::UserRun,
            Strategy::PrivateTmp,
            Strategy::PrivateRun,
            Strategy::PrivateShm,
            Strategy::Home,
            Strategy::Abstract
        ],
        "{report}"
    );
    let varrun = attempts_of(&report, Strategy::PrivateVarrun);
    assert!(
        matches!(&varrun[0].outcome, Outcome::Skipped { reason } if reason.contains("private-run")),
        "{report}"
    );
    assert_eq!(
        report.choice.as_ref().map(|c| c.strategy),
        Some(Strategy::RuntimeDir)
    );
}

/// A number unique to this test process and call, for display names in the shared abstract
/// namespace.
fn unique_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` on a thread of its own whose effective uid is nobody's (65534; this thread only,
/// the process stays root), and returns what it returns.
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::thread::set_thread_res_uid(None, nobody, None).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_runtime_dir_that_cannot_be_created_reports_why() {
    // mkdir failing (EACCES: the parent is root's 0755, we run as another uid) is reported as
    // that failure of the `create` step, not as the directory missing afterwards.
    let name = "a_runtime_dir_that_cannot_be_created_reports_why";
    if !waysock_testkit::is_root() {
        return skip(name, "needs root to run one thread as another uid");
    }
    let scratch = Scratch::new("rt-eacces");
    set_mode(scratch.path(), 0o755);
    let rt = scratch.path().join("rt");
    let base = scratch.path().to_path_buf();
    let failure = as_nobody(move || {
        let mut env = env_in(&base);
        env.xdg_runtime_dir = Some(rt.into());
        let report = Binder::new(env)
            .strategies(vec![Strategy::RuntimeDir])
            .diagnose()
            .map_or_else(|e| e.report().cloned(), Some)
            .expect("a report");
        failure_of(&report, Strategy::RuntimeDir)
    });
    assert_eq!(failure.errno, Some(Errno::ACCES), "{failure:?}");
    assert!(!scratch.path().join("rt").exists());
}

#[test]
fn a_missing_ancestor_that_cannot_be_created_reports_why() {
    // The home strategy creates `$HOME/.local` when missing; mkdir failing there (EACCES: the
    // HOME is root's 0755 and we run as another uid) is reported as that failure, not as the
    // directory missing afterwards.
    let name = "a_missing_ancestor_that_cannot_be_created_reports_why";
    if !waysock_testkit::is_root() {
        return skip(name, "needs root to run one thread as another uid");
    }
    let scratch = Scratch::new("rt-anc-eacces");
    set_mode(scratch.path(), 0o755);
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).unwrap();
    set_mode(&home, 0o755);
    let base = scratch.path().to_path_buf();
    let h = home.clone();
    let failure = as_nobody(move || {
        let mut env = env_in(&base);
        env.home = Some(h.into());
        let report = Binder::new(env)
            .strategies(vec![Strategy::Home])
            .diagnose()
            .map_or_else(|e| e.report().cloned(), Some)
            .expect("a report");
        failure_of(&report, Strategy::Home)
    });
    assert_eq!(failure.errno, Some(Errno::ACCES), "{failure:?}");
    assert!(!home.join(".local").exists());
}
