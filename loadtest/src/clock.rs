//! One clock for every process of a run: CLOCK_MONOTONIC is system-wide on Linux, so a
//! timestamp taken in a worker process compares with one taken by the coordinator, and a
//! wall-clock step (NTP) cannot bend a latency.

/// Microseconds on the system's monotonic clock.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Milliseconds between two `now_us` readings, as a float (negative if `to` is earlier).
pub fn ms_between(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) / 1000.0
}
