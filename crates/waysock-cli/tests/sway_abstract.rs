//! An unmodified wlroots compositor on an abstract socket: headless sway 1.7, as the
//! unprivileged test user, with `/tmp`, `/run`, `/dev/shm` and `HOME` all read-only. sway also
//! binds its IPC socket in `XDG_RUNTIME_DIR` (and aborts if it cannot): the shim's fallback
//! mapping has to carry that one too.

use std::time::Duration;

use waysock_testkit::{relocated, test_user, Needs, Sandbox, Scratch};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn sway_comes_up_on_abstract_with_everything_read_only() {
    let name = "sway_comes_up_on_abstract_with_everything_read_only";
    let met = Needs::new(name)
        .namespaces()
        .programs(&["sway", "wayland-info", "setpriv"])
        .test_user()
        .met();
    if !met {
        return;
    }
    let (uid, _) = test_user().expect("probed above");
    let bin = relocated(env!("CARGO_BIN_EXE_waysock"));
    let scratch = Scratch::new("sway-abs");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    let home = scratch.path().join("home");
    let logs = scratch.path().join("logs");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(&logs).unwrap();
    let script = format!(
        r#"
as_user() {{ setpriv --reuid={uid} --regid={uid} --init-groups env -u XDG_RUNTIME_DIR HOME={home} "$@"; }}
# In the background, `exec` so that $RUN is waysock run itself, not a subshell around it
# (SIGTERM to a subshell would end the subshell with 143 and never reach run).
(exec setpriv --reuid={uid} --regid={uid} --init-groups env -u XDG_RUNTIME_DIR HOME={home} \
  WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
  {bin} run -- sway -c /dev/null >{logs}/run.out 2>{logs}/run.err) &
RUN=$!
i=0
until grep -q 'is up on' {logs}/run.err; do
  i=$((i+1)); [ $i -gt 300 ] && break
  grep -q 'exited' {logs}/run.err && break
  sleep 0.1
done
as_user {bin} exec -- wayland-info >{logs}/info.out 2>{logs}/info.err
echo "exec=$?"
touch /tmp/probe 2>/dev/null && echo "tmp writable"
kill -TERM $RUN; wait $RUN; echo "run=$?"
"#,
        home = home.display(),
        logs = logs.display(),
        bin = bin.display(),
    );
    let run = Sandbox::new()
        .private_pids()
        .private_network()
        .read_only("/tmp")
        .read_only("/run")
        .read_only("/dev/shm")
        .read_only(&home.display().to_string())
        .run("sh", &["-c", &script], LIMIT);
    let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    let context = format!(
        "{}\n--- run.err:\n{}\n--- info.err:\n{}",
        run.context(),
        read("run.err"),
        read("info.err")
    );
    assert!(
        read("run.err").contains(&format!("is up on abstract:wayland-{uid}-")),
        "sway did not come up on an abstract socket\n{context}"
    );
    assert!(
        read("info.out").contains("wl_compositor"),
        "wayland-info through `waysock exec` saw no wl_compositor\n{context}"
    );
    assert!(run.stdout().contains("exec=0"), "{context}");
    // SIGTERM to waysock run is forwarded; sway ends cleanly on it (status 0) and run passes
    // that on. 143 would mean run died of the signal itself, not forwarding it.
    assert!(
        run.stdout().contains("run=0\n"),
        "waysock run did not pass on sway's clean exit\n{context}"
    );
    assert!(
        !run.stdout().contains("tmp writable"),
        "the sandbox was not read-only\n{context}"
    );
}
