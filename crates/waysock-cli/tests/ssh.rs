//! `waysock ssh [SSH-OPTIONS] HOST -- CLIENT` (issue 12, item 4) against a real OpenSSH
//! `sshd`: each case in its own mount, pid and network namespace (fresh `/tmp`, `/run`,
//! `/dev/shm`), with sshd on 127.0.0.1:2222 of that namespace only, a generated host key and
//! user key, and the unprivileged test user on both sides. The local compositor is
//! `waysock headless` (weston, or sway for the clipboard); the remote side finds `waysock` on
//! sshd's default PATH (`/usr/local/bin`, a tmpfs of the case) and has no `XDG_RUNTIME_DIR`.

use std::time::Duration;

use waysock_testkit::script::prelude;
use waysock_testkit::{Needs, Scenario, Script, Stage, TEST_USER};

/// Root-side setup: keys, sshd's config, sshd itself (until the namespace ends), `waysock` on
/// the remote PATH. `$K` holds the keys; the user key belongs to the test user.
const SSHD: &str = r#"
K=$M/ssh; mkdir -m 755 $K
ssh-keygen -q -t ed25519 -N '' -C host -f $K/host_key
ssh-keygen -q -t ed25519 -N '' -C user -f $K/user_key
chown wstest: $K/user_key
cp $K/user_key.pub $K/authorized_keys; chmod 644 $K/authorized_keys
echo "[127.0.0.1]:2222 $(cat $K/host_key.pub)" > $K/known_hosts; chmod 644 $K/known_hosts
printf '%s\n' 'ListenAddress 127.0.0.1:2222' "HostKey $K/host_key" "AuthorizedKeysFile $K/authorized_keys" 'StrictModes no' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'UsePAM yes' 'PidFile none' 'AllowStreamLocalForwarding yes' > $K/sshd_config
mkdir -p -m 755 /run/sshd
mount -t tmpfs -o mode=755 none /usr/local/bin
cp $M/bin/waysock* /usr/local/bin/
/usr/sbin/sshd -D -e -f $K/sshd_config 2>$M/out/sshd.log &
i=0; until ssh-keyscan -p 2222 127.0.0.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 100 ] && { cat $M/out/sshd.log >&2; exit 1; }; sleep 0.1; done
"#;

const PRELUDE: &str = r#"
K=$M/ssh
# ssh's options and destination, word-split on use; the user's config is not read.
SSH="-F /dev/null -i $K/user_key -o UserKnownHostsFile=$K/known_hosts -o BatchMode=yes -p 2222 wstest@127.0.0.1"
export SSH O K W
# Shell functions for the scripts run under `waysock headless` too (`. "$O/fn.sh"`).
cat >"$O/fn.sh" <<'EOF'
# Running and not a zombie (kill -0 succeeds on a zombie).
alive() { st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ]; }
# What waysock left in the shared places (the keys and logs are in $M).
leftovers() {
  find /tmp /run /dev/shm -mindepth 1 \( -path '*waysock*' -o -name 'wayland-*' \) \
    ! -name '*.registry' ! -name '*.registry.lock' 2>/dev/null | sort
}
alive_ssh_remote() { pgrep -u wstest -f '^[^ ]*waysock( -v)* ssh-remote' >/dev/null && echo yes || echo no; }
# How many NUL-separated words on stdin are 64-digit hex words (what a token looks like).
hex64() { tr '\0' '\n' | grep -cE '(^|[^0-9a-f])[0-9a-f]{64}([^0-9a-f]|$)'; }
EOF
. "$O/fn.sh"
"#;

fn case(test: &'static str, programs: &[&str]) -> Option<Scenario> {
    let mut all = vec!["ssh", "ssh-keygen", "ssh-keyscan", "timeout", "pgrep"];
    all.extend_from_slice(programs);
    if !Needs::new(test)
        .root("needs root for namespaces and sshd (CI runs as root)")
        .all_namespaces()
        .programs(&all)
        .file(std::path::Path::new("/usr/sbin/sshd"))
        .test_user()
        .met()
    {
        return None;
    }
    let stage = Stage::waysock("ssh", env!("CARGO_BIN_EXE_waysock"))
        .private_tmp()
        .home()
        .owned_by(TEST_USER)
        .with(|s| s.sh(SSHD).as_user(TEST_USER));
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(PRELUDE)
        .limit(Duration::from_secs(150));
    Some(Scenario { stage, script })
}

/// Through a real sshd, with weston here: `wayland-info` on the remote side lists
/// wl_compositor (its display is its own, bound by the chain without `XDG_RUNTIME_DIR`);
/// `weston-simple-shm` draws for 3 s (`timeout`'s 124 is ours); several clients share one
/// session; the client's status is ours; the token never appears on a command line; a
/// session that ends normally says nothing on stderr; and nothing is left on either side
/// afterwards.
#[test]
fn ssh_runs_remote_clients_on_the_local_compositor() {
    let Some(c) = case(
        "ssh_runs_remote_clients_on_the_local_compositor",
        &["weston", "wayland-info", "weston-simple-shm"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
cat >"$O/inner.sh" <<'EOF'
. "$O/fn.sh"
ssh $SSH 'echo "login_xdg=${XDG_RUNTIME_DIR:-none}"' >"$O/info" 2>"$O/info.err"
"$W" ssh $SSH -- sh -c 'echo "display=$WAYLAND_DISPLAY"; wayland-info' >>"$O/info" 2>>"$O/info.err"
echo $? >"$O/info.rc"
"$W" ssh $SSH -- timeout 3 weston-simple-shm >"$O/shm" 2>&1
echo $? >"$O/shm.rc"
# Several clients in one session, one after the other and two at once; meanwhile no command
# line anywhere carries a 64-digit hex word (the token).
"$W" ssh $SSH -- sh -c 'wayland-info | grep -c "interface: .wl_compositor."; timeout 2 weston-simple-shm & wayland-info | grep -c "interface: .wl_shm."; wait $!; echo "shm=$?"' >"$O/many" 2>"$O/many.err" &
P=$!
sleep 1
cat /proc/[0-9]*/cmdline 2>/dev/null | hex64 >"$O/tokens"
wait $P; echo $? >"$O/many.rc"
# The count sees a token where there is one.
printf 'waysock\0%s\0' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" | hex64 >"$O/tokens_seen"
"$W" ssh $SSH -- sh -c 'exit 7' 2>/dev/null; echo $? >"$O/rc7"
"$W" ssh $SSH -- /nonexistent/client 2>"$O/e127"; echo $? >"$O/rc127"
echo "$(alive_ssh_remote)" >"$O/remote_after"
ls -d /tmp/waysock-ssh-* 2>/dev/null >"$O/forwarded_after"
true
EOF
"$W" headless --compositor weston -- sh "$O/inner.sh" 2>"$O/headless.err"; status rc
say info_rc; cat "$O/info.rc"
say info; grep -E '^(login_xdg|display)=|wl_compositor' "$O/info"
say remote_display_gone; d=$(sed -n 's/^display=//p' "$O/info"); [ -n "$d" ] && [ ! -e "$d" ] && echo gone
say shm_rc; cat "$O/shm.rc"
say many_rc; cat "$O/many.rc"
say many; cat "$O/many"
say tokens; cat "$O/tokens"
say tokens_seen; cat "$O/tokens_seen"
say rc7; cat "$O/rc7"
say rc127; cat "$O/rc127"
say e127; cat "$O/e127"
say remote_after; cat "$O/remote_after"
say forwarded_after; cat "$O/forwarded_after"
say quiet; cat "$O/info.err" "$O/many.err"
say leftovers; leftovers
say logs; cat "$O/headless.err" "$O/shm"; tail -n 20 "$O/sshd.log"
"#,
    );
    out.eq("rc", "0")
        .eq("info_rc", "0")
        .contains("info", "login_xdg=none\n")
        .contains("info", "interface: 'wl_compositor'")
        .eq("remote_display_gone", "gone")
        .eq("shm_rc", "124")
        .eq("many_rc", "0")
        .eq("many", "1\n1\nshm=124")
        .eq("tokens", "0")
        .eq("tokens_seen", "1")
        .eq("rc7", "7")
        .eq("rc127", "127")
        .contains("e127", "cannot start /nonexistent/client")
        .eq("remote_after", "no")
        .eq("forwarded_after", "")
        .eq("quiet", "")
        .eq("leftovers", "");
    let display = out
        .sec("info")
        .lines()
        .find_map(|l| l.strip_prefix("display="))
        .unwrap_or_default();
    assert!(
        display.starts_with("/tmp/waysock-"),
        "the remote display was bound by the chain, not in a runtime dir: {display:?}\n{}",
        out.context()
    );
}

/// A clipboard round trip through sway (wlr-data-control) and ssh, both ways: text copied
/// here is pasted on the remote side, and text copied on the remote side is pasted there by a
/// second client of the same session.
#[test]
fn ssh_clipboard_round_trip_through_sway() {
    let Some(c) = case(
        "ssh_clipboard_round_trip_through_sway",
        &["sway", "wl-copy", "wl-paste"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
cat >"$O/inner.sh" <<'EOF'
. "$O/fn.sh"
wl-copy --foreground "copied here" 2>"$O/copy.err" &
CP=$!
i=0; until timeout 5 wl-paste --list-types >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.2; done
"$W" ssh $SSH -- timeout 20 wl-paste --no-newline >"$O/there" 2>"$O/there.err"
echo $? >"$O/there.rc"
kill $CP; wait $CP
"$W" ssh $SSH -- sh -c 'wl-copy "copied there"; i=0; until timeout 5 wl-paste --list-types >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.2; done; timeout 20 wl-paste --no-newline' >"$O/back" 2>"$O/back.err"
echo $? >"$O/back.rc"
EOF
"$W" headless --compositor sway -- sh "$O/inner.sh" 2>"$O/headless.err"; status rc
say there_rc; cat "$O/there.rc"
say there; cat "$O/there"; echo
say back_rc; cat "$O/back.rc"
say back; cat "$O/back"; echo
say remote_after; alive_ssh_remote
say leftovers; leftovers
say logs; cat "$O/there.err" "$O/back.err" "$O/copy.err" "$O/headless.err"; tail -n 20 "$O/sshd.log"
"#,
    );
    out.eq("rc", "0")
        .eq("there_rc", "0")
        .eq("there", "copied here")
        .eq("back_rc", "0")
        .eq("back", "copied there")
        .eq("remote_after", "no")
        .eq("leftovers", "");
}

/// ^C: SIGINT to `waysock ssh` ends ssh, the session, the remote client and the remote side;
/// ours is 130; the remote display, its directory and the forwarded socket are gone. And what
/// a user sees when the host cannot be reached, the key is refused, or waysock is not on the
/// remote PATH.
#[test]
fn ssh_interrupted_ends_both_sides_and_failures_are_named() {
    let Some(c) = case(
        "ssh_interrupted_ends_both_sides_and_failures_are_named",
        &["weston", "weston-simple-shm"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
cat >"$O/inner.sh" <<'EOF'
. "$O/fn.sh"
"$W" ssh $SSH -- sh -c "echo \"\$WAYLAND_DISPLAY\" >$O/rdisplay; echo \$\$ >$O/rpid; exec weston-simple-shm" >"$O/int.out" 2>"$O/int.err" &
P=$!
i=0; until [ -s "$O/rpid" ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done
sleep 1
echo "$(alive "$(cat "$O/rpid")" && echo yes || echo no)" >"$O/client_before"
echo "$(alive_ssh_remote)" >"$O/remote_before"
kill -INT $P; wait $P; echo $? >"$O/int.rc"
# The remote side notices the end of the session and cleans up within a few seconds.
i=0; while [ $i -lt 50 ] && { alive "$(cat "$O/rpid")" || [ "$(alive_ssh_remote)" = yes ]; }; do i=$((i+1)); sleep 0.1; done
echo "$(alive "$(cat "$O/rpid")" && echo yes || echo no)" >"$O/client_after"
echo "$(alive_ssh_remote)" >"$O/remote_after"
d=$(cat "$O/rdisplay"); [ -e "$d" ] && echo "$d" >"$O/display_after"; [ -e "$(dirname "$d")/$(basename "$d").lock" ] && echo lock >>"$O/display_after"
ls -d /tmp/waysock-ssh-* 2>/dev/null >>"$O/display_after"
# Failures: nothing listens on port 2223; a key sshd does not know; no waysock there.
"$W" ssh -F /dev/null -o BatchMode=yes -p 2223 wstest@127.0.0.1 -- true 2>"$O/unreachable"; echo $? >>"$O/unreachable"
ssh-keygen -q -t ed25519 -N '' -f "$O/stranger"
"$W" ssh -F /dev/null -i "$O/stranger" -o IdentitiesOnly=yes -o UserKnownHostsFile=$K/known_hosts -o BatchMode=yes -p 2222 wstest@127.0.0.1 -- true 2>"$O/refused"; echo $? >>"$O/refused"
"$W" ssh --remote-bin /nonexistent/waysock $SSH -- true 2>"$O/missing"; echo $? >>"$O/missing"
EOF
"$W" headless --compositor weston -- sh "$O/inner.sh" 2>"$O/headless.err"; status rc
say client_before; cat "$O/client_before"
say remote_before; cat "$O/remote_before"
say int_rc; cat "$O/int.rc"
say client_after; cat "$O/client_after"
say remote_after; cat "$O/remote_after"
say display_after; cat "$O/display_after"
say unreachable; cat "$O/unreachable"
say refused; cat "$O/refused"
say missing; cat "$O/missing"
say leftovers; leftovers
say logs; cat "$O/int.err" "$O/headless.err"; tail -n 20 "$O/sshd.log"
"#,
    );
    out.eq("rc", "0")
        .eq("client_before", "yes")
        .eq("remote_before", "yes")
        .eq("int_rc", "130")
        .eq("client_after", "no")
        .eq("remote_after", "no")
        .eq("display_after", "")
        .contains("unreachable", "Connection refused")
        .contains("unreachable", "ssh to wstest@127.0.0.1 failed (status 255)")
        .contains("refused", "Permission denied")
        .contains("refused", "ssh to wstest@127.0.0.1 failed (status 255)")
        .contains("missing", "/nonexistent/waysock")
        .contains("missing", "pass --remote-bin PATH")
        .contains("missing", "\n127")
        .eq("leftovers", "");
}
