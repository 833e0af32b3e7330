//! Buffers the compositor fills flow back through the bridge: headless sway (wlroots) shows a
//! known pattern (`swaybg` tiling a generated image), and `grim` takes a screenshot
//! (wlr-screencopy: the compositor writes into the client's shm buffer, then sends `ready`)
//! directly and through `waysock bridge` from another network namespace. The pixels must be
//! identical, for the whole output and for a region.

use std::time::Duration;

use waysock_testkit::{sway_bridged, Needs, Scratch};

const LIMIT: Duration = Duration::from_secs(120);

/// After [`waysock_testkit::script::prelude::SWAY_BRIDGED`], with `pattern.ppm` in the scratch
/// dir. Leaves `direct*.ppm` and `bridged*.ppm` there.
const SCRIPT: &str = r#"
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
        .all_namespaces()
        .met()
    {
        return;
    }
    let scratch = Scratch::new("sway-screencopy");
    std::fs::write(scratch.path().join("pattern.ppm"), pattern(61, 37)).unwrap();
    waysock_testkit::set_mode(&scratch.path().join("pattern.ppm"), 0o644);
    let run = sway_bridged(
        env!("CARGO_BIN_EXE_waysock"),
        &scratch,
        "wssc",
        "NET=10.234 PORT=7353 VETH=wc BRIDGE=",
        SCRIPT,
        LIMIT,
    );
    let (sec, context) = (|s: &str| run.sec(s), &run.context);
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
