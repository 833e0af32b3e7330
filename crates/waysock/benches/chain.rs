//! What the strategy chain costs over what libwayland does anyway.
//!
//! Three loops, measured in the same run, interleaved sample by sample so that machine noise
//! hits all of them alike:
//!
//! - `libwayland`: the bare sequence `wl_display_add_socket` + `wl_display_destroy` perform in
//!   a good runtime dir: `open(NAME.lock, O_CREAT|O_RDWR|O_CLOEXEC, 0660)`,
//!   `flock(LOCK_EX|LOCK_NB)`, `socket`, `bind`, `listen`, then `unlink` socket and lock and
//!   `close` both.
//! - `first-works`: `Binder::bind` + drop with the default chain when the first directory
//!   candidate (`$XDG_RUNTIME_DIR`, the same scratch dir) works.
//! - `abstract-wins`: `Binder::bind` + drop when every filesystem candidate fails (roots,
//!   `XDG_RUNTIME_DIR` and `HOME` under a parent that does not exist) and the abstract socket
//!   wins; a display name unique to this process keeps it clear of anyone else.
//!
//! Each sample times a batch sized to take ~10 ms; the table shows the median ns per
//! iteration and its ratio to the `libwayland` median. Everything runs twice: in a scratch dir
//! under `/var/tmp` (whatever filesystem that is) and in a private dir in `/dev/shm` (tmpfs, like
//! a real `/run/user/UID`). Plain `std::time`, no harness. Run with
//! `cargo bench -p waysock --bench chain`; it takes about 6 s.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use waysock::{Binder, Environment, Roots, Strategy};
use waysock_testkit::{percentile, set_mode, Scratch};

/// Samples per loop.
const SAMPLES: usize = 101;
/// Wall time one sample's batch should take.
const BATCH_TARGET: Duration = Duration::from_millis(10);

/// libwayland's add-socket / destroy sequence, nothing else.
fn libwayland_once(dir: &Path) {
    let lock_path = dir.join("wayland-b.lock");
    let sock_path = dir.join("wayland-b");
    let lock = rustix::fs::open(
        &lock_path,
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o660),
    )
    .expect("open lock");
    rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).expect("flock");
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = SocketAddrUnix::new(&sock_path).expect("sockaddr");
    rustix::net::bind(&sock, &addr).expect("bind");
    rustix::net::listen(&sock, 128).expect("listen");
    black_box(&sock);
    rustix::fs::unlink(&sock_path).expect("unlink socket");
    rustix::fs::unlink(&lock_path).expect("unlink lock");
    drop(sock);
    drop(lock);
}

fn environment(base: &Path) -> Environment {
    Environment::clean(Roots::under(base))
}

/// One loop under test.
struct Loop<'a> {
    name: &'static str,
    what: &'static str,
    run: Box<dyn FnMut() + 'a>,
    batch: u64,
    per_iter_ns: Vec<f64>,
}

impl Loop<'_> {
    fn calibrate(&mut self) {
        // Warm up (page cache, dentries, allocator), then size the batch.
        for _ in 0..200 {
            (self.run)();
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < BATCH_TARGET {
            (self.run)();
            n += 1;
        }
        self.batch = n.max(1);
    }

    fn sample(&mut self) {
        let start = Instant::now();
        for _ in 0..self.batch {
            (self.run)();
        }
        let ns = start.elapsed().as_nanos() as f64 / self.batch as f64;
        self.per_iter_ns.push(ns);
    }

    fn median(&self) -> f64 {
        self.percentile(0.5)
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.per_iter_ns, p).expect("samples")
    }
}

/// A directory removed (with its content) on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    // The scratch dir is on whatever /var/tmp is (ext4 here); real runtime dirs are tmpfs
    // (/run/user/UID), so the same loops also run in a private dir in /dev/shm when it is
    // writable. Filesystem cost differs a lot between the two; the ratio is what matters.
    let scratch = Scratch::new("bench");
    let rt = scratch.path().join("rt");
    std::fs::create_dir(&rt).expect("mkdir rt");
    set_mode(&rt, 0o700);
    let fs_type = |p: &Path| {
        std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(p)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    bench_in(&rt, scratch.path(), &fs_type(&rt));

    let shm = PathBuf::from(format!("/dev/shm/waysock-bench-{}", std::process::id()));
    if std::fs::create_dir(&shm).is_ok() {
        let _guard = RemoveOnDrop(shm.clone());
        set_mode(&shm, 0o700);
        let rt = shm.join("rt");
        std::fs::create_dir(&rt).expect("mkdir shm rt");
        set_mode(&rt, 0o700);
        println!();
        bench_in(&rt, &shm, &fs_type(&rt));
    } else {
        println!("(/dev/shm is not writable: tmpfs run skipped)");
    }
}

/// Runs the three loops with the runtime dir `rt` and roots under `base`, and prints a table.
fn bench_in(rt: &Path, base: &Path, fs: &str) {
    // (a) the first candidate works.
    let mut env_a = environment(&base.join("roots"));
    env_a.xdg_runtime_dir = Some(rt.into());
    let binder_a = Binder::new(env_a).strategies(Strategy::DEFAULT_CHAIN.to_vec());
    {
        let b = binder_a.bind().expect("first-works setup");
        assert_eq!(b.strategy(), Strategy::RuntimeDir, "{}", b.report());
    }

    // (b) every filesystem candidate fails, abstract wins.
    let nowhere = base.join("nonexistent");
    let mut env_b = environment(&nowhere);
    env_b.xdg_runtime_dir = Some(nowhere.join("rt").into());
    env_b.home = Some(nowhere.join("home").into());
    let display = format!("wayland-{}", u64::from(std::process::id()) * 1000 + 999);
    let binder_b = Binder::new(env_b)
        .strategies(Strategy::DEFAULT_CHAIN.to_vec())
        .display(Some(display));
    {
        let b = binder_b.bind().expect("abstract-wins setup");
        assert_eq!(b.strategy(), Strategy::Abstract, "{}", b.report());
    }

    let mut loops = [
        Loop {
            name: "libwayland",
            what: "open+flock+socket+bind+listen, unlink+close",
            run: Box::new(move || libwayland_once(rt)),
            batch: 0,
            per_iter_ns: Vec::new(),
        },
        Loop {
            name: "first-works",
            what: "Binder::bind + drop, runtime-dir wins",
            run: Box::new(|| drop(black_box(binder_a.bind().expect("bind a")))),
            batch: 0,
            per_iter_ns: Vec::new(),
        },
        Loop {
            name: "abstract-wins",
            what: "Binder::bind + drop, 7 dirs fail, abstract wins",
            run: Box::new(|| drop(black_box(binder_b.bind().expect("bind b")))),
            batch: 0,
            per_iter_ns: Vec::new(),
        },
    ];
    for l in loops.iter_mut() {
        l.calibrate();
    }
    let samples = SAMPLES;
    let start = Instant::now();
    for _ in 0..samples {
        for l in loops.iter_mut() {
            l.sample();
        }
    }
    let elapsed = start.elapsed();
    // Nothing may be left behind in the runtime dir by any loop.
    let left: Vec<_> = std::fs::read_dir(rt)
        .expect("read rt")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind in {}: {left:?}", rt.display());
    assert!(!nowhere.exists(), "{} was created", nowhere.display());

    let base = loops[0].median();
    println!(
        "waysock chain bench: {samples} samples per loop, batches of ~{} ms, {:.1} s, dir {} ({fs})",
        BATCH_TARGET.as_millis(),
        elapsed.as_secs_f64(),
        rt.display()
    );
    println!("loop              median ns       p10 ns       p90 ns   ratio  what");
    for l in &loops {
        println!(
            "{:<14} {:>12.0} {:>12.0} {:>12.0} {:>6.2}x  {}",
            l.name,
            l.median(),
            l.percentile(0.1),
            l.percentile(0.9),
            l.median() / base,
            l.what
        );
    }
}
