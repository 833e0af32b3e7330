//! Busy polling: a relay thread about to block in a read polls for a short while first when
//! an answer is likely (bytes were just forwarded towards that side), so it is picked up
//! without a sleep and a wake-up. Each side's answers are timed: when they take longer than
//! the poll (the far end across a link with a round trip of milliseconds), the thread sleeps
//! until shortly before the answer is due and polls from there, so an answer across a WAN is
//! picked up as promptly as one from the local compositor, for a short poll per round trip.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Stats;
use crate::stream::Stream;

/// How long a thread about to wait polls instead of sleeping, by default: a reply usually
/// follows within tens of µs, and waking a sleeping thread costs about as much again (more on
/// virtual machines), four times per roundtrip across the two bridge ends.
pub const DEFAULT_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(150);
/// Longest busy poll accepted (longer is clamped): polling is for replies that come within
/// microseconds, not a way to wait.
pub const MAX_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// A thread polls only while a reply is likely: bytes were forwarded to its peer this
/// recently. An idle session, or the side that is not expected to answer, sleeps at once.
const EXPECT_REPLY_US: u64 = 1_000;

/// Which side a relay thread reads from.
#[derive(Clone, Copy)]
pub(super) enum From {
    /// The local Wayland peer (the local → remote thread).
    Local = 0,
    /// The stream (the remote → local thread).
    Remote = 1,
}

/// Busy polling shared by a session's relay threads: when each side was last sent something
/// it may answer.
pub(super) struct BusyPoll {
    /// Longest poll before a blocking read, in µs (0: never poll).
    spin_us: u64,
    /// How long after bytes were forwarded an answer is still "likely" ([`EXPECT_REPLY_US`]).
    window_us: u64,
    epoch: std::time::Instant,
    /// When bytes were last forwarded towards each side (so an answer from there is likely),
    /// in µs since `epoch`, plus one (0: never); indexed by [`From`].
    expect_us: [AtomicU64; 2],
    /// How long each side's answers have taken lately, in µs (a moving average; 0: none
    /// timed yet); indexed by [`From`].
    answer_us: [AtomicU64; 2],
    stats: Arc<Stats>,
}

impl BusyPoll {
    pub(super) fn new(busy_poll: std::time::Duration, stats: Arc<Stats>) -> BusyPoll {
        BusyPoll {
            spin_us: busy_poll.min(MAX_BUSY_POLL).as_micros() as u64,
            window_us: EXPECT_REPLY_US,
            epoch: std::time::Instant::now(),
            expect_us: [AtomicU64::new(0), AtomicU64::new(0)],
            answer_us: [AtomicU64::new(0), AtomicU64::new(0)],
            stats,
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Bytes were just forwarded towards `to`: an answer from there is likely soon.
    pub(super) fn expect_reply(&self, to: From) {
        self.expect_us[to as usize].store(self.now_us() + 1, Ordering::Relaxed);
    }

    /// When an answer from `from` became likely, if it still is (for the window, or twice as
    /// long as that side's answers take).
    fn expected(&self, from: From) -> Option<u64> {
        let at = self.expect_us[from as usize]
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        let window = self.window_us.max(2 * self.answer(from) + self.spin_us);
        (self.now_us().saturating_sub(at) <= window).then_some(at)
    }

    /// How long answers from `from` have taken lately (µs; 0: not known).
    fn answer(&self, from: From) -> u64 {
        self.answer_us[from as usize].load(Ordering::Relaxed)
    }

    /// An answer from `from` took `us`.
    fn timed(&self, from: From, us: u64) {
        let a = &self.answer_us[from as usize];
        let old = a.load(Ordering::Relaxed);
        a.store(
            if old == 0 {
                us.max(1)
            } else {
                (7 * old + us) / 8
            },
            Ordering::Relaxed,
        );
    }
}

/// One relay thread's side of busy polling, adapted to its peer: a poll that runs out without
/// the reply turns polling off, and it comes back on once a reply arrives within the budget
/// (so a peer that does not answer promptly — one-way traffic, a busy client — costs one poll,
/// not one per message).
pub(super) struct Poller {
    from: From,
    enabled: bool,
    /// This wait is for an answer expected since then (µs since the epoch).
    waiting_since: Option<u64>,
    /// How late this thread's timed sleeps have woken lately (µs, a moving average).
    late_us: u64,
}

impl Poller {
    pub(super) fn new(from: From) -> Poller {
        Poller {
            from,
            enabled: true,
            waiting_since: None,
            late_us: 0,
        }
    }

    /// Before a blocking read of `fd`: if an answer is likely, poll for a short while, yielding
    /// the CPU between polls, so it is picked up without a sleep and a wake-up. An answer
    /// that usually takes longer than the poll is slept for until shortly before it is due
    /// (a wait that ends at once if it comes early), then polled for.
    pub(super) fn before_read(&mut self, bp: &BusyPoll, fd: BorrowedFd<'_>) {
        self.waiting_since = None;
        if bp.spin_us == 0 {
            return;
        }
        let Some(expected) = bp.expected(self.from) else {
            return;
        };
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let ready = |pfd: &mut [rustix::event::PollFd<'_>], us: u64| {
            let t = rustix::time::Timespec {
                tv_sec: (us / 1_000_000) as i64,
                tv_nsec: ((us % 1_000_000) * 1000) as i64,
            };
            !matches!(rustix::event::poll(pfd, Some(&t)), Ok(0))
        };
        if ready(&mut pfd, 0) {
            // Already here: nothing was waited for.
            return;
        }
        self.waiting_since = Some(expected);
        if !self.enabled {
            return;
        }
        bp.stats.busy_polls.fetch_add(1, Ordering::Relaxed);
        let due = expected + bp.answer(self.from);
        let now = bp.now_us();
        // Woken early by the poll's length plus how late such sleeps have woken lately.
        let early = bp.spin_us + self.late_us;
        if due > now + early + bp.spin_us {
            let want = due - early;
            if ready(&mut pfd, want - now) {
                return;
            }
            let late = bp
                .now_us()
                .saturating_sub(want)
                .min(MAX_BUSY_POLL.as_micros() as u64);
            self.late_us = (7 * self.late_us + late) / 8;
        }
        let until = bp.now_us().max(due) + bp.spin_us;
        loop {
            if ready(&mut pfd, 0) {
                return;
            }
            if bp.now_us() > until {
                self.enabled = false;
                bp.stats.busy_poll_misses.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }

    /// After the read returned: times the answer that was waited for; if polling is off and
    /// the answer came when a poll at its due time would have caught it, polling comes back
    /// on.
    pub(super) fn after_read(&mut self, bp: &BusyPoll) {
        let Some(since) = self.waiting_since.take() else {
            return;
        };
        let took = bp.now_us().saturating_sub(since);
        bp.timed(self.from, took);
        if !self.enabled && took <= bp.answer(self.from) + bp.spin_us {
            self.enabled = true;
        }
    }
}

/// The stream's read half, polling briefly before it would block (see [`Poller`]).
pub(super) struct SpinRead<'a> {
    pub(super) poll: &'a BusyPoll,
    pub(super) poller: Poller,
    pub(super) stream: Stream,
}

impl io::Read for SpinRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poller.before_read(self.poll, self.stream.as_fd());
        let r = self.stream.read(buf);
        self.poller.after_read(self.poll);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// A session's polling state with a generous "reply likely" window, so that a slow test
    /// machine does not make an expectation look stale.
    fn busy_poll(us: u64) -> BusyPoll {
        let mut bp = BusyPoll::new(Duration::from_micros(us), Arc::new(Stats::default()));
        bp.window_us = 10_000_000;
        bp
    }

    fn counts(bp: &BusyPoll) -> (u64, u64) {
        (
            bp.stats.busy_polls.load(Ordering::Relaxed),
            bp.stats.busy_poll_misses.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn nothing_forwarded_yet_means_no_poll() {
        let bp = busy_poll(10_000);
        let (x, _y) = UnixStream::pair().unwrap();
        let mut p = Poller::new(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
        // Forwarded towards the other side only: still nothing expected from this one.
        bp.expect_reply(From::Remote);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
    }

    #[test]
    fn a_poll_that_runs_out_turns_polling_off_until_a_prompt_reply() {
        let bp = busy_poll(10_000);
        let (mut x, mut y) = UnixStream::pair().unwrap();
        let mut p = Poller::new(From::Local);
        // Expected, but nothing comes: one poll, run out.
        bp.expect_reply(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (1, 1));
        // Off now: the next waits do not poll, however likely an answer.
        bp.expect_reply(From::Local);
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (1, 1));
        // That answer arrives well within the budget: polling comes back on.
        y.write_all(b"a").unwrap();
        let mut one = [0u8; 1];
        x.read_exact(&mut one).unwrap();
        p.after_read(&bp);
        assert!(p.enabled);
        // An answer already there is read at once: no poll.
        bp.expect_reply(From::Local);
        y.write_all(b"b").unwrap();
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (1, 1));
        x.read_exact(&mut one).unwrap();
        p.after_read(&bp);
        // One that comes a moment later is polled for, and found.
        bp.expect_reply(From::Local);
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            y.write_all(b"c").unwrap();
            y
        });
        p.before_read(&bp, x.as_fd());
        let _y = late.join().unwrap();
        assert_eq!(counts(&bp), (2, 1), "polls again, and finds the answer");
    }

    #[test]
    fn answers_are_timed_and_a_slow_answer_keeps_polling_on() {
        // A far end across a long round trip: its answer takes 30 ms, far longer than the
        // poll. The first wait polls, runs out and sleeps; the answer is timed, and since it
        // came when a poll starting at its due time would catch it, polling stays on (the
        // next wait sleeps until shortly before the answer is due, then polls).
        let bp = busy_poll(1_000);
        let (mut x, y) = UnixStream::pair().unwrap();
        let mut p = Poller::new(From::Remote);
        let mut one = [0u8; 1];
        let mut y = Some(y);
        for round in 0..3 {
            bp.expect_reply(From::Remote);
            let mut w = y.take().unwrap();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                w.write_all(b"x").unwrap();
                w
            });
            p.before_read(&bp, x.as_fd());
            x.read_exact(&mut one).unwrap();
            p.after_read(&bp);
            y = Some(t.join().unwrap());
            assert!(bp.answer(From::Remote) >= 30_000, "round {round}");
            if round == 0 {
                // The poll ran out; the answer came when a poll at its due time catches it.
                assert_eq!(counts(&bp), (1, 1));
                assert!(p.enabled, "polling back on for an answer that takes long");
            }
        }
    }

    #[test]
    fn an_answer_stays_expected_for_as_long_as_answers_take() {
        // The usual window (1 ms): past it, nothing is expected any more ...
        let bp = BusyPoll::new(Duration::from_micros(150), Arc::new(Stats::default()));
        bp.expect_reply(From::Remote);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(bp.expected(From::Remote), None);
        // ... unless that side's answers take longer: then for twice as long as they take.
        bp.timed(From::Remote, 1_000_000);
        assert!(bp.expected(From::Remote).is_some());
        assert_eq!(bp.expected(From::Local), None);
    }

    #[test]
    fn a_zero_budget_never_polls_and_a_huge_one_is_clamped() {
        let bp = busy_poll(0);
        let (x, _y) = UnixStream::pair().unwrap();
        bp.expect_reply(From::Local);
        Poller::new(From::Local).before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (0, 0));
        assert_eq!(busy_poll(60_000_000).spin_us, 10_000);
    }
}
