//! How each patch crosses: raw, one LZ4 block or one zstd frame, whichever is expected to
//! bring it into the far side's copy soonest.
//!
//! A patch of `n` bytes costs about `n · (compress + decode + ratio · (channel + link))`
//! nanoseconds, per byte: the codec's compression time (measured here, on recent patches),
//! the far side's decoding time (a constant per codec), and each byte that crosses costs the
//! channel's sealing and opening plus the link's time. The link's time per byte is what the
//! far side saw: it times how long each large sealed record takes to arrive, whole, and
//! reports the rate back (`LINK_RATE`). On loopback that is a few GB/s, and LZ4 (or nothing,
//! for pixels that do not compress) wins; on a slow link, zstd's smaller output does.
//!
//! Each codec's figures (time per byte, ratio) come from the patches it packed; one not used
//! for a while is tried again on a patch (both outputs then exist, the smaller goes), unless
//! even a perfect ratio could not make it the better choice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::transport::Packing;

/// zstd's level: its fastest regular one (higher levels cost far more time than they save
/// bytes on pixels at the rates where zstd is chosen at all).
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// Sealing, opening, copying and writing one byte through the channel, both ends (ns), a
/// measured constant: on loopback (UI content, 2 CPUs) raw patches instead of LZ4 ones
/// (~250 kB more per frame, ~0.7 ms of LZ4 saved) cost ~0.4 ms more CPU per frame and a
/// fifth of the frames: about 4–5 ns per byte that crosses.
const CHANNEL_NS: f64 = 5.0;

/// Patches smaller than this pack by the figures but do not update them (their timing is
/// mostly fixed costs).
const SAMPLE_MIN: usize = 16 * 1024;

/// A codec unused for this many patches and this long is tried again.
const RETRY_PATCHES: u64 = 16;
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// What one codec costs, as last measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Est {
    /// Compression time per input byte (ns).
    pub ns: f64,
    /// Output bytes per input byte.
    pub ratio: f64,
    /// The patch count and time when it was last measured.
    pub at: u64,
    pub when: Option<Instant>,
}

impl Est {
    const fn new(ns: f64, ratio: f64) -> Est {
        Est {
            ns,
            ratio,
            at: 0,
            when: None,
        }
    }

    fn update(&mut self, ns: f64, ratio: f64, at: u64, now: Instant) {
        if self.when.is_none() {
            (self.ns, self.ratio) = (ns, ratio);
        } else {
            self.ns = 0.75 * self.ns + 0.25 * ns;
            self.ratio = 0.75 * self.ratio + 0.25 * ratio;
        }
        self.at = at;
        self.when = Some(now);
    }

    fn stale(&self, at: u64, now: Instant) -> bool {
        match self.when {
            None => true,
            Some(w) => at >= self.at + RETRY_PATCHES && now.duration_since(w) >= RETRY_AFTER,
        }
    }
}

/// The far side's time to decode one raw byte (ns): not measured, typical figures.
fn decode_ns(p: Packing) -> f64 {
    match p {
        Packing::Raw => 0.0,
        Packing::Lz4 => 0.2,
        Packing::Zstd => 0.6,
    }
}

/// Expected cost (ns per raw byte) of sending with `p` over a link of `link` ns per byte.
fn cost(p: Packing, e: &Est, link: f64) -> f64 {
    let wire = CHANNEL_NS + link;
    match p {
        Packing::Raw => wire,
        _ => e.ns + decode_ns(p) + e.ratio * wire,
    }
}

/// The choice for one patch: the codec to use, and one to try as well (stale figures).
pub(crate) fn choose(
    link: f64,
    lz4: &Est,
    zstd: &Est,
    at: u64,
    now: Instant,
) -> (Packing, Option<Packing>) {
    // Until zstd is measured, half LZ4's output is its guess.
    let zstd = &match zstd.when {
        None => Est {
            ratio: lz4.ratio / 2.0,
            ..*zstd
        },
        Some(_) => *zstd,
    };
    let costs = [
        (Packing::Raw, cost(Packing::Raw, lz4, link)),
        (Packing::Lz4, cost(Packing::Lz4, lz4, link)),
        (Packing::Zstd, cost(Packing::Zstd, zstd, link)),
    ];
    let (best, best_cost) = costs
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((Packing::Lz4, 0.0));
    // A stale codec is tried again only if a better ratio could make it the choice.
    let probe = [(Packing::Lz4, lz4), (Packing::Zstd, zstd)]
        .into_iter()
        .filter(|&(p, e)| p != best && e.stale(at, now))
        .filter(|&(p, e)| e.ns + decode_ns(p) < best_cost)
        .map(|(p, _)| p)
        .next();
    (best, probe)
}

/// Packs patch bodies for one session's sending side (shared by its sync threads).
pub(crate) struct Packer {
    /// The link's time per byte as the far side last reported it (f64 bits, ns; 0: none
    /// yet, taken as a fast link).
    link: AtomicU64,
    state: Mutex<State>,
    /// zstd contexts, reused (one per thread packing at a time).
    zstd: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    /// Tests: every patch with this codec, whatever it costs (`None`: by the figures).
    #[cfg(test)]
    forced: Option<Packing>,
    /// Tests: raw, LZ4, zstd in turn, patch after patch.
    #[cfg(test)]
    cycle: bool,
}

struct State {
    patches: u64,
    lz4: Est,
    zstd: Est,
}

impl Default for Packer {
    fn default() -> Packer {
        Packer {
            link: AtomicU64::new(0f64.to_bits()),
            state: Mutex::new(State {
                patches: 0,
                // Priors until measured: LZ4 first, as before.
                lz4: Est::new(0.5, 0.3),
                zstd: Est::new(1.0, 0.15),
            }),
            zstd: Mutex::new(Vec::new()),
            #[cfg(test)]
            forced: None,
            #[cfg(test)]
            cycle: false,
        }
    }
}

impl Packer {
    /// The far side saw records arrive at `rate` bytes per second.
    pub fn set_link_rate(&self, rate: u64) {
        let ns = if rate == 0 {
            0.0
        } else {
            (1e9 / rate as f64).min(1e6)
        };
        self.link.store(ns.to_bits(), Ordering::Relaxed);
    }

    /// The link's time per byte (ns) as last reported.
    pub fn link_ns(&self) -> f64 {
        f64::from_bits(self.link.load(Ordering::Relaxed))
    }

    /// Tests: a packer that packs every patch with `p`, even when that does not pay.
    #[cfg(test)]
    pub fn forced(p: Packing) -> Packer {
        Packer {
            forced: Some(p),
            ..Packer::default()
        }
    }

    /// Tests: a packer that packs patches raw, with LZ4 and with zstd in turn.
    #[cfg(test)]
    pub fn cycling() -> Packer {
        Packer {
            cycle: true,
            ..Packer::default()
        }
    }

    /// Packs `body`: the packing and the bytes that cross (the body itself when raw).
    pub fn pack(&self, body: Vec<u8>) -> (Packing, Vec<u8>) {
        let link = self.link_ns();
        let now = Instant::now();
        let (best, probe) = match self.state.lock() {
            Ok(mut st) => {
                st.patches += 1;
                choose(link, &st.lz4, &st.zstd, st.patches, now)
            }
            Err(_) => (Packing::Lz4, None),
        };
        #[cfg(test)]
        if let Some(p) = self.forced.or_else(|| {
            let n = self.state.lock().map(|s| s.patches).unwrap_or(0);
            self.cycle
                .then(|| [Packing::Raw, Packing::Lz4, Packing::Zstd][(n % 3) as usize])
        }) {
            return match self.compress(p, &body) {
                Some(bytes) => (p, bytes),
                None => (Packing::Raw, body),
            };
        }
        let mut out: Option<(Packing, Vec<u8>)> = None;
        for p in [Some(best), probe].into_iter().flatten() {
            if p == Packing::Raw {
                continue;
            }
            let Some(bytes) = self.compress(p, &body) else {
                continue;
            };
            let better = match &out {
                None => true,
                Some((_, o)) => bytes.len() < o.len(),
            };
            if better {
                out = Some((p, bytes));
            }
        }
        match out {
            // Worth it only when it saves something: incompressible pixels go as they are.
            Some((p, bytes)) if bytes.len() < body.len() - body.len() / 16 => (p, bytes),
            _ => (Packing::Raw, body),
        }
    }

    /// Compresses `body` with `p`, timing it into the figures (`None`: the codec failed).
    fn compress(&self, p: Packing, body: &[u8]) -> Option<Vec<u8>> {
        let mut t = Instant::now();
        let out = match p {
            Packing::Raw => return None,
            Packing::Lz4 => lz4_flex::block::compress(body),
            Packing::Zstd => {
                let ctx = self.zstd.lock().ok().and_then(|mut v| v.pop());
                let mut ctx = match ctx {
                    Some(c) => c,
                    None => zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?,
                };
                // A new context's setup is not the codec's rate.
                t = Instant::now();
                let out = ctx.compress(body).ok();
                if let Ok(mut v) = self.zstd.lock() {
                    v.push(ctx);
                }
                out?
            }
        };
        if body.len() >= SAMPLE_MIN {
            let ns = t.elapsed().as_nanos() as f64 / body.len() as f64;
            let ratio = out.len() as f64 / body.len() as f64;
            if let Ok(mut st) = self.state.lock() {
                let at = st.patches;
                let e = if p == Packing::Lz4 {
                    &mut st.lz4
                } else {
                    &mut st.zstd
                };
                e.update(ns, ratio, at, Instant::now());
            }
        }
        Some(out)
    }
}

/// The receiving side's view of the link: how fast large records arrived, to report back.
#[derive(Default)]
pub(crate) struct LinkMeter {
    /// Link time per byte (ns), averaged; 0 before any sample.
    ns: f64,
    /// What was last reported (ns per byte; 0: nothing yet).
    reported: f64,
}

impl LinkMeter {
    /// A record of `bytes` took `took` to arrive (from its first bytes to its last).
    pub fn sample(&mut self, bytes: usize, took: Duration) {
        let ns = took.as_nanos() as f64 / bytes.max(1) as f64;
        self.ns = if self.ns == 0.0 {
            ns.max(f64::MIN_POSITIVE)
        } else {
            (0.75 * self.ns + 0.25 * ns).max(f64::MIN_POSITIVE)
        };
    }

    /// The rate to report (bytes per second), when it moved by a fifth or more since the last
    /// report.
    pub fn report(&mut self) -> Option<u64> {
        if self.ns == 0.0 {
            return None;
        }
        let moved = self.reported == 0.0
            || (self.ns / self.reported) > 1.2
            || (self.reported / self.ns) > 1.2;
        if !moved {
            return None;
        }
        self.reported = self.ns;
        Some((1e9 / self.ns).min(u64::MAX as f64).max(1.0) as u64)
    }
}
