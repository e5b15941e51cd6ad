//! reconnect-storm: every member drops its connection at once; while they are away an
//! incident is raised in each of 187 communities (offers go to members who are offline);
//! then every member reconnects at once with `after_seq` = the last seq it saw. Measured:
//! the time until all have resumed (hello, then every frame up to the hello's `last_seq`),
//! and that no offer is missing. On several nodes the members are spread over them and
//! reconnect to the node they were on.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::api::Api;
use crate::clock::{ms_between, now_us};
use crate::fleet::Fleet;
use crate::proto::Cmd;
use crate::report::{Report, Series};
use crate::scenario::delta::{check_offers, raise_all, simulated, wait_filled};
use crate::scenario::{
    CityView, FleetOpts, OrderTimes, Readings, Target, connections_per_node, cpu_between, node_table, nodes_by_idx,
    sum_stats,
};
use crate::stats::{cumulative, summarize};

#[derive(Debug, Clone)]
pub struct StormOpts {
    pub incidents: usize,
    pub headcount: u32,
    pub level: String,
    pub with_on_call_others: bool,
    pub phase_timeout: Duration,
}

impl Default for StormOpts {
    fn default() -> Self {
        StormOpts {
            incidents: 187,
            headcount: 3,
            level: "IV".into(),
            with_on_call_others: true,
            phase_timeout: Duration::from_secs(120),
        }
    }
}

pub async fn run(target: &Target, view: &CityView, fleet_opts: &FleetOpts, opts: &StormOpts) -> anyhow::Result<Report> {
    let mut report = Report::new("reconnect-storm");
    let api = Api::new(target.addr(), &target.secret)?;
    let sim = simulated(view, opts.with_on_call_others);
    let n = sim.len() as u64;
    report.param("simulated_members", n);
    report.param("incidents_while_away", opts.incidents);
    report.param("reconnect_concurrency_per_worker", fleet_opts.reconnect_concurrency);
    report.param("reconnect_jitter_ms", fleet_opts.reconnect_jitter_ms);
    report.param("nodes", target.nodes.len());

    let snap_start = target.snap();
    let members = view.sim_members(&api, &sim);
    let specs = fleet_opts.specs_on(&target.node_addrs(), members, true);
    report.param("client_processes", specs.len());
    let mut fleet = Fleet::start(specs, &fleet_opts.mode).await?;
    let bar = fleet_opts.bar(n, "connecting members");
    fleet.send(Cmd::Connect).await?;
    let ok = fleet.wait(opts.phase_timeout, &bar, |t| t.connected, |t| t.connected + t.connect_failed >= n).await;
    bar.finish_and_clear();
    report.check(
        "every member connected",
        ok && fleet.totals().connected == n,
        format!("{}", fleet.totals().connected),
    );

    // A mobilization first, so the members' streams have a past (after_seq > 0).
    api.city_mode("wartime", "reconnect storm (load harness)").await?;
    let order = api.mobilize_all(3600).await?;
    let ordered = order.body["ordered"].as_u64().unwrap_or(0);
    let bar = fleet_opts.bar(ordered, "order → ack → report");
    fleet.wait(opts.phase_timeout, &bar, |t| t.reported, |t| t.reported >= ordered).await;
    bar.finish_and_clear();

    // Everyone drops.
    let bar = fleet_opts.bar(n, "dropping");
    fleet.send(Cmd::Drop).await?;
    let dropped = fleet.wait(opts.phase_timeout, &bar, |t| n - t.connected.min(n), |t| t.connected == 0).await;
    bar.finish_and_clear();
    report.check("every member dropped", dropped, format!("{} still connected", fleet.totals().connected));
    // Let the server notice the closed sockets before the offers are made.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Offers to members who are away.
    let bodies = view.incident_bodies(opts.incidents, opts.headcount, &opts.level);
    let answers = raise_all(&api, &bodies, "storm").await;
    let mut raised: HashMap<String, u64> = HashMap::new();
    for t in answers.into_iter().flatten().filter(|t| t.status == 201) {
        raised.insert(t.body["id"].as_str().unwrap_or("").to_string(), t.sent);
    }
    report.check(
        "every incident raised",
        raised.len() == bodies.len(),
        format!("{} of {}", raised.len(), bodies.len()),
    );

    // The storm.
    let snap0 = target.snap();
    let stats0 = sum_stats(&snap0.nodes);
    let bar = fleet_opts.bar(n, "reconnect storm: resumed");
    let t_cmd = now_us();
    fleet.send(Cmd::Reconnect).await?;
    let resumed = fleet.wait(opts.phase_timeout, &bar, |t| t.resumed, |t| t.resumed + t.connect_failed >= n).await;
    bar.finish_and_clear();
    let storm_ms = ms_between(t_cmd, now_us());
    let snap1 = target.snap();
    let stats1 = sum_stats(&snap1.nodes);
    let ids: HashSet<String> = raised.keys().cloned().collect();
    let bar = fleet_opts.bar(ids.len() as u64, "incidents filled");
    let filled = wait_filled(&api, &ids, opts.phase_timeout, &bar).await;
    bar.finish_and_clear();
    let incidents = api.incidents().await?;
    let snap_end = target.snap();
    let results = fleet.finish(Duration::from_secs(60)).await?;

    let resumed_ms: Vec<f64> = results.iter().filter_map(|r| r.resumed_at.map(|t| ms_between(t_cmd, t))).collect();
    let hello_ms: Vec<f64> = results.iter().filter_map(|r| r.rehello_at.map(|t| ms_between(t_cmd, t))).collect();
    let retried = results.iter().filter(|r| r.connect_attempts > 2).count();
    let failed: Vec<String> = results.iter().filter_map(|r| r.connect_error.clone()).collect();
    let offers = check_offers(&incidents, &raised, &results, view);
    let gaps: u32 = results.iter().map(|r| r.gaps).sum();
    let dups: u32 = results.iter().map(|r| r.duplicates).sum();

    report.check(
        "every member resumed",
        resumed && resumed_ms.len() as u64 == n,
        format!(
            "{} of {n}; connect failures {}{}",
            resumed_ms.len(),
            failed.len(),
            failed.first().map(|f| format!(" (first: {f})")).unwrap_or_default()
        ),
    );
    report.check(
        "no offer missing",
        offers.missing.is_empty() && offers.to_simulated > 0,
        format!(
            "{} offers to simulated members, {} came in the replay, {} missing",
            offers.to_simulated,
            offers.replayed,
            offers.missing.len()
        ),
    );
    report.check(
        "streams without gaps or duplicates",
        gaps == 0 && dups == 0,
        format!("gaps {gaps}, duplicates {dups}"),
    );
    report.check("every incident filled after the storm", filled, format!("{} of {}", offers.filled, raised.len()));

    let all = OrderTimes::max(&resumed_ms);
    report.row("members", n as f64, "");
    report.row_max("time until all resumed", all, "ms", 3000.0);
    report.row("time until the coordinator saw them all resumed", storm_ms, "ms");
    report.row("members that needed more than two connect attempts", retried as f64, "");
    if let Some(c) = cpu_between(stats0, stats1) {
        report.row("server CPU during the storm", c, "s");
    }
    if let Some(s) = stats1 {
        report.row("server peak RSS (VmHWM)", s.hwm_kib as f64 / 1024.0, "MiB");
    }
    if target.nodes.len() > 1 {
        let conns = connections_per_node(&results, &nodes_by_idx(&sim, target.nodes.len()), target.nodes.len());
        let r = Readings { idle: None, phase: (&snap0, &snap1), run: (&snap_start, &snap_end) };
        report.nodes = node_table(target, &conns, &r);
        report.node_phase = "the storm".into();
        report.note(format!(
            "{} nodes: each member reconnects to its node (member i → node i % {}); the API calls go to node 0; \
             the server rows are sums over the nodes; per node in the table",
            target.nodes.len(),
            target.nodes.len()
        ));
    }
    report.latency("reconnect → hello", summarize(hello_ms.clone()));
    report.latency("reconnect → resumed", summarize(resumed_ms.clone()));
    report.latency("offer delivered → accept confirmed", summarize(offers.delivered_to_accepted.clone()));
    report.series = vec![
        Series { label: "hello received".into(), rgb: (31, 119, 180), points: cumulative(hello_ms, 400) },
        Series {
            label: "resumed (caught up to last_seq)".into(),
            rgb: (214, 39, 40),
            points: cumulative(resumed_ms, 400),
        },
    ];
    Ok(report)
}
