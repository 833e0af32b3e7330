//! Buffers the compositor fills flow back through the bridge: headless sway (wlroots) shows a
//! known pattern (`swaybg` tiling a generated image), and `grim` takes a screenshot
//! (wlr-screencopy: the compositor writes into the client's shm buffer, then sends `ready`)
//! directly and through `waysock bridge` from another network namespace. The pixels must be
//! identical, for the whole output and for a region.

use std::process::{Command, Stdio};
use std::time::Duration;

use waysock_testkit::{relocated, run_command, test_user, Needs, Scratch};

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

/// `$1` waysock, `$2` scratch dir (holding `pattern.ppm`), `$3`/`$4` the namespaces, `$5` a
/// number for names and addresses, `$6` the uid sway runs as (sway refuses to start as root).
/// Leaves `direct*.ppm` and `bridged*.ppm` in the scratch dir.
const SCRIPT: &str = r#"
set -u
W=$1; S=$2; A=$3; B=$4; X=$5; U=$6
say() { echo "@@$1"; }
wait_log() { i=0; until grep -q "$2" "$1"; do i=$((i+1)); [ $i -gt 200 ] && return 1; sleep 0.1; done; }
ip netns add $A || exit 90
ip netns add $B || exit 90
ip link add wca$X netns $A type veth peer name wcb$X netns $B
ip -n $A addr add 10.234.$X.1/24 dev wca$X; ip -n $A link set wca$X up; ip -n $A link set lo up
ip -n $B addr add 10.234.$X.2/24 dev wcb$X; ip -n $B link set wcb$X up; ip -n $B link set lo up
mkdir -m 700 $S/rt $S/c; chown $U:$U $S/rt
head -c 32 /dev/urandom > $S/tok; chmod 600 $S/tok
ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env -u WAYLAND_DISPLAY \
  XDG_RUNTIME_DIR=$S/rt WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
  sway -c /dev/null >$S/sway.log 2>&1 &
i=0; until ls $S/rt | grep -qE '^wayland-[0-9]+$'; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done
sock=$(ls $S/rt | grep -E '^wayland-[0-9]+$' | head -1)
direct() {
  ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env XDG_RUNTIME_DIR=$S/rt \
    WAYLAND_DISPLAY=$sock "$@"
}
ip netns exec $A env -u WAYSOCK_LOG $W bridge --listen tcp:10.234.$X.1:7353 \
  --connect unix:$S/rt/$sock --token-file $S/tok >$S/compositor-bridge.log 2>&1 &
wait_log $S/compositor-bridge.log 'waysock bridge: tcp:'
inb() {
  ip netns exec $B unshare -m sh -c "mount -t tmpfs -o mode=700 none $S/rt; exec \"\$@\"" sh "$@"
}
inb env -u WAYSOCK_LOG $W bridge --listen unix:$S/c/wayland-9 --connect tcp:10.234.$X.1:7353 \
  --token-file $S/tok >$S/client-bridge.log 2>&1 &
wait_log $S/client-bridge.log 'waysock bridge: unix:'
client() { inb env XDG_RUNTIME_DIR=$S/c WAYLAND_DISPLAY=wayland-9 "$@"; }
# The known content: the pattern tiled over the output, drawn directly (not through the bridge).
direct timeout 20 grim -t ppm - >$S/before.ppm
direct swaybg -i $S/pattern.ppm -m tile >$S/swaybg.log 2>&1 &
# Drawn once two screenshots in a row agree and differ from the one before swaybg.
i=0; prev=$S/before.ppm
while :; do
  i=$((i+1)); [ $i -gt 100 ] && break
  sleep 0.2
  direct timeout 20 grim -t ppm - >$S/direct.ppm || continue
  cmp -s $S/direct.ppm $S/before.ppm && continue
  cmp -s $S/direct.ppm $prev && break
  cp $S/direct.ppm $S/prev.ppm; prev=$S/prev.ppm
done
say grim-bridged; client timeout 20 grim -t ppm - >$S/bridged.ppm; echo "rc=$?"
say grim-bridged-region; client timeout 20 grim -t ppm -g "13,7 301x97" - >$S/bridged-region.ppm; echo "rc=$?"
# A second capture on the same bridge, after the first one's pools are gone.
say grim-bridged-again; client timeout 20 grim -t ppm - >$S/bridged-again.ppm; echo "rc=$?"
direct timeout 20 grim -t ppm -g "13,7 301x97" - >$S/direct-region.ppm
direct timeout 20 grim -t ppm - >$S/direct-after.ppm
say logs; for f in compositor-bridge client-bridge sway swaybg; do echo "--- $f"; tail -n 15 $S/$f.log; done
"#;

/// A binary PPM (P6) of `w`×`h` pixels with no two neighbours alike, so a shifted, stale or
/// partial copy shows.
fn pattern(w: usize, h: usize) -> Vec<u8> {
    let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            out.extend_from_slice(&[
                (x * 37 + y * 11) as u8,
                ((x * 5) ^ (y * 29)) as u8,
                (x * y + 7 * y) as u8,
            ]);
        }
    }
    out
}

/// A P6 image's size and pixels (grim writes `P6\n<w> <h>\n255\n` then RGB bytes).
fn decode_ppm(bytes: &[u8]) -> Result<(usize, usize, &[u8]), String> {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    at += 1;
    let num = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("bad PPM field {s:?}"))
    };
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("not an 8-bit P6 PPM: {fields:?}"));
    }
    let (w, h) = (num(&fields[1])?, num(&fields[2])?);
    let pixels = bytes.get(at..).unwrap_or(&[]);
    if pixels.len() != w * h * 3 {
        return Err(format!(
            "{w}x{h} PPM with {} pixel bytes, not {}",
            pixels.len(),
            w * h * 3
        ));
    }
    Ok((w, h, pixels))
}

#[test]
fn grim_through_the_bridge_sees_the_pixels_grim_sees_directly() {
    let name = "grim_through_the_bridge_sees_the_pixels_grim_sees_directly";
    if !Needs::new(name)
        .root("needs root for network namespaces (CI runs as root)")
        .programs(&[
            "ip", "unshare", "setpriv", "sway", "swaybg", "grim", "timeout", "cmp",
        ])
        .test_user()
        .met()
    {
        return;
    }
    let (uid, _) = test_user().expect("probed above");
    let bin = relocated(env!("CARGO_BIN_EXE_waysock"));
    let scratch = Scratch::new("sway-screencopy");
    waysock_testkit::set_mode(scratch.path(), 0o755);
    std::fs::write(scratch.path().join("pattern.ppm"), pattern(61, 37)).unwrap();
    waysock_testkit::set_mode(&scratch.path().join("pattern.ppm"), 0o644);
    let pid = std::process::id();
    let x = (pid % 250 + 1).to_string();
    let ns = Namespaces(vec![format!("wssc-{pid}-a"), format!("wssc-{pid}-b")]);
    let mut cmd = Command::new("unshare");
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
    for s in ["grim-bridged", "grim-bridged-region", "grim-bridged-again"] {
        assert_eq!(sec(s), "rc=0", "{s}\n{context}");
    }
    let read = |f: &str| {
        std::fs::read(scratch.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}\n{context}"))
    };
    let (before, direct, after) = (
        read("before.ppm"),
        read("direct.ppm"),
        read("direct-after.ppm"),
    );
    let (w, h, px) = decode_ppm(&direct).unwrap_or_else(|e| panic!("direct: {e}\n{context}"));
    assert!(w >= 640 && h >= 480, "a {w}x{h} output\n{context}");
    assert_ne!(before, direct, "swaybg never drew\n{context}");
    assert_eq!(
        direct, after,
        "the output changed during the test\n{context}"
    );
    // The pattern is there: many distinct colours, not one.
    let distinct: std::collections::BTreeSet<&[u8]> = px.chunks(3).take(61 * 4).collect();
    assert!(
        distinct.len() > 50,
        "the output is not the pattern\n{context}"
    );
    for (bridged, direct) in [
        ("bridged.ppm", &direct),
        ("bridged-again.ppm", &direct),
        ("bridged-region.ppm", &read("direct-region.ppm")),
    ] {
        let got = read(bridged);
        let (bw, bh, bpx) = decode_ppm(&got).unwrap_or_else(|e| panic!("{bridged}: {e}"));
        let (dw, dh, dpx) = decode_ppm(direct).unwrap();
        assert_eq!((bw, bh), (dw, dh), "{bridged}: size\n{context}");
        if let Some(i) = (0..bpx.len() / 3).find(|i| bpx[i * 3..i * 3 + 3] != dpx[i * 3..i * 3 + 3])
        {
            let differ = (0..bpx.len() / 3)
                .filter(|i| bpx[i * 3..i * 3 + 3] != dpx[i * 3..i * 3 + 3])
                .count();
            panic!(
                "{bridged}: {differ} of {} pixels differ from the direct screenshot, the first \
                 at ({}, {}): {:?} instead of {:?}\n{context}",
                bw * bh,
                i % bw,
                i / bw,
                &bpx[i * 3..i * 3 + 3],
                &dpx[i * 3..i * 3 + 3]
            );
        }
    }
}
