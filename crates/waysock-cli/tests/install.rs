//! One artifact from crates alone: `cargo install --path crates/waysock-cli` with the host's
//! protocol XML hidden and a fresh target dir gives a `waysock` that, with `/tmp`, `/run`,
//! `/dev/shm` and `HOME` read-only and no `XDG_RUNTIME_DIR`, brings a stock weston up on an
//! abstract socket (the preload shim comes from inside the binary: nothing was installed
//! beside it) and lets a stock client reach it; `doctor` there predicts exactly that.
//!
//! Slow: a full release build of waysock-cli (about a minute on two cores).

use std::path::Path;
use std::time::Duration;

use waysock_testkit::{test_user, Needs, Sandbox, Scratch};

const BUILD: Duration = Duration::from_secs(30 * 60);
const RUN: Duration = Duration::from_secs(90);

#[test]
fn cargo_install_without_host_xml_runs_weston_on_abstract_with_nothing_writable() {
    let name = "cargo_install_without_host_xml_runs_weston_on_abstract_with_nothing_writable";
    let met = Needs::new(name)
        .namespaces()
        .programs(&["weston", "wayland-info", "setpriv"])
        .test_user()
        .met();
    if !met {
        return;
    }
    let (uid, _) = test_user().expect("probed above");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned();
    let scratch = Scratch::new("install");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    let root = scratch.path().join("R");
    let target = scratch.path().join("target");
    let home = scratch.path().join("home");
    let logs = scratch.path().join("logs");
    for d in [&home, &logs] {
        std::fs::create_dir(d).unwrap();
    }
    waysock_testkit::set_mode(&logs, 0o777);

    // 1. The build, with the protocol XML a Debian host may have hidden under empty tmpfs.
    let build = format!(
        r#"set -e
for d in /usr/share/wayland /usr/share/wayland-protocols; do
  if [ -d $d ]; then mount -t tmpfs -o ro,mode=755 none $d; fi
done
echo "xml: $(find /usr/share/wayland /usr/share/wayland-protocols -name '*.xml' 2>/dev/null | wc -l)"
CARGO_NET_OFFLINE=true CARGO_TARGET_DIR={target} {cargo} install --path {ws}/crates/waysock-cli --root {root} 2>&1
"#,
        target = target.display(),
        cargo = cargo,
        ws = workspace.display(),
        root = root.display(),
    );
    let built = Sandbox::new().run("sh", &["-c", &build], BUILD);
    assert!(
        built.stdout().contains("xml: 0\n"),
        "the XML was not hidden\n{}",
        built.context()
    );
    assert_eq!(
        built.code(),
        Some(0),
        "cargo install failed\n{}",
        built.context()
    );
    let bin = root.join("bin/waysock");
    // Nothing but the binary (and cargo's own records) was installed.
    let installed: Vec<String> = waysock_testkit::snapshot(&root)
        .into_iter()
        .filter(|l| !l.contains(".crates"))
        .collect();
    assert!(
        installed.iter().all(|l| !l.contains("preload")),
        "something besides waysock was installed: {installed:?}"
    );

    // 2. Nothing writable, no XDG_RUNTIME_DIR, as an unprivileged user.
    let script = format!(
        r#"
as_user() {{ setpriv --reuid={uid} --regid={uid} --init-groups env -u XDG_RUNTIME_DIR -u WAYLAND_DISPLAY HOME={home} "$@"; }}
echo "@@doctor"
as_user {bin} doctor >{logs}/doctor.out 2>&1; echo "rc=$?"
grep -o 'waysock would use [^ ]*' {logs}/doctor.out
(exec setpriv --reuid={uid} --regid={uid} --init-groups env -u XDG_RUNTIME_DIR -u WAYLAND_DISPLAY HOME={home} \
  {bin} run -- weston --backend=headless-backend.so --idle-time=0 >{logs}/run.out 2>{logs}/run.err) &
RUN=$!
i=0
until grep -q 'is up on' {logs}/run.err; do
  i=$((i+1)); [ $i -gt 300 ] && break
  grep -q 'exited' {logs}/run.err && break
  sleep 0.1
done
echo "@@exec"
as_user {bin} exec -- wayland-info >{logs}/info.out 2>{logs}/info.err; echo "rc=$?"
echo "@@writable"
for d in /tmp /run /dev/shm {home}; do touch $d/probe 2>/dev/null && echo "$d"; done
kill -TERM $RUN; wait $RUN; r=$?; echo "@@run"; echo "rc=$r"
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
        .run("sh", &["-c", &script], RUN);
    let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    let out = waysock_testkit::sections(&run.stdout());
    let sec = |s: &str| out.get(s).cloned().unwrap_or_default();
    let context = format!(
        "{}\n--- doctor:\n{}\n--- run.err:\n{}\n--- info.err:\n{}",
        run.context(),
        read("doctor.out"),
        read("run.err"),
        read("info.err")
    );
    assert_eq!(
        sec("writable"),
        "",
        "the sandbox was not read-only\n{context}"
    );
    let abstract_name = format!("abstract:wayland-{uid}-");
    assert!(
        sec("doctor").starts_with("rc=0\nwaysock would use ")
            && sec("doctor").contains(&abstract_name),
        "doctor did not predict an abstract display\n{context}"
    );
    assert!(
        read("run.err").contains(&format!("is up on {abstract_name}"))
            && read("run.err").contains("through the preload shim"),
        "weston did not come up on an abstract socket\n{context}"
    );
    assert_eq!(sec("exec"), "rc=0", "{context}");
    assert!(
        read("info.out").contains("interface: 'wl_compositor'"),
        "wayland-info through `waysock exec` saw no wl_compositor\n{context}"
    );
    assert_eq!(sec("run"), "rc=0", "weston's clean exit\n{context}");
}
