//! delta-surge: the August 2021 Delta surge in Wuhan, on one node or several sharing Redis
//! (members spread over the nodes, the API calls to node 0). Every assault team
//! (312 teams, 16,000 members in the 20,000-member demo city) gets one mobilization order;
//! the members acknowledge and report at their community; then an incident is raised in
//! each of 187 communities at once, and the offered members accept.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use muster::gateway::auth::Role;
use serde_json::Value;

use crate::api::{Api, Timed};
use crate::clock::{ms_between, now_us};
use crate::fleet::Fleet;
use crate::proto::{Cmd, MemberResult};
use crate::report::{Report, Series};
use crate::scenario::raw_fanout::RawOutcome;
use crate::scenario::{
    CityView, FleetOpts, OrderTimes, Readings, Target, connections_per_node, cpu_between, node_table, nodes_by_idx,
    sum_stats,
};
use crate::stats::{cumulative, summarize};

#[derive(Debug, Clone)]
pub struct DeltaOpts {
    pub incidents: usize,
    pub headcount: u32,
    pub level: String,
    pub deadline_s: u64,
    /// Also simulate on-call members outside assault teams (they may be offered incidents).
    pub with_on_call_others: bool,
    pub phase_timeout: Duration,
    /// Idle time before the RSS-per-connection reading.
    pub settle: Duration,
}

impl Default for DeltaOpts {
    fn default() -> Self {
        DeltaOpts {
            incidents: 187,
            headcount: 3,
            level: "IV".into(),
            deadline_s: 3600,
            with_on_call_others: true,
            phase_timeout: Duration::from_secs(120),
            settle: Duration::from_secs(3),
        }
    }
}

/// Raises `bodies` at once, each by the staff of its community.
pub async fn raise_all(api: &Api, bodies: &[(String, Value)], tag: &str) -> Vec<anyhow::Result<Timed>> {
    let calls = bodies.iter().enumerate().map(|(i, (community, body))| {
        let token = api.token(Role::Staff, Some(community));
        let key = format!("{tag}-{i}");
        async move { api.send(reqwest::Method::POST, &token, "/v1/incidents", Some(body), Some(&key)).await }
    });
    join_all(calls).await
}

/// Polls the incidents until every one of `ids` is filled or closed; false past `limit`.
pub async fn wait_filled(api: &Api, ids: &HashSet<String>, limit: Duration, bar: &indicatif::ProgressBar) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(list) = api.incidents().await {
            let done = list
                .iter()
                .filter(|i| i["id"].as_str().is_some_and(|id| ids.contains(id)))
                .filter(|i| i["status"] != "open")
                .count();
            bar.set_position(done as u64);
            if done >= ids.len() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// What the offers of the raised incidents came to, checked against the members' records.
pub struct OfferCheck {
    pub listed: usize,
    pub to_simulated: usize,
    pub missing: Vec<String>,
    pub raise_to_delivered: Vec<f64>,
    pub delivered_to_accepted: Vec<f64>,
    pub accept_rtt: Vec<f64>,
    pub raise_to_filled_server: Vec<f64>,
    pub replayed: usize,
    pub accepted: usize,
    pub declined: usize,
    pub errors: HashMap<String, usize>,
    pub filled: usize,
}

pub fn check_offers(
    incidents: &[Value],
    raised: &HashMap<String, u64>,
    results: &[MemberResult],
    view: &CityView,
) -> OfferCheck {
    let city = view.city();
    let by_id: HashMap<&str, &MemberResult> =
        results.iter().map(|r| (city.members[r.idx as usize].id.as_str(), r)).collect();
    let mut c = OfferCheck {
        listed: 0,
        to_simulated: 0,
        missing: Vec::new(),
        raise_to_delivered: Vec::new(),
        delivered_to_accepted: Vec::new(),
        accept_rtt: Vec::new(),
        raise_to_filled_server: Vec::new(),
        replayed: 0,
        accepted: 0,
        declined: 0,
        errors: HashMap::new(),
        filled: 0,
    };
    let ts = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok().map(|d| d.timestamp_millis());
    for inc in incidents {
        let Some(id) = inc["id"].as_str() else { continue };
        let Some(&sent) = raised.get(id) else { continue };
        if let (Some(a), Some(b)) = (ts(&inc["raised_at"]), ts(&inc["filled_at"])) {
            c.raise_to_filled_server.push((b - a) as f64);
            c.filled += 1;
        }
        for offer in inc["offers"].as_array().into_iter().flatten() {
            c.listed += 1;
            let (Some(oid), Some(mid)) = (offer["offer_id"].as_str(), offer["member_id"].as_str()) else { continue };
            let Some(r) = by_id.get(mid) else { continue };
            c.to_simulated += 1;
            match r.offers.iter().find(|o| o.offer_id == oid) {
                None => c.missing.push(format!("{oid} to {mid}")),
                Some(o) => {
                    c.raise_to_delivered.push(ms_between(sent, o.delivered));
                    c.replayed += usize::from(o.replayed);
                    if let Some(ok) = o.answer_ok {
                        if o.accept {
                            c.accepted += 1;
                            c.delivered_to_accepted.push(ms_between(o.delivered, ok));
                            if let Some(s) = o.answer_sent {
                                c.accept_rtt.push(ms_between(s, ok));
                            }
                        } else {
                            c.declined += 1;
                        }
                    }
                    if let Some(e) = &o.error {
                        *c.errors.entry(e.clone()).or_default() += 1;
                    }
                }
            }
        }
    }
    c
}

/// The members a scenario simulates: every assault member, and the other on-call ones.
pub fn simulated(view: &CityView, with_others: bool) -> Vec<u32> {
    let mut v = view.assault.clone();
    if with_others {
        v.extend(&view.on_call_other);
    }
    v
}

pub async fn run(
    target: &Target,
    view: &CityView,
    fleet_opts: &FleetOpts,
    opts: &DeltaOpts,
    baselines: &[RawOutcome],
) -> anyhow::Result<Report> {
    let mut report = Report::new("delta-surge");
    let api = Api::new(target.addr(), &target.secret)?;
    let sim = simulated(view, opts.with_on_call_others);
    let n = sim.len() as u64;
    let assault: HashSet<u32> = view.assault.iter().copied().collect();
    report.param("city_members", view.city().members.len());
    report.param("assault_members", view.assault.len());
    report.param("simulated_members", n);
    report.param("incidents", opts.incidents);
    report.param("headcount", opts.headcount);
    report.param("level", &opts.level);
    report.param("answer_delay", fleet_opts.answer_delay.describe());
    report.param("decline_rate", fleet_opts.decline_rate);
    report.param("source_addresses", fleet_opts.sources.len());
    report.param("nodes", target.nodes.len());
    let nodes = target.node_addrs();

    // Connect every simulated member, then let the server settle for the RSS reading.
    let snap0 = target.snap();
    let stats0 = sum_stats(&snap0.nodes);
    let members = view.sim_members(&api, &sim);
    let specs = fleet_opts.specs_on(&nodes, members, true);
    report.param("client_processes", specs.len());
    let mut fleet = Fleet::start(specs, &fleet_opts.mode).await?;
    let bar = fleet_opts.bar(n, "connecting members");
    fleet.send(Cmd::Connect).await?;
    let t_connect = now_us();
    let all_in = fleet.wait(opts.phase_timeout, &bar, |t| t.connected, |t| t.connected + t.connect_failed >= n).await;
    let connect_ms = ms_between(t_connect, now_us());
    bar.finish_and_clear();
    let online = fleet.totals().connected;
    report.check("every member connected", all_in && online == n, format!("{online} of {n} in {connect_ms:.0} ms"));
    tokio::time::sleep(opts.settle).await;
    let snap1 = target.snap();
    let stats1 = sum_stats(&snap1.nodes);
    let rss_per_conn = match (stats0, stats1) {
        (Some(a), Some(b)) if online > 0 => Some((b.rss_kib as f64 - a.rss_kib as f64) / online as f64),
        _ => None,
    };

    // 平战转换, then the order.
    api.city_mode("wartime", "Delta surge (load harness)").await?;
    let pushed0 = api.metric_sum_nodes(&nodes, "muster_frames_pushed_total").await.unwrap_or(0.0);
    let events0 = api.metric_sum_nodes(&nodes, "muster_events_total").await.unwrap_or(0.0);
    let snap2 = target.snap();
    let stats2 = sum_stats(&snap2.nodes);
    let bar = fleet_opts.bar(view.assault.len() as u64, "order → ack → report");
    let clients_cpu0 = fleet.cpu_s();
    let order = api.mobilize_all(opts.deadline_s).await?;
    let mob_id = order.body["id"].as_str().unwrap_or("mob-1").to_string();
    let ordered = order.body["ordered"].as_u64().unwrap_or(0);
    let reported_all =
        fleet.wait(opts.phase_timeout, &bar, |t| t.reported, |t| t.reported >= ordered && t.acked >= ordered).await;
    bar.finish_and_clear();
    let clients_cpu = clients_cpu0.zip(fleet.cpu_s()).map(|(a, b)| b - a);
    let snap3 = target.snap();
    let stats3 = sum_stats(&snap3.nodes);
    let pushed1 = api.metric_sum_nodes(&nodes, "muster_frames_pushed_total").await.unwrap_or(0.0);
    let events1 = api.metric_sum_nodes(&nodes, "muster_events_total").await.unwrap_or(0.0);
    let mob = api.get(&api.command(), &format!("/v1/mobilizations/{mob_id}")).await?;

    // 187 incidents at once, one per community, each by its community's staff.
    let bodies = view.incident_bodies(opts.incidents, opts.headcount, &opts.level);
    let bar = fleet_opts.bar(bodies.len() as u64, "incidents: raise → offer → accept");
    let t_raise = now_us();
    let answers = raise_all(&api, &bodies, "delta").await;
    let raise_ms = ms_between(t_raise, now_us());
    let mut raised: HashMap<String, u64> = HashMap::new();
    let mut raise_lat = Vec::new();
    let mut raise_fail = Vec::new();
    for a in &answers {
        match a {
            Ok(t) if t.status == 201 => {
                raised.insert(t.body["id"].as_str().unwrap_or("").to_string(), t.sent);
                raise_lat.push(ms_between(t.sent, t.got));
            }
            Ok(t) => raise_fail.push(format!("{} {}", t.status, t.body["code"])),
            Err(e) => raise_fail.push(e.to_string()),
        }
    }
    let ids: HashSet<String> = raised.keys().cloned().collect();
    let filled = wait_filled(&api, &ids, opts.phase_timeout, &bar).await;
    bar.finish_and_clear();
    let incidents = api.incidents().await?;
    let snap4 = target.snap();
    let stats4 = sum_stats(&snap4.nodes);
    let results = fleet.finish(Duration::from_secs(60)).await?;

    // Mobilization: order → delivered → acknowledged → reported.
    let times = OrderTimes::of(&results, &mob_id, order.sent);
    let from_201: Vec<f64> = times.delivered.iter().map(|d| d - ms_between(order.sent, order.got)).collect();
    let orders_per_member: HashMap<u32, usize> =
        results.iter().map(|r| (r.idx, r.orders.iter().filter(|o| o.mobilization_id == mob_id).count())).collect();
    let wrong: Vec<u32> = sim
        .iter()
        .copied()
        .filter(|i| orders_per_member.get(i).copied().unwrap_or(0) != usize::from(assault.contains(i)))
        .collect();
    let gaps: u32 = results.iter().map(|r| r.gaps).sum();
    let dups: u32 = results.iter().map(|r| r.duplicates).sum();
    let closes: usize = results.iter().map(|r| r.closes.len()).sum();
    report.check(
        "every ordered member got exactly one order",
        ordered == view.assault.len() as u64 && wrong.is_empty() && times.delivered.len() as u64 == ordered,
        format!(
            "ordered {ordered}, delivered {}, members with a wrong count {}{}",
            times.delivered.len(),
            wrong.len(),
            wrong.first().map(|w| format!(" (first: index {w})")).unwrap_or_default()
        ),
    );
    report.check(
        "every acknowledgement and report confirmed",
        reported_all && times.acked.len() as u64 == ordered && times.reported.len() as u64 == ordered,
        format!("acked {}, reported {}, errors {}", times.acked.len(), times.reported.len(), times.errors),
    );
    report.check(
        "the server counts them all",
        mob["acknowledged"].as_u64() == Some(ordered) && mob["reported"].as_u64() == Some(ordered),
        format!(
            "GET /v1/mobilizations/{mob_id}: ordered {}, acknowledged {}, reported {}, missing {}",
            mob["ordered"], mob["acknowledged"], mob["reported"], mob["missing"]
        ),
    );
    report.check(
        "streams without gaps or duplicates",
        gaps == 0 && dups == 0 && closes == 0,
        format!("gaps {gaps}, duplicates {dups}, closes by the server {closes}"),
    );

    // Incidents: raise → offer → accept.
    let offers = check_offers(&incidents, &raised, &results, view);
    report.check(
        "every incident raised",
        raise_fail.is_empty() && raised.len() == bodies.len(),
        format!("{} of {} ({})", raised.len(), bodies.len(), raise_fail.join(", ")),
    );
    report.check(
        "every offer reached its member",
        offers.missing.is_empty(),
        format!(
            "{} offers, {} to simulated members, {} missing{}",
            offers.listed,
            offers.to_simulated,
            offers.missing.len(),
            offers.missing.first().map(|m| format!(" (first: {m})")).unwrap_or_default()
        ),
    );
    report.check(
        "every incident filled",
        filled && offers.filled == raised.len(),
        format!(
            "{} of {} filled; {} accepted, {} declined",
            offers.filled,
            raised.len(),
            offers.accepted,
            offers.declined
        ),
    );
    if !offers.errors.is_empty() {
        report.note(format!(
            "answers refused (by code): {:?}; a member whose offer was filled by others first is told offer_revoked",
            offers.errors
        ));
    }

    // The headline table.
    report.row("members connected", online as f64, "");
    report.row("time to connect them all", connect_ms, "ms");
    report.row("mobilization accepted by the API (201)", ms_between(order.sent, order.got), "ms");
    let p99 = summarize(times.delivered.clone()).p99_ms;
    report.row_max("order → delivered p99 (from the request)", p99, "ms", 250.0);
    // muster publishes before it answers, so most orders arrive before the 201 does.
    report.row_max("order → delivered p99 (from the 201)", summarize(from_201.clone()).p99_ms, "ms", 250.0);
    report.row("time until all delivered", times.all_delivered_ms(), "ms");
    report.row("time until all acknowledged", times.all_acked_ms(), "ms");
    report.row_max("last ack durable after the last ack sent", times.last_ack_lag_ms, "ms", 1000.0);
    report.row("time until all reported", times.all_reported_ms(), "ms");
    report.row("websocket messages per second (order, ack, ok, report, ok)", times.messages_per_s(), "msg/s");
    report.row("frames pushed by the hub during the order", pushed1 - pushed0, "");
    report.row("events appended during the order", events1 - events0, "");
    if let Some(c) = cpu_between(stats2, stats3) {
        report.row("server CPU, order to last report", c, "s");
    }
    if let Some(c) = clients_cpu {
        // Each member gets the order and two `ok`s and sends two messages: a heavy client
        // would show here before it could hide the server's cost (issue 22).
        report.row("clients' CPU per member, order to last report", c * 1e6 / ordered.max(1) as f64, "µs");
    }
    if let Some(c) = cpu_between(stats0, stats4) {
        report.row("server CPU, whole run", c, "s");
    }
    if let Some(s) = stats4 {
        report.row("server peak RSS (VmHWM)", s.hwm_kib as f64 / 1024.0, "MiB");
    }
    if let Some(r) = rss_per_conn {
        report.row_max("server RSS per idle member connection", r, "KiB", 10.0);
    }
    if target.nodes.len() > 1 {
        let conns = connections_per_node(&results, &nodes_by_idx(&sim, target.nodes.len()), target.nodes.len());
        let r = Readings { idle: Some((&snap0, &snap1)), phase: (&snap2, &snap3), run: (&snap0, &snap4) };
        report.nodes = node_table(target, &conns, &r);
        report.node_phase = "order to last report".into();
        report.note(format!(
            "{} nodes: the members are spread over them (member i → node i % {}), the API calls go to node 0; \
             the server rows (CPU, RSS, the /metrics counters) are sums over the nodes (peak RSS: the \
             sum of each node's peak); per node in the table",
            target.nodes.len(),
            target.nodes.len()
        ));
        if let Some(c) = cpu_between(snap2.redis, snap3.redis) {
            report.row("redis-server CPU, order to last report", c, "s");
        }
        if let Some(s) = snap4.redis {
            report.row("redis-server peak RSS (VmHWM)", s.hwm_kib as f64 / 1024.0, "MiB");
        }
    }
    report.row("incidents raised at once", raised.len() as f64, "");
    report.row("time to raise them all (last 201)", raise_ms, "ms");
    for b in baselines {
        let raw = &b.times;
        let s = b.stack;
        report.row(&format!("raw-fanout ({s}): time until all delivered"), raw.all_delivered_ms(), "ms");
        report.row(&format!("raw-fanout ({s}): time until all acknowledged"), raw.all_acked_ms(), "ms");
        if let Some(c) = b.report.value("clients' CPU per client, frame to last report") {
            report.row(&format!("raw-fanout ({s}): clients' CPU per client"), c, "µs");
        }
    }
    // muster is compared with the faster baseline (by all acknowledged) of this run.
    if let Some(b) = baselines.iter().min_by(|a, b| a.times.all_acked_ms().total_cmp(&b.times.all_acked_ms())) {
        let raw = &b.times;
        report.param("baseline_compared", b.stack);
        report.row("ratio: all delivered, muster / raw", times.all_delivered_ms() / raw.all_delivered_ms(), "×");
        report.row_max(
            "ratio: end to end (all acknowledged), muster / raw",
            times.all_acked_ms() / raw.all_acked_ms(),
            "×",
            1.5,
        );
        report.row("ratio: order → delivered p99, muster / raw", p99 / summarize(raw.delivered.clone()).p99_ms, "×");
        if let (Some(m), Some(r)) = (rss_per_conn, b.rss_per_conn_kib) {
            report.row("raw-fanout: server RSS per idle connection", r, "KiB");
            report.row("ratio: RSS per connection, muster / raw", m / r, "×");
        }
        if b.clients != view.assault.len() {
            report.note(format!("the baseline had {} clients, the order {}", b.clients, view.assault.len()));
        }
    }
    report.latency("order → delivered (from the request)", summarize(times.delivered.clone()));
    report.latency("order → delivered (from the 201)", summarize(from_201));
    if target.nodes.len() > 1 {
        // Which node's members wait longest: the 201 comes from node 0, after it has queued
        // its own third; the others apply the order from the log first.
        let node_of = nodes_by_idx(&sim, target.nodes.len());
        let t201 = ms_between(order.sent, order.got);
        for n in 0..target.nodes.len() as u16 {
            let d: Vec<f64> = results
                .iter()
                .filter(|r| node_of.get(&r.idx) == Some(&n))
                .flat_map(|r| r.orders.iter().filter(|o| o.mobilization_id == mob_id))
                .map(|o| ms_between(order.sent, o.delivered) - t201)
                .collect();
            report.latency(&format!("order → delivered (from the 201), node {n}"), summarize(d));
        }
    }
    report.latency("order → ack durable", summarize(times.acked.clone()));
    report.latency("ack round trip (sent → ok)", summarize(times.ack_rtt.clone()));
    report.latency("report round trip (sent → ok)", summarize(times.report_rtt.clone()));
    report.latency("raise → 201", summarize(raise_lat));
    report.latency(
        "raise → offer delivered (refills after a decline included)",
        summarize(offers.raise_to_delivered.clone()),
    );
    report.latency("offer delivered → accept confirmed", summarize(offers.delivered_to_accepted.clone()));
    report.latency("accept round trip (sent → ok)", summarize(offers.accept_rtt.clone()));
    report.latency("raise → filled (server clock)", summarize(offers.raise_to_filled_server.clone()));

    let mut series = vec![
        Series {
            label: "muster: orders delivered".into(),
            rgb: (31, 119, 180),
            points: cumulative(times.delivered.clone(), 400),
        },
        Series {
            label: "muster: acks durable".into(),
            rgb: (214, 39, 40),
            points: cumulative(times.acked.clone(), 400),
        },
    ];
    for b in baselines {
        series.extend(b.report.series.iter().cloned());
    }
    report.series = series;
    if fleet_opts.answer_delay.is_zero() {
        report.note("members answer at once (0 ms): a capacity run");
    }
    Ok(report)
}
