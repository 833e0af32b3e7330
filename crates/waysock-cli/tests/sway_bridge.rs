//! Headless sway (wlroots) in one network namespace, `waysock bridge` at both ends, and
//! clients in another namespace that sees neither sway's socket nor its network: the bridge
//! carries sway's wlr and virtual-input globals (the protocol tables come from Smithay's
//! protocol crates, not from whatever XML the build host had), hides only what it cannot
//! translate, names each hidden global once with `-v`, and the clipboard works through it
//! (`wl-copy`/`wl-paste` over wlr-data-control).

use std::process::{Command, Stdio};
use std::time::Duration;

use waysock_testkit::{is_root, program, relocated, run_command, skip, test_user, Scratch};

const LIMIT: Duration = Duration::from_secs(120);

/// The network namespaces of one run, deleted on drop (even if the test panics).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `$1` waysock, `$2` scratch dir, `$3`/`$4` the namespaces, `$5` a number for names and
/// addresses, `$6` the uid sway runs as (sway refuses to start as root).
const SCRIPT: &str = r#"
set -u
W=$1; S=$2; A=$3; B=$4; X=$5; U=$6
say() { echo "@@$1"; }
# Waits up to 20 s for a line in a log.
wait_log() { i=0; until grep -q "$2" "$1"; do i=$((i+1)); [ $i -gt 200 ] && return 1; sleep 0.1; done; }
ip netns add $A || exit 90
ip netns add $B || exit 90
ip link add wsa$X netns $A type veth peer name wsb$X netns $B
ip -n $A addr add 10.233.$X.1/24 dev wsa$X; ip -n $A link set wsa$X up; ip -n $A link set lo up
ip -n $B addr add 10.233.$X.2/24 dev wsb$X; ip -n $B link set wsb$X up; ip -n $B link set lo up
mkdir -m 700 $S/rt $S/c; chown $U:$U $S/rt
head -c 32 /dev/urandom > $S/tok; chmod 600 $S/tok
ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env -u WAYLAND_DISPLAY \
  XDG_RUNTIME_DIR=$S/rt WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
  sway -c /dev/null >$S/sway.log 2>&1 &
i=0; until ls $S/rt | grep -qE '^wayland-[0-9]+$'; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done
sock=$(ls $S/rt | grep -E '^wayland-[0-9]+$' | head -1)
ip netns exec $A env -u WAYSOCK_LOG $W bridge -v --listen tcp:10.233.$X.1:7352 \
  --connect unix:$S/rt/$sock --token-file $S/tok >$S/compositor-bridge.log 2>&1 &
wait_log $S/compositor-bridge.log 'waysock bridge: tcp:'
# B: its own network, and sway's runtime dir hidden under an empty tmpfs.
inb() {
  ip netns exec $B unshare -m sh -c "mount -t tmpfs -o mode=700 none $S/rt; exec \"\$@\"" sh "$@"
}
inb env -u WAYSOCK_LOG $W bridge -v --listen unix:$S/c/wayland-9 --connect tcp:10.233.$X.1:7352 \
  --token-file $S/tok >$S/client-bridge.log 2>&1 &
wait_log $S/client-bridge.log 'waysock bridge: unix:'
client() { inb env XDG_RUNTIME_DIR=$S/c WAYLAND_DISPLAY=wayland-9 "$@"; }
say isolated; client sh -c "ls $S/rt; ip -o addr show | grep -c 10.233.$X.1"
say direct; ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env XDG_RUNTIME_DIR=$S/rt \
  WAYLAND_DISPLAY=$sock timeout 20 wayland-info 2>&1 | grep -o "interface: '[a-z0-9_]*'" | sed "s/interface: //; s/'//g" | sort -u
say bridged; client timeout 20 wayland-info 2>&1 | grep -o "interface: '[a-z0-9_]*'" | sed "s/interface: //; s/'//g" | sort -u
# A second client, to see that a hidden global is named once per bridge, not per client.
client timeout 20 wayland-info >/dev/null 2>&1
client timeout 30 wl-copy --foreground "waysock clipboard $X across namespaces" >$S/copy.log 2>&1 &
CP=$!
# wl-copy has set the selection once wl-paste lists its types.
i=0; until client timeout 10 wl-paste --list-types >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.2; done
say paste; client timeout 10 wl-paste --no-newline 2>$S/paste.err; rc=$?; echo; echo "rc=$rc"
kill $CP 2>/dev/null; wait $CP
say hidden; cat $S/compositor-bridge.log $S/client-bridge.log | grep -o 'hiding global [a-z0-9_]*' | sort | uniq -c
say logs; for f in compositor-bridge client-bridge sway copy; do echo "--- $f"; tail -n 15 $S/$f.log; done; cat $S/paste.err
"#;

#[test]
fn sway_globals_and_clipboard_cross_the_bridge_between_namespaces() {
    let name = "sway_globals_and_clipboard_cross_the_bridge_between_namespaces";
    if !is_root() {
        return skip(name, "needs root for network namespaces (CI runs as root)");
    }
    for p in [
        "ip",
        "unshare",
        "setpriv",
        "sway",
        "wayland-info",
        "wl-copy",
        "wl-paste",
        "timeout",
    ] {
        if let Err(why) = program(p) {
            return skip(name, &why);
        }
    }
    let (uid, _) = match test_user() {
        Ok(u) => u,
        Err(why) => return skip(name, &why),
    };
    let bin = relocated(env!("CARGO_BIN_EXE_waysock"));
    let scratch = Scratch::new("sway-bridge");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    let pid = std::process::id();
    let x = (pid % 250 + 1).to_string();
    let ns = Namespaces(vec![format!("wssw-{pid}-a"), format!("wssw-{pid}-b")]);
    let mut cmd = Command::new("unshare");
    // Every process of the run dies with the script (pid namespace).
    cmd.args([
        "-p",
        "--fork",
        "--kill-child",
        "--",
        "sh",
        "-c",
        SCRIPT,
        "sh",
    ])
    .arg(bin)
    .arg(scratch.path())
    .args([&ns.0[0], &ns.0[1], &x, &uid.to_string()])
    .env_remove("WAYLAND_DISPLAY")
    .env_remove("WAYLAND_SOCKET")
    .env_remove("DISPLAY");
    let run = run_command(cmd, LIMIT);
    let out = waysock_testkit::sections(&run.stdout());
    let sec = |s: &str| out.get(s).cloned().unwrap_or_default();
    let context = format!("{}\n--- logs:\n{}", run.context(), sec("logs"));
    assert_ne!(run.code(), Some(90), "cannot make namespaces\n{context}");

    // B really is elsewhere: no sway socket in reach, no address of A's.
    assert_eq!(sec("isolated"), "0", "{context}");
    let direct: Vec<String> = sec("direct").lines().map(str::to_owned).collect();
    let bridged: Vec<String> = sec("bridged").lines().map(str::to_owned).collect();
    assert!(direct.len() > 30, "sway did not answer directly\n{context}");
    for global in [
        "wl_compositor",
        "wl_seat",
        "wl_data_device_manager",
        "zwlr_data_control_manager_v1",
        "zwlr_layer_shell_v1",
        "zwlr_screencopy_manager_v1",
        "zwp_virtual_keyboard_manager_v1",
        "zwlr_virtual_pointer_manager_v1",
        "zwp_input_method_manager_v2",
        "xdg_wm_base",
    ] {
        assert!(
            bridged.iter().any(|g| g == global),
            "{global} not carried by the bridge; bridged: {bridged:?}\n{context}"
        );
    }
    // Exactly the globals sway offers, less those the bridge cannot translate.
    let filtered = waysock_bridge::session::FILTERED_GLOBALS;
    let expected: Vec<&String> = direct
        .iter()
        .filter(|g| !filtered.contains(&g.as_str()))
        .collect();
    let got: Vec<&String> = bridged.iter().collect();
    assert_eq!(got, expected, "bridged globals\n{context}");
    // Each hidden global named once (two clients saw it hidden), by the compositor-side
    // bridge, which is where globals are filtered.
    for g in direct.iter().filter(|g| filtered.contains(&g.as_str())) {
        assert!(
            sec("hidden")
                .lines()
                .any(|l| l.trim() == format!("1 hiding global {g}")),
            "{g} hidden but not named exactly once: {}\n{context}",
            sec("hidden")
        );
    }
    assert_eq!(
        sec("paste"),
        format!("waysock clipboard {x} across namespaces\nrc=0"),
        "{context}"
    );
}
