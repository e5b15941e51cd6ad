//! Time as the domain sees it: milliseconds since the epoch, always passed in (`now`), and
//! the one way it is written on the wire.
//!
//! Separate so that every room can name `Ts` and format a time without depending on the
//! event log or the kernel (it used to live in both).

/// Milliseconds since the Unix epoch. Time is always an input to the domain.
pub type Ts = i64;

/// RFC 3339 UTC with milliseconds, as every time on the wire.
pub fn rfc3339(ts: Ts) -> String {
    chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
