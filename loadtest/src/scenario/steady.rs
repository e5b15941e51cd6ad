//! steady: incidents at a fixed rate for a fixed time, each raised by the staff of its
//! community, open loop: a request leaves at its scheduled time whatever the answers
//! before it did, and its latency counts from that time (so a stalled server cannot hide
//! its stall by slowing the sender). Optionally each incident is cancelled a while after
//! its 201, which releases its offered members as a real surge's closures would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use muster::gateway::auth::Role;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::api::Api;
use crate::clock::{ms_between, now_us};
use crate::report::{Report, Series};
use crate::scenario::{CityView, FleetOpts, Target, cpu_between};
use crate::stats::summarize;

#[derive(Debug, Clone)]
pub struct SteadyOpts {
    pub rate: f64,
    pub duration: Duration,
    pub headcount: u32,
    pub level: String,
    pub max_in_flight: usize,
    /// Cancel each incident this long after its 201 (None: leave them open).
    pub cancel_after: Option<Duration>,
    pub wartime: bool,
}

impl Default for SteadyOpts {
    fn default() -> Self {
        SteadyOpts {
            rate: 1000.0,
            duration: Duration::from_secs(60),
            headcount: 1,
            level: "IV".into(),
            max_in_flight: 2000,
            cancel_after: None,
            wartime: false,
        }
    }
}

struct Done {
    scheduled: u64,
    sent: u64,
    got: u64,
    status: u16,
    code: String,
    cancel: Option<(u64, u64, u16)>,
}

pub async fn run(
    target: &Target,
    view: &CityView,
    fleet_opts: &FleetOpts,
    opts: &SteadyOpts,
) -> anyhow::Result<Report> {
    let mut report = Report::new("steady");
    let api = Api::new(target.addr(), &target.secret)?;
    let total = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    report.param("rate_per_s", opts.rate);
    report.param("duration_s", opts.duration.as_secs_f64());
    report.param("incidents", total);
    report.param("headcount", opts.headcount);
    report.param("level", &opts.level);
    report.param("max_in_flight", opts.max_in_flight);
    report.param("cancel_after_ms", opts.cancel_after.map(|d| d.as_millis() as u64));
    report.param("mode", if opts.wartime { "wartime" } else { "peacetime" });
    if opts.wartime {
        api.city_mode("wartime", "steady ingest (load harness)").await?;
    }
    let city = view.city();
    // (community, grid, staff token) for every grid, raised in turn.
    let places: Arc<Vec<(String, String)>> = Arc::new(
        city.communities
            .iter()
            .flat_map(|c| {
                let token = api.token(Role::Staff, Some(&c.id));
                c.grids.iter().map(move |g| (g.id.clone(), token.clone()))
            })
            .collect(),
    );
    const CATEGORIES: &[&str] = &["patrol", "cleaning", "material_delivery", "elderly_support"];

    let events0 = api.metric_sum("muster_events_total").await.unwrap_or(0.0);
    let stats0 = target.stats();
    let gate = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let bar = fleet_opts.bar(total, "steady: incidents answered");
    let collector = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(d) = rx.recv().await {
                bar.inc(1);
                all.push(d);
            }
            all
        })
    };
    let lead = Duration::from_millis(100);
    let start = tokio::time::Instant::now() + lead;
    let t0 = now_us() + lead.as_micros() as u64;
    let mut skipped = 0u64;
    for i in 0..total {
        let offset = Duration::from_secs_f64(i as f64 / opts.rate);
        tokio::time::sleep_until(start + offset).await;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (grid, token) = places[i as usize % places.len()].clone();
        let body = json!({
            "grid_id": grid,
            "category": CATEGORIES[i as usize % CATEGORIES.len()],
            "level": opts.level,
            "headcount": opts.headcount,
        });
        let api = api.clone();
        let tx = tx.clone();
        let scheduled = t0 + offset.as_micros() as u64;
        let cancel_after = opts.cancel_after;
        tokio::spawn(async move {
            let key = format!("steady-{i}");
            let r = api.send(reqwest::Method::POST, &token, "/v1/incidents", Some(&body), Some(&key)).await;
            drop(permit);
            let mut done = match r {
                Ok(t) => {
                    let id = t.body["id"].as_str().unwrap_or("").to_string();
                    let code = t.body["code"].as_str().unwrap_or("").to_string();
                    (Done { scheduled, sent: t.sent, got: t.got, status: t.status, code, cancel: None }, id)
                }
                Err(e) => (
                    Done { scheduled, sent: scheduled, got: now_us(), status: 0, code: e.to_string(), cancel: None },
                    String::new(),
                ),
            };
            if let (Some(after), 201) = (cancel_after, done.0.status) {
                tokio::time::sleep(after).await;
                let path = format!("/v1/incidents/{}/cancel", done.1);
                let body = json!({"reason": "load harness"});
                if let Ok(c) = api.send(reqwest::Method::POST, &token, &path, Some(&body), None).await {
                    done.0.cancel = Some((c.sent, c.got, c.status));
                }
            }
            let _ = tx.send(done.0);
        });
    }
    let sent_until = now_us();
    drop(tx);
    let all = tokio::time::timeout(Duration::from_secs(180), collector).await??;
    bar.finish_and_clear();
    let stats1 = target.stats();
    let events1 = api.metric_sum("muster_events_total").await.unwrap_or(0.0);
    let last = all.iter().map(|d| d.got).max().unwrap_or(sent_until);
    let span_s = ms_between(t0, last) / 1000.0;

    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for d in &all {
        let k = if d.code.is_empty() { d.status.to_string() } else { format!("{} {}", d.status, d.code) };
        *by_status.entry(k).or_default() += 1;
    }
    let ok: Vec<&Done> = all.iter().filter(|d| d.status == 201).collect();
    let from_schedule = summarize(ok.iter().map(|d| ms_between(d.scheduled, d.got)).collect());
    let from_send = summarize(ok.iter().map(|d| ms_between(d.sent, d.got)).collect());
    let send_lag = summarize(ok.iter().map(|d| ms_between(d.scheduled, d.sent)).collect());
    let cancels: Vec<f64> =
        all.iter().filter_map(|d| d.cancel.filter(|c| c.2 == 200).map(|c| ms_between(c.0, c.1))).collect();
    let schedule_s = opts.duration.as_secs_f64();
    let achieved = ok.len() as f64 / schedule_s;

    report.check(
        "every scheduled request was sent",
        skipped == 0,
        format!("{skipped} skipped (over {} in flight)", opts.max_in_flight),
    );
    report.check("every incident accepted (201)", ok.len() as u64 == total, format!("{by_status:?}"));
    report.row_min("incidents accepted per second (over the schedule)", achieved, "/s", opts.rate);
    report.row_max("raise API p99 (from the scheduled time)", from_schedule.p99_ms, "ms", 50.0);
    report.row("time from the first scheduled request to the last answer", span_s, "s");
    report.row("events appended per second", (events1 - events0) / span_s.max(0.001), "/s");
    if let Some(c) = cpu_between(stats0, stats1) {
        report.row("server CPU", c, "s");
        report.row("server CPU utilisation (of one core)", c / span_s.max(0.001) * 100.0, "%");
    }
    if let Some(s) = stats1 {
        report.row("server peak RSS (VmHWM)", s.hwm_kib as f64 / 1024.0, "MiB");
    }
    report.latency("raise: scheduled → 201", from_schedule);
    report.latency("raise: sent → 201", from_send);
    report.latency("sender lag: scheduled → sent", send_lag);
    if !cancels.is_empty() {
        report.latency("cancel: sent → 200", summarize(cancels));
    }
    // Latency over time: the slowest answer to the requests scheduled in each 250 ms.
    let mut worst: BTreeMap<u64, f64> = BTreeMap::new();
    for d in &ok {
        let slot = (d.scheduled.saturating_sub(t0)) / 250_000;
        let l = ms_between(d.scheduled, d.got);
        let w = worst.entry(slot).or_insert(0.0);
        *w = w.max(l);
    }
    let mut p50s: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for d in &ok {
        p50s.entry((d.scheduled.saturating_sub(t0)) / 250_000).or_default().push(ms_between(d.scheduled, d.got));
    }
    report.y_desc = "raise latency, ms (per 250 ms of schedule)".into();
    report.series = vec![
        Series {
            label: "slowest answer".into(),
            rgb: (214, 39, 40),
            points: worst.into_iter().map(|(k, v)| (k as f64 / 4.0, v)).collect(),
        },
        Series {
            label: "median answer".into(),
            rgb: (31, 119, 180),
            points: p50s.into_iter().map(|(k, v)| (k as f64 / 4.0, summarize(v).p50_ms)).collect(),
        },
    ];
    Ok(report)
}
