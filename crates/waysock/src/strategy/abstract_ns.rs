//! Abstract socket names (`wayland-$UID-N`): the strategy that needs no writable directory at
//! all. Anyone can bind any abstract name first and a name has no permissions, so the uid in
//! the name keeps users apart and `SO_PEERCRED` ([`crate::peer`]) decides who may talk to whom.

use std::path::Path;

use super::{Claimed, Ctx, Finder, Place, Probed, Step};
use crate::classify;
use crate::discover::{accepts, ConnectError, Found};
use crate::endpoint::{abstract_display_name, Endpoint};
use crate::errno::Errno;
use crate::report::{Failure, Outcome, Report};
use crate::strategy::Strategy;
use crate::sys;

/// The abstract strategy.
pub(crate) struct Abstract;

/// The one instance the chain uses.
pub(crate) static ABSTRACT: Abstract = Abstract;

/// What binding one name gave.
enum Tried {
    Bound(std::os::fd::OwnedFd, Endpoint),
    Next,
    Stop(String),
}

impl Abstract {
    /// Binds the first free name (listening), recording every name tried.
    fn bind_first(&self, cx: &Ctx<'_>, report: &mut Report, probing: bool) -> Tried {
        let s = Strategy::Abstract;
        let uid = cx.env.uid;
        for name in cx.names.iter() {
            let abs = abstract_display_name(uid, &name);
            let endpoint = Endpoint::Abstract(abs.clone());
            let candidate = endpoint.to_string();
            match sys::unix_listen(sys::UnixAddr::Abstract(abs.as_bytes())) {
                Ok(fd) => {
                    report.push(
                        s,
                        &candidate,
                        "bind",
                        Outcome::Ok {
                            endpoint: endpoint.clone(),
                            note: probing.then(|| "bound and released again".to_string()),
                        },
                    );
                    return Tried::Bound(fd, endpoint);
                }
                Err(e) if e.errno == Errno::ADDRINUSE => report.push(
                    s,
                    &candidate,
                    "bind",
                    Outcome::Skipped {
                        reason: format!("{candidate} is in use (another server holds it)"),
                    },
                ),
                Err(e) => {
                    let mut f = classify::failure(e, Path::new(&candidate), uid);
                    f.path = None;
                    if !f.fatal {
                        f.cause = format!(
                            "{} on {candidate}: {} — abstract sockets are unavailable here \
                             (sandbox or seccomp filter)",
                            e.syscall,
                            e.errno.message()
                        );
                        f.remedy = "allow AF_UNIX sockets in the sandbox, or use a writable \
                                    directory"
                            .into();
                    }
                    let (fatal, cause) = (f.fatal, f.cause.clone());
                    report.push(s, &candidate, "bind", Outcome::Failed(f));
                    return if fatal {
                        Tried::Stop(cause)
                    } else {
                        Tried::Next
                    };
                }
            }
        }
        let f = Failure {
            syscall: Some("bind"),
            errno: Some(Errno::ADDRINUSE),
            path: None,
            cause: "every abstract name tried is in use".into(),
            remedy: "stop stale compositors (`waysock ls`), or pass --display NAME".into(),
            security: false,
            fatal: false,
        };
        report.push(
            s,
            &format!("abstract:{}", abstract_display_name(uid, "wayland-*")),
            "bind",
            Outcome::Failed(f),
        );
        Tried::Next
    }
}

impl Place for Abstract {
    fn strategy(&self) -> Strategy {
        Strategy::Abstract
    }

    fn claim(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Claimed> {
        match self.bind_first(cx, report, false) {
            Tried::Bound(listener, endpoint) => Step::Won(Claimed {
                strategy: Strategy::Abstract,
                client_endpoint: endpoint.clone(),
                endpoint,
                listener,
                lock: None,
                runtime_dir: None,
            }),
            Tried::Next => Step::Next,
            Tried::Stop(cause) => Step::Stop(cause),
        }
    }

    fn probe(&self, cx: &mut Ctx<'_>, report: &mut Report) -> Step<Probed> {
        match self.bind_first(cx, report, true) {
            // The socket closes here and the name is free again: abstract sockets leave
            // nothing behind.
            Tried::Bound(_released, endpoint) => Step::Won(Probed {
                strategy: Strategy::Abstract,
                endpoint,
            }),
            Tried::Next => Step::Next,
            Tried::Stop(cause) => Step::Stop(cause),
        }
    }

    fn not_for_stock(&self) -> &'static str {
        "a stock compositor binds in a directory; for an abstract socket `waysock run` \
         preloads its shim instead"
    }

    /// The first name served by our own uid; other users' servers on our names are refused
    /// (anyone could have bound them first) and listed.
    fn find(&self, finder: &mut Finder<'_>, report: &mut Report, found: &mut Vec<Found>) {
        let uid = finder.env.uid;
        let mut refused = Vec::new();
        let mut any = false;
        for name in finder.names.iter() {
            let ep = Endpoint::Abstract(abstract_display_name(uid, &name));
            // A live registry record led here already: one connection is proof enough.
            if found.iter().any(|f| f.endpoint == ep) {
                any = true;
                continue;
            }
            match accepts(&ep) {
                Ok(s) => {
                    any = true;
                    found.push(Found {
                        endpoint: ep,
                        source: "abstract".into(),
                        stream: Some(s),
                    });
                }
                Err(ConnectError::Io(e)) if classify::nothing_there(e) => {}
                Err(why) => refused.push(format!("{ep}: {why}")),
            }
        }
        if any && refused.is_empty() {
            return;
        }
        let place = finder.names.describe_abstract(uid);
        let outcome = if refused.is_empty() {
            Outcome::Skipped {
                reason: "nothing listening".into(),
            }
        } else {
            Outcome::Failed(
                Failure::policy(
                    None,
                    refused.join("; "),
                    "stop the impostor, or ask who runs it (`ss -xlp`)".into(),
                )
                .security(),
            )
        };
        report.push(Strategy::Abstract, &place, "connect", outcome);
    }
}
