//! The HTTP calls the scenarios make, and the tokens they sign (with the server's secret,
//! through muster's own `TokenKeys`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use muster::gateway::auth::{Claims, Role, TokenKeys};
use serde_json::{Value, json};

use crate::clock::now_us;

/// Tokens live this long: longer than any bounded run.
const TOKEN_TTL_S: u64 = 6 * 3600;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    keys: TokenKeys,
}

/// An answer with the times around it.
#[derive(Debug, Clone)]
pub struct Timed {
    pub status: u16,
    pub body: Value,
    pub sent: u64,
    pub got: u64,
}

impl Api {
    pub fn new(addr: SocketAddr, secret: &str) -> anyhow::Result<Api> {
        anyhow::ensure!(addr.ip().is_loopback(), "the harness sends traffic to loopback only, not {addr}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()?;
        Ok(Api { http, base: format!("http://{addr}"), keys: TokenKeys::new(secret) })
    }

    pub fn token(&self, role: Role, scope: Option<&str>) -> String {
        let now = muster::engine::now_ms() as u64 / 1000;
        let claims = Claims::new(role, scope.map(str::to_string), now, TOKEN_TTL_S).expect("complete scope");
        self.keys.sign(&claims)
    }

    pub fn command(&self) -> String {
        self.token(Role::Command, None)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Timed> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let sent = now_us();
        let resp = req.send().await.with_context(|| path.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let got = now_us();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok(Timed { status, body, sent, got })
    }

    pub async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let t = self.send(reqwest::Method::GET, token, path, None, None).await?;
        if t.status != 200 {
            bail!("GET {path}: {} {}", t.status, t.body);
        }
        Ok(t.body)
    }

    pub async fn city_mode(&self, mode: &str, reason: &str) -> anyhow::Result<()> {
        let body = json!({"mode": mode, "reason": reason});
        let t = self.send(reqwest::Method::PUT, &self.command(), "/v1/city/mode", Some(&body), None).await?;
        if t.status != 200 && !(t.status == 409 && t.body["code"] == "already_in_mode") {
            bail!("PUT /v1/city/mode: {} {}", t.status, t.body);
        }
        Ok(())
    }

    /// `POST /v1/mobilizations {"all_assault": true}`.
    pub async fn mobilize_all(&self, deadline_s: u64) -> anyhow::Result<Timed> {
        let body = json!({"all_assault": true, "deadline_s": deadline_s, "note": "Delta surge (load harness)"});
        let t = self.send(reqwest::Method::POST, &self.command(), "/v1/mobilizations", Some(&body), None).await?;
        if t.status != 201 {
            bail!("POST /v1/mobilizations: {} {}", t.status, t.body);
        }
        Ok(t)
    }

    /// Every incident the city command sees (the list is capped at `server.max_list`).
    pub async fn incidents(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.get(&self.command(), "/v1/incidents").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Counters from `/metrics` whose name starts with `prefix`, summed over labels.
    pub async fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        self.metric_sum_at(&self.base, name).await
    }

    /// `metric_sum` summed over several nodes (loopback only).
    pub async fn metric_sum_nodes(&self, nodes: &[SocketAddr], name: &str) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for a in nodes {
            anyhow::ensure!(a.ip().is_loopback(), "the harness sends traffic to loopback only, not {a}");
            total += self.metric_sum_at(&format!("http://{a}"), name).await?;
        }
        Ok(total)
    }

    async fn metric_sum_at(&self, base: &str, name: &str) -> anyhow::Result<f64> {
        let text = self.http.get(format!("{base}/metrics")).send().await?.text().await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}
