//! `waysock doctor` in the environments it exists for, made for real in mount namespaces
//! (TESTING.md): read-only `/tmp` and `/run`, everything read-only, another user's runtime dir,
//! a runtime dir too long for `sun_path`, a symlink planted at the private dir; plus exit codes,
//! a closed stdout, socket activation, and the stock-compositor prediction checked against a
//! real weston.
//!
//! Every sandbox mounts its own tmpfs over `/tmp`, `/run` and `/dev/shm` (so no test sees
//! another's files) and a scratch tmpfs for everything else; `HOME` points into the scratch.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use waysock_testkit::{
    program, relocated, run_command, skip, test_user, Needs, Out, Run, Sandbox, Scratch, Script,
    Stage, TEST_USER,
};

/// The binary under test, copied where no sandbox mount hides it (see `relocated`).
fn bin() -> String {
    waysock_testkit::relocated(env!("CARGO_BIN_EXE_waysock"))
        .display()
        .to_string()
}
const LIMIT: Duration = Duration::from_secs(60);

/// A prepared namespace: a [`Stage`] with `HOME=$M/home`, and the binary under test as `$W`.
struct Ns {
    stage: Stage,
    script: Script,
}

/// Probes for mount namespaces (and the test user when `user` is set); `None` after reporting
/// the skip. With `user`, the script runs as the test user on its own copy of the binary
/// (the build dir may not be reachable for another user).
fn ns(test: &str, user: bool) -> Option<Ns> {
    let mut needs = Needs::new(test).namespaces();
    if user {
        needs = needs.test_user();
    }
    if !needs.met() {
        return None;
    }
    let mut stage = Stage::new("cli").home();
    let mut bin_path = bin();
    if user {
        stage = stage
            .install(relocated(env!("CARGO_BIN_EXE_waysock")))
            .owned_by(TEST_USER)
            .with(|s| s.as_user(TEST_USER));
        bin_path = format!("{}/bin/waysock", stage.m());
    }
    let stage = stage.with(|s| s.env("W", bin_path));
    let script = Script::new(test).limit(LIMIT);
    Some(Ns { stage, script })
}

impl Ns {
    /// The scratch tmpfs mount point (inside the namespace).
    fn m(&self) -> &str {
        self.stage.m()
    }

    fn with(mut self, f: impl FnOnce(Sandbox) -> Sandbox) -> Self {
        self.stage = self.stage.with(f);
        self
    }

    /// Runs a shell script; `$W` is the waysock binary.
    fn script(&self, script: &str) -> Out {
        self.script.run(self.stage.sandbox(), script)
    }
}

fn json(run: &Run, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed invalid JSON ({e})\n{}",
            run.context()
        )
    })
}

/// The attempts of strategy `s`.
fn attempts<'a>(v: &'a Value, s: &str) -> Vec<&'a Value> {
    v["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter(|a| a["strategy"] == s)
        .collect()
}

/// The single failed attempt of strategy `s`.
fn failed<'a>(run: &Run, v: &'a Value, s: &str) -> &'a Value {
    let f: Vec<_> = attempts(v, s)
        .into_iter()
        .filter(|a| a["outcome"] == "failed")
        .collect();
    assert_eq!(f.len(), 1, "expected one failure of {s}\n{}", run.context());
    f[0]
}

fn uid_of_user() -> u32 {
    test_user().map(|(u, _)| u).unwrap_or(1001)
}

fn euid() -> u32 {
    // Root in every sandbox test (namespaces() demands it).
    0
}

// ---- the issue's "done when" -------------------------------------------------------------

#[test]
fn read_only_tmp_and_run_choose_private_shm_and_leave_nothing() {
    let name = "read_only_tmp_and_run_choose_private_shm_and_leave_nothing";
    let Some(ns) = ns(name, false) else { return };
    let ns = ns.with(|s| s.read_only("/tmp").read_only("/run").tmpfs("/dev/shm"));
    let out = ns.script(
        r#"echo @@json; "$W" doctor --json; rc=$?; echo @@rc; echo $rc
           echo @@shm; find /dev/shm
           echo @@human; "$W" doctor; rc=$?; echo @@rc2; echo $rc
           echo @@shm2; find /dev/shm"#,
    );
    let run = out.run();
    assert_eq!(out.sec("rc"), "0", "{}", run.context());
    let v = out.json("json");
    assert_eq!(v["uid"], euid());
    let tmp = failed(run, &v, "private-tmp");
    assert_eq!(tmp["errno"], "EROFS", "{}", run.context());
    assert_eq!(tmp["syscall"], "mkdir");
    assert!(tmp["cause"].as_str().unwrap().contains("read-only"));
    assert_eq!(failed(run, &v, "private-run")["errno"], "EROFS");
    assert_eq!(v["choice"]["strategy"], "private-shm", "{}", run.context());
    assert_eq!(
        v["choice"]["endpoint"],
        format!("unix:/dev/shm/waysock-{}/wayland-0", euid())
    );
    // Probe mode: no socket, no lock, no directory left in /dev/shm.
    for shm in ["shm", "shm2"] {
        let listing = out.sec(shm);
        assert_eq!(listing.trim(), "/dev/shm", "{shm}: {}", run.context());
    }
    assert_eq!(out.sec("rc2"), "0");
    let human = out.sec("human");
    assert!(human.contains("read-only"), "{human}");
    assert!(human.contains("EROFS"), "{human}");
    assert!(human.contains("fix:"), "{human}");
    assert!(human.contains("--tmpfs /tmp"), "{human}");
    assert!(
        human.contains(&format!(
            "waysock would use unix:/dev/shm/waysock-{}/wayland-0 (private-shm)",
            euid()
        )),
        "{human}"
    );
}

#[test]
fn everything_read_only_chooses_abstract() {
    let name = "everything_read_only_chooses_abstract";
    let Some(ns) = ns(name, false) else { return };
    let home = format!("{}/home", ns.m());
    let ns = ns.with(|s| {
        s.read_only("/tmp")
            .read_only("/run")
            .read_only("/dev/shm")
            .read_only(&home)
    });
    let out = ns.script(r#"echo @@json; "$W" doctor --json; rc=$?; echo @@rc; echo $rc"#);
    let run = out.run();
    assert_eq!(out.sec("rc"), "0", "{}", run.context());
    let v = out.json("json");
    for s in ["private-tmp", "private-run", "private-shm", "home"] {
        assert_eq!(
            failed(run, &v, s)["errno"],
            "EROFS",
            "{s}\n{}",
            run.context()
        );
    }
    assert!(
        attempts(&v, "private-varrun")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("same directory as private-run"),
        "{}",
        run.context()
    );
    assert_eq!(v["choice"]["strategy"], "abstract", "{}", run.context());
    // Another test may probe wayland-0-0 at the same instant: the number may differ.
    let endpoint = v["choice"]["endpoint"].as_str().unwrap();
    assert!(
        endpoint.starts_with(&format!("abstract:wayland-{}-", euid())),
        "{endpoint}"
    );
}

#[test]
fn runtime_dir_of_another_user_falls_back() {
    let name = "runtime_dir_of_another_user_falls_back";
    let Some(ns) = ns(name, true) else { return };
    let rt = format!("{}/rt", ns.m());
    let ns = ns.with(|s| {
        s.sh(format!("mkdir -m 700 {rt}")) // root's, 0700
            .tmpfs("/tmp")
            .read_only("/run")
            .tmpfs("/dev/shm")
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = ns.script(r#"echo @@json; "$W" doctor --json; rc=$?; echo @@rc; echo $rc"#);
    let run = out.run();
    assert_eq!(out.sec("rc"), "0", "{}", run.context());
    let v = out.json("json");
    let uid = uid_of_user();
    assert_eq!(v["uid"], uid);
    let f = failed(run, &v, "runtime-dir");
    let cause = f["cause"].as_str().unwrap();
    assert!(
        f["errno"] == "EACCES" || cause.contains("belongs to uid 0"),
        "{}",
        run.context()
    );
    assert_eq!(v["choice"]["strategy"], "private-tmp", "{}", run.context());
    assert_eq!(
        v["choice"]["endpoint"],
        format!("unix:/tmp/waysock-{uid}/wayland-0")
    );
}

#[test]
fn long_runtime_dir_records_enametoolong() {
    let name = "long_runtime_dir_records_enametoolong";
    let Some(ns) = ns(name, false) else { return };
    let rt = format!("{}/{}/{}", ns.m(), "d".repeat(60), "e".repeat(60));
    assert!(rt.len() > 100);
    let ns = ns.with(|s| {
        s.sh(format!("mkdir -p -m 700 {rt}"))
            .tmpfs("/tmp")
            .read_only("/run")
            .tmpfs("/dev/shm")
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let weston = program("weston").is_ok();
    let out = ns.script(&format!(
        r#"echo @@json; "$W" doctor --json; rc=$?; echo @@rc; echo $rc
           echo @@weston
           if {weston}; then
             timeout 10 weston --backend=headless-backend.so --idle-time=0 --no-config \
               >/dev/null 2>&1; echo $?
           fi"#
    ));
    let run = out.run();
    assert_eq!(out.sec("rc"), "0", "{}", run.context());
    let v = out.json("json");
    let f = failed(run, &v, "runtime-dir");
    assert_eq!(f["errno"], "ENAMETOOLONG", "{}", run.context());
    assert!(f["cause"].as_str().unwrap().contains("sun_path"));
    assert_eq!(v["choice"]["strategy"], "private-tmp", "{}", run.context());
    // Without waysock: weston would fail to add its socket.
    let c = &v["stock"]["compositor"];
    assert_eq!(c["works"], false, "{}", run.context());
    assert_eq!(c["errno"], "ENAMETOOLONG", "{}", run.context());
    // ... and it really does: it exits by itself, with an error.
    weston_exited_with_an_error(name, weston, &out);
}

/// The prediction "weston would exit" checked against weston itself (its status is the
/// script's `weston` section; 124 is the timeout's: still running); skipped loudly without it.
fn weston_exited_with_an_error(name: &str, weston: bool, out: &Out) {
    if !weston {
        skip(
            name,
            "weston is not installed: prediction not checked against it",
        );
        return;
    }
    let code = out.sec("weston").to_string();
    assert!(
        code != "0" && code != "124",
        "prediction said weston exits; it exited {code}\n{}",
        out.context()
    );
}

#[test]
fn symlink_planted_at_private_dir_is_a_security_warning() {
    let name = "symlink_planted_at_private_dir_is_a_security_warning";
    let uid = uid_of_user();
    // Two targets: root's 0777 dir, and one that passes every check for the victim (theirs,
    // 0700) — only never following the symlink keeps waysock out of it.
    for (label, owner, mode) in [
        ("root-0777", "root", "777"),
        ("victim-0700", TEST_USER, "700"),
    ] {
        let Some(ns) = ns(name, true) else { return };
        let target = format!("{}/target", ns.m());
        let ns = ns.with(|s| {
            s.tmpfs("/tmp")
                .read_only("/run")
                .tmpfs("/dev/shm")
                .sh(format!("mkdir {target} && echo precious > {target}/keep"))
                .sh(format!("chown {owner}: {target} && chmod {mode} {target}"))
                .sh(format!("ln -s {target} /tmp/waysock-{uid}"))
        });
        let out = ns.script(&format!(
            r#"echo @@before; stat -c '%n %a %u %y %z' {target} {target}/keep
               echo @@json; "$W" doctor --json; rc=$?; echo @@rc; echo $rc
               echo @@human; "$W" doctor
               echo @@after; stat -c '%n %a %u %y %z' {target} {target}/keep; ls -A {target}
               echo @@link; readlink /tmp/waysock-{uid}"#
        ));
        let run = out.run();
        assert_eq!(out.sec("rc"), "0", "{label}\n{}", run.context());
        let v = out.json("json");
        let f = failed(run, &v, "private-tmp");
        assert_eq!(f["security"], true, "{label}\n{}", run.context());
        assert!(
            f["cause"].as_str().unwrap().contains("symlink"),
            "{label}\n{}",
            run.context()
        );
        assert_eq!(
            v["choice"]["strategy"],
            "private-shm",
            "{label}\n{}",
            run.context()
        );
        let human = out.sec("human");
        assert!(human.contains("SECURITY"), "{label}\n{human}");
        assert!(human.contains("Security warnings (1)"), "{label}\n{human}");
        // The target is untouched (same mode, owner, mtime and ctime: nothing was created in
        // it, even briefly), and the symlink is still there.
        let before = out.sec("before");
        assert!(before.contains("/keep "), "{label}\n{}", run.context());
        let after = out.sec("after");
        // Sections are trimmed: `before` is whole lines, then `ls -A` lists only `keep`.
        assert!(
            after.starts_with(&format!("{before}\n")),
            "{label}\n{}",
            run.context()
        );
        assert!(after.ends_with("\nkeep"), "{label}\n{}", run.context());
        assert_eq!(out.sec("link"), target);
    }
}

// ---- exit codes and output ---------------------------------------------------------------

fn waysock(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYSOCK_STRATEGIES")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, LIMIT)
}

#[test]
fn nothing_works_exits_1_with_the_report() {
    // Only runtime-dir, and XDG_RUNTIME_DIR unset: touches nothing, needs no namespace.
    let run = waysock(&["doctor", "--strategy", "runtime-dir"], &[]);
    run.assert_code(1);
    let out = run.stdout();
    assert!(
        out.contains("XDG_RUNTIME_DIR is not set"),
        "{}",
        run.context()
    );
    assert!(out.contains("choice: none"), "{}", run.context());

    let run = waysock(&["doctor", "--json", "--strategy", "runtime-dir"], &[]);
    run.assert_code(1);
    let v = json(&run, &run.stdout());
    assert!(v["choice"].is_null(), "{}", run.context());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["doctor", "--strategy", "bogus"][..],
        &["doctor", "--strategy", "tcp"][..],
        &["doctor", "--display", "../x"][..],
        &["doctor", "--no-such-flag"][..],
    ] {
        let run = waysock(args, &[]);
        run.assert_code(2);
        assert!(!run.stderr().trim().is_empty(), "{}", run.context());
        assert!(run.stdout().is_empty(), "{}", run.context());
    }
    let run = waysock(&["doctor", "--strategy", "bogus"], &[]);
    assert!(
        run.stderr().contains("unknown strategy"),
        "{}",
        run.context()
    );
    assert!(run.stderr().contains("private-tmp"), "names the known ones");
}

/// A display name nobody else uses, so doctor's abstract probe is the only thing it does.
fn abstract_only() -> [String; 4] {
    [
        "--strategy".into(),
        "abstract".into(),
        "--display".into(),
        format!("wayland-{}", std::process::id()),
    ]
}

#[test]
fn closed_stdout_is_success() {
    let name = "closed_stdout_is_success";
    let extra = abstract_only();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // `| head -1`, as a user would type it.
    let Ok(bash) = program("bash") else {
        return skip(name, "bash is not installed");
    };
    let mut cmd = Command::new(bash);
    cmd.args([
        "-c",
        r#""$0" doctor "$@" | head -1 >/dev/null; echo "${PIPESTATUS[0]}""#,
        &*bin(),
    ])
    .args(&extra);
    let run = run_command(cmd, LIMIT);
    assert_eq!(run.stdout().trim(), "0", "{}", run.context());
    assert!(!run.stderr().contains("error"), "{}", run.context());

    // Deterministic: the read end is closed before waysock starts, so every write is EPIPE.
    let Ok(python) = program("python3") else {
        return skip(
            name,
            "python3 is not installed: deterministic EPIPE case not run",
        );
    };
    for json in [false, true] {
        let mut cmd = Command::new(&python);
        cmd.args([
            "-c",
            "import os, sys\n\
             r, w = os.pipe()\n\
             os.close(r)\n\
             os.dup2(w, 1)\n\
             os.execv(sys.argv[1], sys.argv[1:])",
            &*bin(),
            "doctor",
        ])
        .args(&extra);
        if json {
            cmd.arg("--json");
        }
        let run = run_command(cmd, LIMIT);
        run.assert_code(0);
        assert!(!run.stderr().contains("error"), "{}", run.context());
    }
}

#[test]
fn stock_prediction_says_weston_exits_without_xdg_runtime_dir_and_it_does() {
    let name = "stock_prediction_says_weston_exits_without_xdg_runtime_dir_and_it_does";
    let Some(ns) = ns(name, false) else { return };
    let ns = ns.with(|s| s.tmpfs("/tmp").tmpfs("/run").tmpfs("/dev/shm"));
    let weston = program("weston").is_ok();
    let out = ns.script(&format!(
        r#"echo @@json; "$W" doctor --json; echo @@human; "$W" doctor
           echo @@weston
           if {weston}; then
             timeout 10 weston --backend=headless-backend.so --idle-time=0 --no-config \
               >/dev/null 2>&1; echo $?
           fi"#
    ));
    let run = out.run();
    let v = out.json("json");
    let c = &v["stock"]["compositor"];
    assert_eq!(c["works"], false, "{}", run.context());
    assert!(
        c["verdict"]
            .as_str()
            .unwrap()
            .contains("weston would exit: XDG_RUNTIME_DIR is not set"),
        "{}",
        run.context()
    );
    assert_eq!(v["stock"]["client"]["works"], false);
    let human = out.sec("human");
    assert!(
        human.contains("compositor FAIL weston would exit"),
        "{human}"
    );
    // waysock itself still has a place: the first fallback.
    assert_eq!(v["choice"]["strategy"], "private-tmp", "{}", run.context());
    weston_exited_with_an_error(name, weston, &out);
}

#[test]
fn stock_prediction_names_wayland_1_and_weston_takes_it() {
    let name = "stock_prediction_names_wayland_1_and_weston_takes_it";
    let Some(ns) = ns(name, false) else { return };
    if let Err(why) = program("weston").and(program("wayland-info")) {
        return skip(name, &why);
    }
    let rt = format!("{}/rt", ns.m());
    let ns = ns.with(|s| {
        s.sh(format!("mkdir -m 700 {rt}"))
            .tmpfs("/tmp")
            .tmpfs("/run")
            .tmpfs("/dev/shm")
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = ns.script(
        r#"echo @@json; "$W" doctor --json
           timeout 30 weston --backend=headless-backend.so --idle-time=0 --no-config \
             >/dev/null 2>&1 &
           pid=$!
           i=0; while [ ! -S "$XDG_RUNTIME_DIR/wayland-1" ] && [ $i -lt 200 ]; do
             sleep 0.05; i=$((i+1)); done
           echo @@info; WAYLAND_DISPLAY=wayland-1 timeout 10 wayland-info | grep -c wl_compositor
           echo @@json2; "$W" doctor --json
           kill $pid; wait $pid || true"#,
    );
    let run = out.run();
    let v = out.json("json");
    let c = &v["stock"]["compositor"];
    assert_eq!(c["works"], true, "{}", run.context());
    assert_eq!(c["endpoint"], format!("unix:{rt}/wayland-1"));
    assert_eq!(v["choice"]["endpoint"], format!("unix:{rt}/wayland-0"));
    assert_eq!(out.sec("info"), "1", "{}", run.context());
    // With weston running: it would take wayland-2 next, waysock still wayland-0.
    let v = out.json("json2");
    assert_eq!(
        v["stock"]["compositor"]["endpoint"],
        format!("unix:{rt}/wayland-2"),
        "{}",
        run.context()
    );
    assert_eq!(v["choice"]["endpoint"], format!("unix:{rt}/wayland-0"));
}

// ---- socket activation ------------------------------------------------------------------

/// Runs `sh -c SCRIPT` with a listening Unix socket on fd 3 (python3 makes it).
fn with_fd3(socket: &Path, script: &str) -> Run {
    let python = program("python3").unwrap();
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import os, socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind(sys.argv[1])\n\
         s.listen(8)\n\
         fd = s.detach()\n\
         if fd != 3:\n    os.dup2(fd, 3)\n    os.close(fd)\n\
         os.set_inheritable(3, True)\n\
         os.execvp('sh', ['sh', '-c', sys.argv[2], 'sh', sys.argv[3]])",
    ])
    .arg(socket)
    .arg(script)
    .arg(bin())
    .env_remove("LISTEN_FDNAMES")
    .env_remove("WAYSOCK_STRATEGIES")
    .stdin(std::process::Stdio::null());
    run_command(cmd, LIMIT)
}

#[test]
fn socket_activation_is_diagnosed() {
    let name = "socket_activation_is_diagnosed";
    if let Err(why) = program("python3") {
        return skip(name, &why);
    }
    let scratch = Scratch::new("cli-fd3");
    let sock = scratch.path().join("activated.sock");
    let run = with_fd3(
        &sock,
        r#"exec env LISTEN_PID=$$ LISTEN_FDS=1 "$1" doctor --json --strategy inherited"#,
    );
    run.assert_code(0);
    let v = json(&run, &run.stdout());
    assert_eq!(v["choice"]["strategy"], "inherited", "{}", run.context());
    assert_eq!(v["choice"]["endpoint"], "fd:3");
    let a = &attempts(&v, "inherited")[0];
    assert_eq!(a["outcome"], "ok");
    assert_eq!(
        a["note"],
        format!("listening on unix:{}", sock.display()),
        "{}",
        run.context()
    );

    // The same fds addressed to another process: not ours.
    let sock2 = scratch.path().join("other.sock");
    let run = with_fd3(
        &sock2,
        r#"exec env LISTEN_PID=1 LISTEN_FDS=1 "$1" doctor --json --strategy inherited"#,
    );
    run.assert_code(1);
    let v = json(&run, &run.stdout());
    assert_eq!(attempts(&v, "inherited")[0]["outcome"], "skipped");
    assert!(attempts(&v, "inherited")[0]["reason"]
        .as_str()
        .unwrap()
        .contains("another process"));
}
