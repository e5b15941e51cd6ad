//! Configuration: config/default.toml (compiled in), then the file given with `--config`
//! laid over it, then `MUSTER_<SECTION>__<KEY>` environment variables over both. Unknown
//! keys and bad values are errors: muster refuses to start rather than guess.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::response::Rules;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The development secret in config/default.toml: accepted only with `serve --demo`.
pub fn is_development_secret(secret: &str) -> bool {
    secret == "muster-development-secret-do-not-use-in-production"
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Empty: one node on the embedded store. `redis://…`: several nodes on Redis
    /// (MUSTER_REDIS_URL; docs/ARCHITECTURE.md, "Several nodes on Redis").
    pub redis_url: String,
    pub redis: Redis,
    pub server: Server,
    pub auth: Auth,
    pub ws: Ws,
    pub engine: Engine,
    pub limits: Limits,
    pub log: Log,
    pub webhooks: Webhooks,
    pub push: Push,
    pub dispatch: Rules,
    /// `[residents]` (issue #20): residents' sign-in by a code to their phone.
    pub residents: Residents,
}

/// `[residents]`: how one-time codes reach residents' phones, and how often one may ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residents {
    /// An HTTP SMS gateway: POST `{"to": phone, "text": message}`; empty: none.
    pub sms_url: String,
    /// Milliseconds the SMS gateway has to answer.
    pub sms_timeout_ms: u64,
    /// Print each code in the log (keyed by its challenge id, never with the phone).
    /// `serve --demo` turns it on.
    pub log_codes: bool,
    /// Seconds a code is valid.
    pub code_ttl_s: u64,
    /// Codes one phone may be sent per hour, and per client address.
    pub codes_per_phone_per_hour: u32,
    pub codes_per_ip_per_hour: u32,
}

/// `[push]`: Web Push to members' browsers (`crate::push`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// The VAPID private key (base64url of the 32-byte P-256 scalar; `muster vapid` makes
    /// one). Empty: push is off (with `serve --demo`, one is made in the data directory).
    pub vapid_private_key: String,
    /// The VAPID `sub` claim: how a push service may reach the operator.
    pub subject: String,
    /// A member with a live socket is pushed only if the offer or order is still
    /// unanswered this long after it was sent.
    pub ack_wait_ms: u64,
    pub attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout_ms: u64,
    /// Pushes in flight at once.
    pub concurrency: usize,
    pub poll_ms: u64,
    /// CIDRs a push endpoint may resolve to although private, loopback or link-local.
    pub allow_cidrs: Vec<String>,
}

impl Push {
    pub fn allowed(&self) -> Vec<ipnet::IpNet> {
        self.allow_cidrs.iter().filter_map(|c| c.parse().ok()).collect()
    }
}

/// `[webhooks]`: outbound delivery (`crate::webhooks`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    /// CIDRs a webhook URL may resolve to although private, loopback or link-local.
    pub allow_cidrs: Vec<String>,
    pub attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout_ms: u64,
    pub disable_after_dead: u32,
    pub poll_ms: u64,
}

impl Webhooks {
    /// The allow-list, parsed (`validate` made sure it parses).
    pub fn allowed(&self) -> Vec<ipnet::IpNet> {
        self.allow_cidrs.iter().filter_map(|c| c.parse().ok()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    pub listen_backlog: u32,
    pub listeners: u32,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub max_city_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub shutdown_grace_s: u64,
    pub max_list: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub secret: String,
    pub token_ttl_s: u64,
    pub access_ttl_s: u64,
    pub session_ttl_s: u64,
    pub invitation_ttl_s: u64,
    pub invitation_max_ttl_s: u64,
    pub public_url: String,
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ws {
    pub max_message_bytes: usize,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    pub outbound_queue: usize,
    pub ping_interval_s: u64,
    pub ping_timeout_s: u64,
    pub max_replay: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub http_per_ip_per_s: u32,
    pub http_per_ip_burst: u32,
    pub http_per_subject_per_s: u32,
    pub http_per_subject_burst: u32,
    pub ws_messages_per_s: u32,
    pub ws_messages_burst: u32,
    pub ws_flood_close_after: u32,
    pub session_per_ip_per_min: u32,
    pub session_per_ip_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    pub mailbox: usize,
    pub batch_max: usize,
    pub position_flush_s: u64,
    pub snapshot_every: u64,
    pub replica_nice: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub prefix: String,
    pub node_id: String,
    pub lease_ms: u64,
    pub require_persistence: bool,
    pub command_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read configuration file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("configuration file {0} is not valid TOML: {1}")]
    Parse(String, toml::de::Error),
    #[error("environment variable {0}: {1}")]
    Env(String, String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings: defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_with_env(file, std::env::vars())
    }

    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut table: toml::Table =
            DEFAULT_TOML.parse().map_err(|e| SettingsError::Parse("config/default.toml".into(), e))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read(path.into(), e))?;
            let over: toml::Table = text.parse().map_err(|e| SettingsError::Parse(path.display().to_string(), e))?;
            merge(&mut table, over);
        }
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("MUSTER_") else { continue };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(SettingsError::Env(key, "use MUSTER_<SECTION>__<KEY>".into()));
            }
            set_path(&mut table, &path, parse_env_value(&value)).map_err(|e| SettingsError::Env(key.clone(), e))?;
        }
        let settings: Settings =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| SettingsError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.dispatch.validate().map_err(SettingsError::Invalid)?;
        let bad = |m: &str| Err(SettingsError::Invalid(m.into()));
        if self.auth.secret.len() < 16 {
            return bad("auth.secret must be at least 16 characters");
        }
        if !(1..=3600).contains(&self.residents.code_ttl_s) {
            return bad("residents.code_ttl_s must be 1 to 3600");
        }
        let a = &self.auth;
        if a.access_ttl_s == 0 || a.session_ttl_s == 0 || a.invitation_ttl_s == 0 {
            return bad("auth.access_ttl_s, auth.session_ttl_s and auth.invitation_ttl_s must be at least 1");
        }
        if a.invitation_max_ttl_s < a.invitation_ttl_s
            || a.invitation_max_ttl_s > crate::domain::access::MAX_INVITATION_TTL_S
        {
            return bad("auth.invitation_max_ttl_s must be at least auth.invitation_ttl_s and at most 366 days");
        }
        if !(a.public_url.is_empty() || a.public_url.starts_with("http://") || a.public_url.starts_with("https://")) {
            return bad("auth.public_url must be empty or start with http:// or https://");
        }
        if !(1..=64).contains(&self.server.listeners) {
            return bad("server.listeners must be 1 to 64");
        }
        if self.ws.outbound_queue == 0 || self.engine.mailbox == 0 || self.engine.batch_max == 0 {
            return bad("ws.outbound_queue, engine.mailbox and engine.batch_max must be at least 1");
        }
        if self.ws.ping_interval_s == 0 || self.ws.ping_timeout_s <= self.ws.ping_interval_s {
            return bad("ws.ping_timeout_s must be longer than ws.ping_interval_s (> 0)");
        }
        if self.ws.max_message_bytes < 256 || self.server.max_body_bytes < 256 {
            return bad("ws.max_message_bytes and server.max_body_bytes must be at least 256");
        }
        if !(-20..=19).contains(&self.engine.replica_nice) {
            return bad("engine.replica_nice must be a nice value, -20 to 19");
        }
        let w = &self.webhooks;
        if let Some(c) = w.allow_cidrs.iter().find(|c| c.parse::<ipnet::IpNet>().is_err()) {
            return Err(SettingsError::Invalid(format!(
                "webhooks.allow_cidrs: '{c}' is not a CIDR such as 10.0.0.0/8"
            )));
        }
        if w.attempts == 0 || w.timeout_ms == 0 || w.poll_ms == 0 || w.backoff_max_ms < w.backoff_base_ms {
            return bad(
                "webhooks.attempts, timeout_ms and poll_ms must be at least 1, backoff_max_ms at least backoff_base_ms",
            );
        }
        let p = &self.push;
        if let Some(c) = p.allow_cidrs.iter().find(|c| c.parse::<ipnet::IpNet>().is_err()) {
            return Err(SettingsError::Invalid(format!("push.allow_cidrs: '{c}' is not a CIDR such as 10.0.0.0/8")));
        }
        if p.attempts == 0
            || p.timeout_ms == 0
            || p.poll_ms == 0
            || p.concurrency == 0
            || p.backoff_max_ms < p.backoff_base_ms
        {
            return bad(
                "push.attempts, timeout_ms, poll_ms and concurrency must be at least 1, backoff_max_ms at least backoff_base_ms",
            );
        }
        if !p.vapid_private_key.is_empty() && crate::push::vapid::Vapid::from_private(&p.vapid_private_key).is_err() {
            return bad("push.vapid_private_key must be the base64url of a P-256 private key (muster vapid makes one)");
        }
        if !(p.subject.starts_with("mailto:") || p.subject.starts_with("https://")) {
            return bad("push.subject must be a mailto: or https: URI");
        }
        if !self.redis_url.is_empty() {
            if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("redis+unix://")) {
                return bad("redis_url must be empty or a redis:// address");
            }
            let p = &self.redis.prefix;
            if p.is_empty() || p.len() > 64 || p.contains(['{', '}', ' ']) {
                return bad("redis.prefix must be 1 to 64 characters, without braces or spaces");
            }
            if self.redis.lease_ms < 300 || self.redis.command_timeout_ms < 100 {
                return bad("redis.lease_ms must be at least 300 and redis.command_timeout_ms at least 100");
            }
        }
        Ok(())
    }
}

/// A value from the environment: TOML if it parses as a TOML value, else a plain string.
fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("non-empty path");
    // Environment names are upper case; match keys that differ only in case (levels.IV).
    let key_in =
        |t: &toml::Table, k: &str| t.keys().find(|x| x.eq_ignore_ascii_case(k)).cloned().unwrap_or(k.to_string());
    let mut t = table;
    for p in parents {
        let p = key_in(t, p);
        t = match t.entry(p.clone()).or_insert_with(|| toml::Value::Table(Default::default())) {
            toml::Value::Table(inner) => inner,
            _ => return Err(format!("'{p}' is not a section")),
        };
    }
    let last = key_in(t, last);
    t.insert(last, value);
    Ok(())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(s.dispatch.levels.iv.reach, vec![crate::domain::response::Reach::Grid]);
        assert!(is_development_secret(&s.auth.secret));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let env = vec![
            ("MUSTER_SERVER__LISTEN".to_string(), "127.0.0.1:0".to_string()),
            ("MUSTER_DISPATCH__OFFER_TTL_S".to_string(), "7".to_string()),
            ("MUSTER_AUTH__SECRET".to_string(), "a-secret-of-enough-length".to_string()),
        ];
        let s = Settings::load_with_env(None, env).unwrap();
        assert_eq!(s.server.listen.port(), 0);
        assert_eq!(s.dispatch.offer_ttl_s, 7);
        assert_eq!(s.auth.secret, "a-secret-of-enough-length");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let env = vec![("MUSTER_SERVER__LISTN".to_string(), "x".to_string())];
        assert!(Settings::load_with_env(None, env).is_err());
        let env = vec![("MUSTER_DISPATCH__OVERBOOK".to_string(), "0.2".to_string())];
        assert!(Settings::load_with_env(None, env).is_err());
        let env = vec![("MUSTER_ENGINE__REPLICA_NICE".to_string(), "-21".to_string())];
        assert!(Settings::load_with_env(None, env).is_err());
        let env = vec![("MUSTER_ENGINE__REPLICA_NICE".to_string(), "0".to_string())];
        assert_eq!(Settings::load_with_env(None, env).expect("0 leaves the priority alone").engine.replica_nice, 0);
    }

    #[test]
    fn a_file_is_laid_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "[dispatch]\ngeofence_m = 55.0\n").unwrap();
        let s = Settings::load_with_env(Some(&path), Vec::new()).unwrap();
        assert_eq!(s.dispatch.geofence_m, 55.0);
        assert_eq!(s.dispatch.offer_ttl_s, 90);
    }
}
