//! Headless sway (wlroots) in one network namespace, `waysock bridge` at both ends, and
//! clients in another namespace that sees neither sway's socket nor its network: the bridge
//! carries sway's wlr and virtual-input globals (the protocol tables come from Smithay's
//! protocol crates, not from whatever XML the build host had), hides only what it cannot
//! translate, names each hidden global once with `-v`, and the clipboard works through it
//! (`wl-copy`/`wl-paste` over wlr-data-control).

use std::time::Duration;

use waysock_testkit::{sway_bridged, Needs, Scratch};

const LIMIT: Duration = Duration::from_secs(120);

/// After [`waysock_testkit::script::prelude::SWAY_BRIDGED`] (both bridges with `-v`).
const SCRIPT: &str = r#"
say isolated; client sh -c "ls $S/rt; ip -o addr show | grep -c $NET.$X.1"
say direct; direct timeout 20 wayland-info 2>&1 | grep -o "interface: '[a-z0-9_]*'" | sed "s/interface: //; s/'//g" | sort -u
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
    let met = Needs::new(name)
        .root("needs root for network namespaces (CI runs as root)")
        .programs(&[
            "ip",
            "unshare",
            "setpriv",
            "sway",
            "wayland-info",
            "wl-copy",
            "wl-paste",
            "timeout",
        ])
        .test_user()
        .all_namespaces()
        .met();
    if !met {
        return;
    }
    let scratch = Scratch::new("sway-bridge");
    let run = sway_bridged(
        env!("CARGO_BIN_EXE_waysock"),
        &scratch,
        "wssw",
        "NET=10.233 PORT=7352 VETH=ws BRIDGE=-v",
        SCRIPT,
        LIMIT,
    );
    let (sec, context, x) = (|s: &str| run.sec(s), &run.context, &run.x);

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
    // bridge, which is where globals are filtered; and nothing else named.
    let mut want: Vec<String> = direct
        .iter()
        .filter(|g| filtered.contains(&g.as_str()))
        .map(|g| format!("1 hiding global {g}"))
        .collect();
    want.sort();
    want.dedup();
    assert!(
        !want.is_empty(),
        "sway offers no global the bridge hides\n{context}"
    );
    let mut named: Vec<String> = sec("hidden").lines().map(|l| l.trim().to_owned()).collect();
    named.sort();
    assert_eq!(named, want, "hidden globals, each named once\n{context}");
    assert_eq!(
        sec("paste"),
        format!("waysock clipboard {x} across namespaces\nrc=0"),
        "{context}"
    );
}
