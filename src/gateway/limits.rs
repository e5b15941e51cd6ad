//! Rate limits (GCRA, from `governor`): per client IP on every API request, per token
//! subject (role and scope, e.g. `staff:c001`) once authenticated, and per websocket on
//! incoming messages. Over the limit: 429 problem+json with Retry-After, or a websocket
//! `error` with code `rate_limited`; a socket that keeps flooding is closed with 4029.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::settings;

pub struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_subject: DefaultKeyedRateLimiter<String>,
    /// Sign-ins with a link and refreshes: no token to key on, and each one is a guess at
    /// a secret, so per IP and far below the general limit.
    per_ip_session: DefaultKeyedRateLimiter<IpAddr>,
    /// Residents' one-time codes (issue #20): per phone (keyed by its SHA-256, so the
    /// limiter's memory holds no number) and per client address, per hour.
    code_per_phone: DefaultKeyedRateLimiter<String>,
    code_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    socket: Quota,
    /// One clock for every limiter: making one probes the CPU (cpuid), which cost a
    /// reconnect storm a few percent of its CPU when each socket made its own.
    clock: DefaultClock,
    pub flood_close_after: u32,
}

fn quota(per_s: u32, burst: u32) -> Quota {
    let nz = |v: u32| NonZeroU32::new(v.max(1)).expect("at least 1");
    Quota::per_second(nz(per_s)).allow_burst(nz(burst.max(per_s)))
}

/// `n` per hour, all of them at once if asked.
fn per_hour(n: u32) -> Quota {
    let nz = NonZeroU32::new(n.max(1)).expect("at least 1");
    Quota::with_period(Duration::from_secs(3600) / nz.get()).expect("a positive period").allow_burst(nz)
}

fn retry_after(wait: Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError {
        retry_after: Some(secs),
        ..ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry after {secs} s"),
        )
    }
}

impl RateLimits {
    pub fn new(cfg: &settings::Limits) -> Self {
        RateLimits {
            per_ip: RateLimiter::keyed(quota(cfg.http_per_ip_per_s, cfg.http_per_ip_burst)),
            per_subject: RateLimiter::keyed(quota(cfg.http_per_subject_per_s, cfg.http_per_subject_burst)),
            per_ip_session: RateLimiter::keyed({
                let nz = |v: u32| NonZeroU32::new(v.max(1)).expect("at least 1");
                Quota::per_minute(nz(cfg.session_per_ip_per_min)).allow_burst(nz(cfg.session_per_ip_burst))
            }),
            code_per_phone: RateLimiter::keyed(per_hour(5)),
            code_per_ip: RateLimiter::keyed(per_hour(30)),
            socket: quota(cfg.ws_messages_per_s, cfg.ws_messages_burst),
            clock: DefaultClock::default(),
            flood_close_after: cfg.ws_flood_close_after,
        }
    }

    /// The limits of residents' codes (`[residents]`), per hour.
    pub fn with_code_limits(mut self, per_phone: u32, per_ip: u32) -> Self {
        self.code_per_phone = RateLimiter::keyed(per_hour(per_phone));
        self.code_per_ip = RateLimiter::keyed(per_hour(per_ip));
        self
    }

    /// A code asked for this phone (its hash) from this address: both must have room.
    /// Every ask counts against the address (a refused one too: asking is what it limits);
    /// one refused by the address does not count against the phone.
    pub fn check_code(&self, phone_hash: &str, ip: IpAddr) -> Result<(), ApiError> {
        self.code_per_ip.check_key(&ip).map_err(|n| retry_after(n.wait_time_from(self.clock.now())))?;
        self.code_per_phone
            .check_key(&phone_hash.to_string())
            .map_err(|n| retry_after(n.wait_time_from(self.clock.now())))
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip.check_key(&ip).map_err(|n| retry_after(n.wait_time_from(self.clock.now())))
    }

    pub fn check_subject(&self, subject: &str) -> Result<(), ApiError> {
        self.per_subject.check_key(&subject.to_string()).map_err(|n| retry_after(n.wait_time_from(self.clock.now())))
    }

    /// A sign-in with a link or a refresh from this address.
    pub fn check_session(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip_session.check_key(&ip).map_err(|n| retry_after(n.wait_time_from(self.clock.now())))
    }

    /// A limiter for one socket's incoming messages.
    pub fn socket_limiter(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct_with_clock(self.socket, self.clock.clone())
    }

    /// Forgets keys that are back to a full bucket (run now and then).
    pub fn housekeeping(&self) {
        self.per_ip.retain_recent();
        self.per_subject.retain_recent();
        self.per_ip_session.retain_recent();
        self.per_ip_session.shrink_to_fit();
        self.code_per_phone.retain_recent();
        self.code_per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_subject.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_then_429_with_retry_after() {
        let cfg = settings::Limits {
            http_per_ip_per_s: 1,
            http_per_ip_burst: 2,
            http_per_subject_per_s: 1,
            http_per_subject_burst: 1,
            ws_messages_per_s: 1,
            ws_messages_burst: 1,
            ws_flood_close_after: 3,
            session_per_ip_per_min: 1,
            session_per_ip_burst: 1,
        };
        let l = RateLimits::new(&cfg);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(l.check_ip(ip).is_ok() && l.check_ip(ip).is_ok());
        let e = l.check_ip(ip).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        assert!(l.check_ip("127.0.0.10".parse().unwrap()).is_ok(), "another address has its own bucket");
        assert!(l.check_subject("staff:c1").is_ok());
        assert!(l.check_subject("staff:c1").is_err());
        assert!(l.check_session(ip).is_ok() && l.check_session(ip).is_err(), "sign-ins have their own bucket");
        let s = l.socket_limiter();
        assert!(s.check().is_ok() && s.check().is_err());
    }
}
