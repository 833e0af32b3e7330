//! The preload shim end to end (issue 4, SPEC §7), made for real (TESTING.md):
//! - a stock weston 10 under `waysock run` with `/tmp`, `/run`, `/dev/shm` and `$HOME` all
//!   read-only and `XDG_RUNTIME_DIR` unset comes up on `abstract:wayland-0-1`, and
//!   `waysock exec` clients (wayland-info, weston-simple-shm) work against it;
//! - another uid is refused on that display (and the refusal logged) unless `--allow-uid`;
//! - loaded without `WAYSOCK_PRELOAD_DIR`, the shim changes nothing for weston in a normal
//!   runtime dir;
//! - a small C program (compiled at test time) exercises every hook and the log format;
//! - nothing on the data path is interposed; static and setuid programs are refused by `run`.
//!
//! Every scenario runs in its own [`Sandbox`] with private mount, network (abstract sockets are
//! per network namespace) and pid namespaces (a compositor left behind dies with the sandbox).
//! Logs go to files in the test's scratch dir under `/var/tmp` and are dumped on failure.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use waysock_testkit::{
    built_shim, program, run_command, set_mode, skip, test_user, Needs, Run, Sandbox, Scratch, SHIM,
};

const BIN: &str = env!("CARGO_BIN_EXE_waysock");
const LIMIT: Duration = Duration::from_secs(90);
/// The python the test user can run (a pyenv shim under `/root` is not reachable for it).
const PYTHON: &str = "/usr/bin/python3";
const HOOKS_C: &str = include_str!("preload/hooks.c");
const WL_SYNC_PY: &str = include_str!("preload/wl_sync.py");
/// `EADDRINUSE` on Linux, as the hooks program prints it.
const EADDRINUSE: &str = "98";

/// Shell functions shared by the scenario scripts. `$W` is waysock, `$L` the log dir.
/// `up NAME ARGS...` starts `waysock run ARGS -- weston` in the background (stdout/stderr to
/// `$L/NAME.out`/`$L/NAME.err`) and waits at most 20 s for "is up on"; `down` stops it with
/// SIGTERM (SIGKILL after 5 s) and records its status in `$L/NAME.rc`.
const PRELUDE: &str = r#"
up() {
  name=$1; shift
  "$W" run "$@" -- weston --backend=headless-backend.so --idle-time=0 --no-config \
    >"$L/$name.out" 2>"$L/$name.err" &
  RUN=$!
  i=0
  until grep -q 'is up on' "$L/$name.err"; do
    i=$((i+1))
    if [ $i -gt 200 ] || grep -q 'exited' "$L/$name.err"; then
      echo "not up after $i polls" >"$L/up-failed"
      return 1
    fi
    sleep 0.1
  done
}
down() {
  kill -TERM $RUN 2>/dev/null || true
  i=0
  while [ -d /proc/$RUN ] && ! grep -q '^State:.*Z' /proc/$RUN/status 2>/dev/null && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i+1))
  done
  kill -KILL $RUN 2>/dev/null || true
  rc=0; wait $RUN || rc=$?
  echo $rc >"$L/$name.rc"
}
as_wstest() { setpriv --reuid=wstest --regid=wstest --init-groups "$@"; }
"#;

/// The shim this build made (see [`built_shim`]).
fn shim() -> Result<PathBuf, String> {
    built_shim(Path::new(BIN))
        .ok_or_else(|| format!("{SHIM} not built next to {BIN} or in its deps/"))
}

/// What a scenario needs besides namespaces.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Weston,
    Python,
    TestUser,
    Gcc,
}

/// A scenario's world: a scratch dir (0755 so the test user can reach `bin/`), with
/// - `bin/`: copies of waysock and the shim (so `run`/`exec` find the shim next to the binary
///   and the test user can execute both), the python client, compiled helpers;
/// - `logs/`: everything the scripts write;
/// - `home/`: `HOME`, made a read-only tmpfs where the scenario wants that.
struct World {
    scratch: Scratch,
    sandbox: Sandbox,
}

impl World {
    fn bin(&self) -> PathBuf {
        self.scratch.path().join("bin")
    }

    fn logs(&self) -> PathBuf {
        self.scratch.path().join("logs")
    }

    fn home(&self) -> PathBuf {
        self.scratch.path().join("home")
    }

    fn with(mut self, f: impl FnOnce(Sandbox) -> Sandbox) -> Self {
        self.sandbox = f(self.sandbox);
        self
    }

    /// Runs `script` (after [`PRELUDE`]) as root in the sandbox, from the read-only-or-not
    /// `home/` as working directory.
    fn script(&self, script: &str) -> Run {
        let full = format!("{PRELUDE}\n{script}");
        let mut cmd = self
            .sandbox
            .clone()
            .env("W", self.bin().join("waysock"))
            .env("B", self.bin())
            .env("L", self.logs())
            .command("sh", &["-c", &full]);
        cmd.current_dir(self.home());
        run_command(cmd, LIMIT)
    }

    /// A log file's text ("" if the script never wrote it).
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(name)).unwrap_or_default()
    }

    /// A `*.rc` file as a number.
    fn rc(&self, name: &str) -> Option<i32> {
        self.log(&format!("{name}.rc")).trim().parse().ok()
    }

    /// The run's context and every log, for a failure message.
    fn context(&self, run: &Run) -> String {
        let mut s = run.context();
        let mut names: Vec<_> = std::fs::read_dir(self.logs())
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        names.sort();
        for n in names {
            let n = n.to_string_lossy();
            s.push_str(&format!("\n--- log {n}:\n{}", self.log(&n)));
        }
        s
    }
}

/// Probes for what `test` needs and builds its world; `None` after reporting the skip.
fn world(test: &str, needs: &[Need]) -> Option<World> {
    let shim = shim();
    let mut probe = Needs::new(test).all_namespaces().probe(shim.clone());
    for need in needs {
        probe = match need {
            Need::Weston => probe.programs(&["weston", "wayland-info", "weston-simple-shm"]),
            Need::Python => probe.file(Path::new(PYTHON)),
            Need::TestUser => probe.programs(&["setpriv"]).test_user(),
            Need::Gcc => probe.programs(&["gcc"]),
        };
    }
    if !probe.met() {
        return None;
    }
    let scratch = Scratch::new("preload");
    set_mode(scratch.path(), 0o755);
    for d in ["bin", "logs", "home"] {
        std::fs::create_dir(scratch.path().join(d)).unwrap();
        set_mode(&scratch.path().join(d), 0o755);
    }
    let bin = scratch.path().join("bin");
    std::fs::copy(BIN, bin.join("waysock")).unwrap();
    std::fs::copy(shim.unwrap(), bin.join(SHIM)).unwrap();
    std::fs::write(bin.join("wl_sync.py"), WL_SYNC_PY).unwrap();
    for f in ["waysock", SHIM, "wl_sync.py"] {
        set_mode(&bin.join(f), 0o755);
    }
    let sandbox = Sandbox::new()
        .private_network()
        .private_pids()
        .env_clear()
        .env("HOME", scratch.path().join("home"));
    Some(World { scratch, sandbox })
}

/// Everything read-only: `/tmp`, `/run`, `/dev/shm` and `HOME`; `XDG_RUNTIME_DIR` unset (the
/// sandbox starts from an empty environment).
fn read_only_everything(w: World) -> World {
    let home = w.home().display().to_string();
    w.with(|s| {
        s.read_only("/tmp")
            .read_only("/run")
            .read_only("/dev/shm")
            .read_only(&home)
            .env_remove("XDG_RUNTIME_DIR")
    })
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The python client's verdict: the `RESULT ...` line it printed.
fn verdict(w: &World, run: &Run, name: &str) -> String {
    let out = w.log(name);
    out.lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("{name}: no RESULT line\n{}", w.context(run)))
        .to_string()
}

#[test]
fn stock_weston_with_everything_read_only_runs_on_abstract() {
    let test = "preload::stock_weston_with_everything_read_only_runs_on_abstract";
    let Some(w) = world(test, &[Need::Weston]) else {
        return;
    };
    let w = read_only_everything(w);
    let run = w.script(
        r#"
for d in /tmp /run /dev/shm "$HOME"; do
  if touch "$d/.waysock-probe" 2>/dev/null; then echo "$d" >>"$L/writable"; fi
done
up run || exit 0
"$W" exec -- wayland-info >"$L/info.out" 2>"$L/info.err"; echo $? >"$L/info.rc"
"$W" exec -- timeout 3 weston-simple-shm >"$L/shm.out" 2>"$L/shm.err"; echo $? >"$L/shm.rc"
# A shell that starts two clients: each connects on its own (no inherited WAYLAND_SOCKET that
# the second would take again).
"$W" exec -- sh -c 'wayland-info >/dev/null && wayland-info' >"$L/two.out" 2>"$L/two.err"; echo $? >"$L/two.rc"
"$W" ls >"$L/ls.out" 2>"$L/ls.err"; echo $? >"$L/ls.rc"
down
"#,
    );
    let ctx = || w.context(&run);
    assert!(run.output.status.success(), "script failed\n{}", ctx());
    assert_eq!(
        w.log("writable"),
        "",
        "the sandbox is not read-only\n{}",
        ctx()
    );
    let abs = format!("abstract:wayland-{}-1", uid());
    assert!(
        w.log("run.err").contains(&format!("is up on {abs} ")),
        "weston did not come up on {abs}\n{}",
        ctx()
    );
    assert!(
        w.log("run.err").contains("through the preload shim"),
        "{}",
        ctx()
    );
    assert!(
        !w.log("run.err").contains("REFUSED"),
        "our own uid was refused\n{}",
        ctx()
    );
    assert_eq!(w.rc("info"), Some(0), "wayland-info failed\n{}", ctx());
    assert!(
        w.log("info.out").contains("wl_compositor"),
        "wayland-info does not list wl_compositor\n{}",
        ctx()
    );
    assert_eq!(
        w.rc("shm"),
        Some(124),
        "weston-simple-shm did not keep drawing for 3 s\n{}",
        ctx()
    );
    assert_eq!(
        w.rc("two"),
        Some(0),
        "a second client started by the same shell failed\n{}",
        ctx()
    );
    assert!(w.log("two.out").contains("wl_compositor"), "{}", ctx());
    assert_eq!(w.rc("ls"), Some(0), "waysock ls failed\n{}", ctx());
    assert!(
        w.log("ls.out")
            .lines()
            .any(|l| l.starts_with("wayland-1") && l.contains(&abs)),
        "waysock ls does not show {abs}\n{}",
        ctx()
    );
    // Nothing tried to write to the read-only filesystems (a lock file or socket written
    // there would have failed with EROFS and been reported).
    for log in ["run.err", "run.out", "info.err", "shm.err", "ls.err"] {
        let text = w.log(log);
        assert!(
            !text.contains("Read-only file system") && !text.contains("EROFS"),
            "{log} reports a write to a read-only filesystem\n{}",
            ctx()
        );
    }
    // `down` sends SIGTERM to waysock run, which forwards it; weston ends cleanly on SIGTERM
    // (status 0) and run passes that status on. 143 would mean run died of the signal itself
    // (not forwarded), 137 that nothing ended within 5 s.
    assert_eq!(
        w.rc("run"),
        Some(0),
        "waysock run did not pass on weston's clean exit\n{}",
        ctx()
    );
}

#[test]
fn another_uid_is_refused_and_logged() {
    let test = "preload::another_uid_is_refused_and_logged";
    let Some(w) = world(test, &[Need::Weston, Need::Python, Need::TestUser]) else {
        return;
    };
    let (other, _) = test_user().unwrap();
    let w = read_only_everything(w);
    let name = format!("wayland-{}-1", uid());
    let run = w.script(&format!(
        r#"
up run || exit 0
as_wstest {PYTHON} "$B/wl_sync.py" {name} >"$L/other.out" 2>&1
# waysock exec as the other user looks for its own displays, and refuses root's when told.
HOME=/ as_wstest "$W" exec -- wayland-info >"$L/exec.out" 2>"$L/exec.err"; echo $? >"$L/exec.rc"
HOME=/ as_wstest "$W" exec --endpoint abstract:{name} -- wayland-info \
  >"$L/exec-endpoint.out" 2>"$L/exec-endpoint.err"; echo $? >"$L/exec-endpoint.rc"
# Our own uid still gets through after the refusals.
{PYTHON} "$B/wl_sync.py" {name} >"$L/own.out" 2>&1
down
"#
    ));
    let ctx = || w.context(&run);
    assert!(run.output.status.success(), "script failed\n{}", ctx());
    assert!(w.log("run.err").contains("is up on"), "{}", ctx());
    let v = verdict(&w, &run, "other.out");
    assert!(
        v.starts_with("RESULT eof")
            || v.starts_with("RESULT error")
            || v.starts_with("RESULT send-failed"),
        "uid {other} was not cut off without a reply: {v}\n{}",
        ctx()
    );
    let refusal = w
        .log("run.err")
        .lines()
        .find(|l| l.contains("REFUSED"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no REFUSED line in weston's stderr\n{}", ctx()));
    assert!(
        refusal.starts_with("[waysock] accept(") && refusal.contains(&format!("peer uid {other},")),
        "refusal line does not name uid {other}: {refusal}\n{}",
        ctx()
    );
    for exec in ["exec", "exec-endpoint"] {
        assert_ne!(
            w.rc(exec),
            Some(0),
            "{exec} as uid {other} succeeded\n{}",
            ctx()
        );
        assert!(
            !w.log(&format!("{exec}.out")).contains("wl_compositor"),
            "{exec} as uid {other} reached root's display\n{}",
            ctx()
        );
    }
    assert_eq!(
        verdict(&w, &run, "own.out"),
        "RESULT done",
        "our own uid was not served after the refusals\n{}",
        ctx()
    );
}

#[test]
fn allow_uid_admits_that_uid_only() {
    let test = "preload::allow_uid_admits_that_uid_only";
    let Some(w) = world(test, &[Need::Weston, Need::Python, Need::TestUser]) else {
        return;
    };
    let (other, _) = test_user().unwrap();
    let w = read_only_everything(w);
    let name = format!("wayland-{}-1", uid());
    let run = w.script(&format!(
        r#"
up run --allow-uid {other} || exit 0
as_wstest {PYTHON} "$B/wl_sync.py" {name} >"$L/allowed.out" 2>&1
setpriv --reuid=65534 --regid=65534 --clear-groups {PYTHON} "$B/wl_sync.py" {name} \
  >"$L/nobody.out" 2>&1
down
"#
    ));
    let ctx = || w.context(&run);
    assert!(run.output.status.success(), "script failed\n{}", ctx());
    assert!(w.log("run.err").contains("is up on"), "{}", ctx());
    assert_eq!(
        verdict(&w, &run, "allowed.out"),
        "RESULT done",
        "--allow-uid {other} did not admit uid {other}\n{}",
        ctx()
    );
    let v = verdict(&w, &run, "nobody.out");
    assert_ne!(v, "RESULT done", "uid 65534 was admitted too\n{}", ctx());
    assert!(
        w.log("run.err").contains("peer uid 65534,"),
        "the refusal of uid 65534 was not logged\n{}",
        ctx()
    );
}

#[test]
fn pass_through_changes_nothing_for_weston_in_a_normal_runtime_dir() {
    let test = "preload::pass_through_changes_nothing_for_weston_in_a_normal_runtime_dir";
    let Some(w) = world(test, &[Need::Weston]) else {
        return;
    };
    let w = w.with(|s| s.tmpfs("/tmp").tmpfs("/run").tmpfs("/dev/shm"));
    let shim = w.bin().join(SHIM);
    let mut results = Vec::new();
    let mut context = String::new();
    for (tag, preload) in [("plain", None), ("shim", Some(&shim))] {
        let script = format!(
            r#"
T={tag}
mkdir -p -m 755 /run/user && mkdir -m 700 /run/user/0
export XDG_RUNTIME_DIR=/run/user/0 WAYSOCK_LOG=debug
unset WAYSOCK_PRELOAD_DIR
{export}
weston --backend=headless-backend.so --idle-time=0 --no-config >"$L/$T.weston" 2>&1 &
WP=$!
i=0
until WAYLAND_DISPLAY=wayland-1 wayland-info >/dev/null 2>&1; do
  i=$((i+1))
  if [ $i -gt 200 ]; then echo "weston not up" >"$L/$T.up-failed"; break; fi
  sleep 0.1
done
grep -c libwaysock_preload /proc/$WP/maps >"$L/$T.maps" || true
(cd /run/user/0 && stat -c '%n %F %a %u' *) >"$L/$T.during" 2>&1
WAYLAND_DISPLAY=wayland-1 wayland-info >"$L/$T.info.out" 2>"$L/$T.info.err"
echo $? >"$L/$T.info.rc"
WAYLAND_DISPLAY=wayland-1 timeout 3 weston-simple-shm >"$L/$T.shm.out" 2>"$L/$T.shm.err"
echo $? >"$L/$T.shm.rc"
kill -TERM $WP; wait $WP; echo $? >"$L/$T.weston.rc"
ls -A /run/user/0 >"$L/$T.after"
"#,
            export = match preload {
                Some(p) => format!("export LD_PRELOAD={}", p.display()),
                None => "unset LD_PRELOAD".to_string(),
            },
        );
        let run = w.script(&script);
        let ctx = w.context(&run);
        context = ctx.clone();
        assert!(run.output.status.success(), "{tag}: script failed\n{ctx}");
        assert_eq!(w.log(&format!("{tag}.up-failed")), "", "{tag}\n{ctx}");
        let maps: u32 = w.log(&format!("{tag}.maps")).trim().parse().unwrap_or(0);
        assert_eq!(
            maps > 0,
            preload.is_some(),
            "{tag}: the shim is {}mapped into weston\n{ctx}",
            if maps > 0 { "" } else { "not " }
        );
        assert_eq!(w.rc(&format!("{tag}.info")), Some(0), "{tag}\n{ctx}");
        assert!(
            w.log(&format!("{tag}.info.out")).contains("wl_compositor"),
            "{tag}: no wl_compositor\n{ctx}"
        );
        assert_eq!(w.rc(&format!("{tag}.shm")), Some(124), "{tag}\n{ctx}");
        let during = w.log(&format!("{tag}.during"));
        assert!(
            during.contains("wayland-1 socket ") && during.contains("wayland-1.lock regular"),
            "{tag}: socket and lock file are not on disk as usual\n{ctx}"
        );
        for log in ["weston", "info.err", "shm.err"] {
            assert!(
                !w.log(&format!("{tag}.{log}")).contains("[waysock]"),
                "{tag}: the shim logged in pass-through mode\n{ctx}"
            );
        }
        results.push((
            during,
            w.log(&format!("{tag}.after")),
            w.rc(&format!("{tag}.weston")),
        ));
    }
    assert_eq!(
        results[0], results[1],
        "weston behaved differently with the shim preloaded (listing during, after, status)\n{context}"
    );
}

/// Compiles `source` with gcc into `out`; `Err` carries gcc's complaint.
fn gcc(source: &Path, out: &Path, extra: &[&str]) -> Result<(), String> {
    let o = Command::new("gcc")
        .args(["-O0", "-U_FORTIFY_SOURCE", "-Wall", "-o"])
        .arg(out)
        .arg(source)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "gcc {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// `key a=1 b=2` lines of the hooks program, as (key, field) → value.
fn field<'a>(out: &'a str, key: &str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split(' ').next() == Some(key))
        .and_then(|l| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        })
        .unwrap_or_else(|| panic!("no {key} {name}= in the hooks output:\n{out}"))
}

#[test]
fn each_hook_in_a_target_program() {
    let test = "preload::each_hook_in_a_target_program";
    let Some(w) = world(test, &[Need::Gcc]) else {
        return;
    };
    let src = w.bin().join("hooks.c");
    std::fs::write(&src, HOOKS_C).unwrap();
    if let Err(why) = gcc(&src, &w.bin().join("hooks"), &[]) {
        panic!("{why}");
    }
    let ro = w.scratch.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    for d in ["w-debug", "w-quiet"] {
        std::fs::create_dir(w.scratch.path().join(d)).unwrap();
    }
    let dir = ro.display().to_string();
    let w = w.with(|s| s.read_only(&dir));
    let run = w.script(&format!(
        r#"
S="$B/{SHIM}"
touch {dir}/probe 2>/dev/null && echo writable >"$L/ro-check"
WAYSOCK_PRELOAD_DIR={dir} WAYSOCK_LOG=debug LD_PRELOAD="$S" "$B/hooks" {dir} "$B/../w-debug" \
  >"$L/debug.out" 2>"$L/debug.err"; echo $? >"$L/debug.rc"
WAYSOCK_PRELOAD_DIR={dir} LD_PRELOAD="$S" "$B/hooks" {dir} "$B/../w-quiet" \
  >"$L/quiet.out" 2>"$L/quiet.err"; echo $? >"$L/quiet.rc"
"#
    ));
    let ctx = || w.context(&run);
    assert!(run.output.status.success(), "script failed\n{}", ctx());
    assert_eq!(w.log("ro-check"), "", "{dir} is writable\n{}", ctx());
    let uid = uid();
    let abs = format!("wayland-{uid}-5");
    for mode in ["debug", "quiet"] {
        assert_eq!(w.rc(mode), Some(0), "{mode}: hooks failed\n{}", ctx());
        let out = w.log(&format!("{mode}.out"));
        let f = |k: &str, n: &str| field(&out, k, n).to_string();
        for call in ["open64", "open", "openat", "openat64"] {
            assert!(
                f(call, "link").starts_with("/memfd:waysock-lock"),
                "{mode}: {call} of DIR/*.lock is not a memfd\n{}",
                ctx()
            );
            assert_eq!(
                f(call, "flock"),
                "0",
                "{mode}: flock on {call}'s fd\n{}",
                ctx()
            );
        }
        assert_eq!(f("open64", "cloexec"), "1", "O_CLOEXEC → MFD_CLOEXEC");
        assert_eq!(f("open", "cloexec"), "0", "no O_CLOEXEC → no MFD_CLOEXEC");
        let wdir = w.scratch.path().join(format!("w-{mode}"));
        assert_eq!(
            f("open-other", "link"),
            wdir.join("plain").display().to_string(),
            "{mode}: an unrelated open was touched\n{}",
            ctx()
        );
        assert_eq!(f("bind", "ret"), "0", "{mode}\n{}", ctx());
        assert_eq!(f("bind-name", "abstract"), "1", "{mode}\n{}", ctx());
        assert_eq!(f("bind-name", "name"), abs, "{mode}\n{}", ctx());
        assert_eq!(f("listen", "ret"), "0", "{mode}\n{}", ctx());
        assert_eq!(
            (f("bind2", "ret"), f("bind2", "errno")),
            ("-1".to_string(), EADDRINUSE.to_string()),
            "{mode}: a second bind of the mapped path must fail EADDRINUSE\n{}",
            ctx()
        );
        for c in ["connect", "connect2"] {
            assert_eq!(f(c, "ret"), "0", "{mode}: {c}\n{}", ctx());
        }
        for a in ["accept", "accept4"] {
            assert_ne!(f(a, "ret"), "-1", "{mode}: {a} of our own uid\n{}", ctx());
        }
        assert_eq!(f("data", "ok"), "1", "{mode}: data path\n{}", ctx());
        assert_eq!(f("unlink-mapped", "ret"), "0", "{mode}\n{}", ctx());
        assert_eq!(f("unlink-other", "ret"), "0", "{mode}\n{}", ctx());
        assert_eq!(
            f("unlink-other", "exists_after"),
            "0",
            "{mode}: unlink of an unrelated file did not remove it\n{}",
            ctx()
        );
        assert_eq!(f("bind-other", "ret"), "0", "{mode}\n{}", ctx());
        assert_eq!(f("bind-other", "socket_file"), "1", "{mode}\n{}", ctx());
        assert!(
            std::fs::symlink_metadata(wdir.join("sock")).is_ok_and(|m| m.file_type().is_socket()),
            "{mode}: no real socket file outside DIR\n{}",
            ctx()
        );
        // The mapped listener's number, closed and reused for a TCP listener, is not filtered.
        assert_eq!(
            f("reuse", "accept"),
            "0",
            "{mode}: a reused fd number is still peer-filtered\n{}",
            ctx()
        );
    }
    // One line per interposed call on a mapped path, nothing for the rest.
    let out = w.log("debug.out");
    let f = |k: &str, n: &str| field(&out, k, n).to_string();
    let expected = vec![
        format!(
            "[waysock] open64({dir}/wayland-11.lock) -> memfd = {}",
            f("open64", "ret")
        ),
        format!(
            "[waysock] open({dir}/wayland-12.lock) -> memfd = {}",
            f("open", "ret")
        ),
        format!(
            "[waysock] openat({dir}/wayland-13.lock) -> memfd = {}",
            f("openat", "ret")
        ),
        format!(
            "[waysock] openat64({dir}/wayland-14.lock) -> memfd = {}",
            f("openat64", "ret")
        ),
        format!(
            "[waysock] bind(fd={}, unix:{dir}/wayland-5 -> abstract:{abs}) = 0",
            f("bind", "fd")
        ),
        format!(
            "[waysock] bind(fd={}, unix:{dir}/wayland-5 -> abstract:{abs}) = -1 errno {}",
            f("bind2", "fd"),
            EADDRINUSE
        ),
        format!(
            "[waysock] connect(fd={}, unix:{dir}/wayland-5 -> abstract:{abs}) = 0",
            f("connect", "fd")
        ),
        format!(
            "[waysock] connect(fd={}, unix:{dir}/wayland-5 -> abstract:{abs}) = 0",
            f("connect2", "fd")
        ),
        format!(
            "[waysock] accept(fd={}) = {}, peer uid {uid}: ok",
            f("accept", "listener"),
            f("accept", "ret")
        ),
        format!(
            "[waysock] accept(fd={}) = {}, peer uid {uid}: ok",
            f("accept4", "listener"),
            f("accept4", "ret")
        ),
        format!("[waysock] unlink({dir}/wayland-5) = 0 (mapped: nothing to remove)"),
    ];
    let got: Vec<String> = w.log("debug.err").lines().map(str::to_string).collect();
    assert_eq!(got, expected, "the shim's debug log\n{}", ctx());
    assert_eq!(
        w.log("quiet.err"),
        "",
        "the shim printed without WAYSOCK_LOG\n{}",
        ctx()
    );
}

#[test]
fn nothing_on_the_data_path_is_interposed() {
    let test = "preload::nothing_on_the_data_path_is_interposed";
    let shim = match (shim(), program("nm")) {
        (Ok(s), Ok(_)) => s,
        (Err(why), _) | (_, Err(why)) => {
            skip(test, &why);
            return;
        }
    };
    let mut cmd = Command::new("nm");
    cmd.args(["-D", "--defined-only"]).arg(&shim);
    let run = run_command(cmd, Duration::from_secs(30));
    run.assert_code(0);
    let defined: Vec<String> = run
        .stdout()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect();
    for data in [
        "sendmsg", "recvmsg", "read", "write", "send", "recv", "sendto", "recvfrom", "readv",
        "writev",
    ] {
        assert!(
            !defined.iter().any(|d| d == data),
            "the shim defines {data}: the data path must not be interposed\n{}",
            run.context()
        );
    }
    for hook in [
        "bind", "connect", "open", "open64", "openat", "openat64", "unlink", "accept", "accept4",
    ] {
        assert!(
            defined.iter().any(|d| d == hook),
            "the shim does not define {hook}\n{}",
            run.context()
        );
    }
}

/// `waysock run --strategy abstract -- PROGRAM` in a sandbox that has no compositor to start.
fn run_abstract(w: &World, program: &Path) -> Run {
    let mut cmd = w.sandbox.clone().command(
        w.bin().join("waysock"),
        &["run", "--strategy", "abstract", "--"],
    );
    cmd.arg(program).current_dir(w.home());
    run_command(cmd, LIMIT)
}

#[test]
fn run_refuses_a_static_binary() {
    let test = "preload::run_refuses_a_static_binary";
    let Some(w) = world(test, &[Need::Gcc]) else {
        return;
    };
    let src = w.bin().join("static.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = w.bin().join("static");
    if let Err(why) = gcc(&src, &exe, &["-static"]) {
        skip(
            test,
            &format!("cannot link statically (libc6-dev's libc.a?): {why}"),
        );
        return;
    }
    let run = run_abstract(&w, &exe);
    run.assert_code(1);
    assert!(
        run.stderr().contains("statically linked") && run.stderr().contains("LD_PRELOAD"),
        "no clear reason for the static binary\n{}",
        run.context()
    );
}

#[test]
fn run_refuses_a_setuid_binary() {
    let test = "preload::run_refuses_a_setuid_binary";
    let Some(w) = world(test, &[]) else {
        return;
    };
    let exe = w.bin().join("true-suid");
    std::fs::copy("/bin/true", &exe).unwrap();
    set_mode(&exe, 0o4755);
    let run = run_abstract(&w, &exe);
    run.assert_code(1);
    assert!(
        run.stderr().contains("setuid") && run.stderr().contains("LD_PRELOAD"),
        "no clear reason for the setuid binary\n{}",
        run.context()
    );
}
