//! Busy polling: a relay thread about to block in a read polls for a short while first when
//! an answer is likely (bytes were just forwarded towards that side), so it is picked up
//! without a sleep and a wake-up.

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
    stats: Arc<Stats>,
}

impl BusyPoll {
    pub(super) fn new(busy_poll: std::time::Duration, stats: Arc<Stats>) -> BusyPoll {
        BusyPoll {
            spin_us: busy_poll.min(MAX_BUSY_POLL).as_micros() as u64,
            window_us: EXPECT_REPLY_US,
            epoch: std::time::Instant::now(),
            expect_us: [AtomicU64::new(0), AtomicU64::new(0)],
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

    /// When an answer from `from` became likely, if it still is.
    fn expected(&self, from: From) -> Option<u64> {
        let at = self.expect_us[from as usize]
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        (self.now_us().saturating_sub(at) <= self.window_us).then_some(at)
    }
}

/// One relay thread's side of busy polling, adapted to its peer: a poll that runs out without
/// the reply turns polling off, and it comes back on once a reply arrives within the budget
/// (so a peer that does not answer promptly — one-way traffic, a busy client — costs one poll,
/// not one per message).
pub(super) struct Poller {
    from: From,
    enabled: bool,
    /// Polling was off for this wait, and an answer was expected since then.
    unpolled_since: Option<u64>,
}

impl Poller {
    pub(super) fn new(from: From) -> Poller {
        Poller {
            from,
            enabled: true,
            unpolled_since: None,
        }
    }

    /// Before a blocking read of `fd`: if an answer is likely, poll for a short while, yielding
    /// the CPU between polls, so it is picked up without a sleep and a wake-up.
    pub(super) fn before_read(&mut self, bp: &BusyPoll, fd: BorrowedFd<'_>) {
        self.unpolled_since = None;
        if bp.spin_us == 0 {
            return;
        }
        let Some(expected) = bp.expected(self.from) else {
            return;
        };
        if !self.enabled {
            self.unpolled_since = Some(expected);
            return;
        }
        bp.stats.busy_polls.fetch_add(1, Ordering::Relaxed);
        let start = bp.now_us();
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut pfd, Some(&zero)) {
                Ok(n) if n > 0 => return,
                Ok(_) => {}
                Err(_) => return,
            }
            if bp.now_us().saturating_sub(start) > bp.spin_us {
                self.enabled = false;
                bp.stats.busy_poll_misses.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }

    /// After the read returned: if polling was off and the answer came within the budget,
    /// polling would have caught it — turn it back on.
    pub(super) fn after_read(&mut self, bp: &BusyPoll) {
        if let Some(since) = self.unpolled_since.take() {
            if bp.now_us().saturating_sub(since) <= bp.spin_us {
                self.enabled = true;
            }
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
        bp.expect_reply(From::Local);
        y.write_all(b"b").unwrap();
        p.before_read(&bp, x.as_fd());
        assert_eq!(counts(&bp), (2, 1), "polls again, and finds the answer");
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
