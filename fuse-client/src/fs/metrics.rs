//! Per-operation counts, errors and latency of the FUSE adapter, and bytes read and
//! written through it, for the mount's `/metrics`.
//!
//! Every callback runs its work through `timed`, which notes the operation in a
//! thread-local while the work is polled: an error reply made there (through
//! [`errno`](super::errno)) is counted against that operation without touching the reply
//! code. Counting is a few relaxed atomic adds per operation.

use std::cell::Cell;
use std::future::Future;
use std::time::Instant;

use tessera_metrics::{Counter, Encoder, Histogram, Kind};

macro_rules! ops {
    ($($v:ident => $n:literal),* $(,)?) => {
        /// The FUSE operations the adapter answers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum FsOp { $($v),* }

        const NAMES: &[&str] = &[$($n),*];
    };
}

ops! {
    Lookup => "lookup", Getattr => "getattr", Setattr => "setattr", Readlink => "readlink",
    Mknod => "mknod", Mkdir => "mkdir", Unlink => "unlink", Rmdir => "rmdir",
    Symlink => "symlink", Rename => "rename", Link => "link", Open => "open",
    Create => "create", Read => "read", Write => "write", Flush => "flush",
    Release => "release", Fsync => "fsync", Opendir => "opendir", Releasedir => "releasedir",
    Readdir => "readdir",
    Readdirplus => "readdirplus", Fsyncdir => "fsyncdir", Statfs => "statfs",
    Setxattr => "setxattr", Getxattr => "getxattr", Listxattr => "listxattr",
    Removexattr => "removexattr", Access => "access", Getlk => "getlk", Setlk => "setlk",
    Fallocate => "fallocate", Lseek => "lseek", CopyFileRange => "copy_file_range",
    Ioctl => "ioctl", Tmpfile => "tmpfile",
}

const N: usize = NAMES.len();

#[derive(Debug)]
struct OpStats {
    calls: Counter,
    errors: Counter,
    latency: Histogram,
}

/// The adapter's counters (one set per process).
#[derive(Debug)]
pub struct FsMetrics {
    ops: [OpStats; N],
    /// Bytes returned to read calls.
    pub read_bytes: Counter,
    /// Bytes accepted from write calls.
    pub written_bytes: Counter,
}

static METRICS: FsMetrics = FsMetrics {
    ops: [const {
        OpStats {
            calls: Counter::new(),
            errors: Counter::new(),
            latency: Histogram::new(),
        }
    }; N],
    read_bytes: Counter::new(),
    written_bytes: Counter::new(),
};

thread_local! {
    static CURRENT: Cell<Option<FsOp>> = const { Cell::new(None) };
}

/// The process's FUSE counters.
pub fn fs_metrics() -> &'static FsMetrics {
    &METRICS
}

/// Counts an error reply against the operation being run on this thread, if any.
pub(super) fn note_error() {
    if let Some(op) = CURRENT.with(Cell::get) {
        METRICS.ops[op as usize].errors.inc();
    }
}

/// Marks `op` as the operation running on this thread until dropped.
pub(super) struct Running(Option<FsOp>);

impl Running {
    pub(super) fn enter(op: FsOp) -> Self {
        Running(CURRENT.with(|c| c.replace(Some(op))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Records one finished operation that started at `started`.
pub(super) fn finished(op: FsOp, started: Instant) {
    let s = &METRICS.ops[op as usize];
    s.calls.inc();
    s.latency.observe(started.elapsed());
}

/// An operation answered on the kernel's thread: counted and timed when dropped, unless
/// handed off to a task with [`Answering::hand_off`].
pub(super) struct Answering {
    op: FsOp,
    started: Instant,
    counted: bool,
    _running: Running,
}

impl Answering {
    pub(super) fn new(op: FsOp) -> Self {
        Answering {
            op,
            started: Instant::now(),
            counted: true,
            _running: Running::enter(op),
        }
    }

    /// The operation continues in a task (see [`timed_since`]); returns when it started.
    pub(super) fn hand_off(mut self) -> Instant {
        self.counted = false;
        self.started
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.counted {
            finished(self.op, self.started);
        }
    }
}

/// Runs `fut` as operation `op`: counts it, times it from now to completion and attributes
/// error replies made while it is polled.
pub(super) fn timed<F: Future<Output = ()>>(op: FsOp, fut: F) -> impl Future<Output = ()> {
    timed_since(op, Instant::now(), fut)
}

/// As [`timed`], for an operation that started at `started`.
pub(super) async fn timed_since<F: Future<Output = ()>>(op: FsOp, started: Instant, fut: F) {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let _running = Running::enter(op);
        fut.as_mut().poll(cx)
    })
    .await;
    finished(op, started);
}

impl FsMetrics {
    /// Renders the `tessera_fuse_*` families.
    pub fn render(&self, e: &mut Encoder) {
        let used = || {
            NAMES
                .iter()
                .zip(&self.ops)
                .filter(|(_, s)| s.calls.get() > 0)
        };
        let name = "tessera_fuse_requests_total";
        e.family(
            name,
            Kind::Counter,
            "FUSE operations answered, by operation.",
        );
        for (op, s) in used() {
            e.sample(name, &[("op", op)], s.calls.get());
        }
        let name = "tessera_fuse_errors_total";
        e.family(
            name,
            Kind::Counter,
            "FUSE operations answered with an error (ENOENT from lookup included), by operation.",
        );
        for (op, s) in used() {
            e.sample(name, &[("op", op)], s.errors.get());
        }
        let name = "tessera_fuse_request_duration_seconds";
        e.family(
            name,
            Kind::Histogram,
            "Time from the kernel's request to the reply, by operation.",
        );
        for (op, s) in used() {
            e.histogram(name, &[("op", op)], &s.latency.snapshot());
        }
        e.counter(
            "tessera_fuse_read_bytes_total",
            "Bytes returned to read requests.",
            self.read_bytes.get(),
        );
        e.counter(
            "tessera_fuse_written_bytes_total",
            "Bytes accepted from write requests.",
            self.written_bytes.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_variants() {
        assert_eq!(NAMES[FsOp::Lookup as usize], "lookup");
        assert_eq!(NAMES[FsOp::Fallocate as usize], "fallocate");
        assert_eq!(NAMES[FsOp::Readdirplus as usize], "readdirplus");
    }
}
