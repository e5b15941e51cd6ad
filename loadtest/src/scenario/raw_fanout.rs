//! raw-fanout: the physical limit. The same member clients, the same number of them, one
//! frame of the size of a `mobilization.order` each, acked and reported the same way, but
//! against `raw::RawServer`, which does nothing but websockets.

use std::time::Duration;

use futures_util::future::join_all;

use crate::clock::now_us;
use crate::fleet::Fleet;
use crate::proto::{Cmd, SimMember};
use crate::raw::{RawProcess, RawServer};
use crate::report::{Report, Series};
use crate::scenario::{FleetOpts, OrderTimes, cpu_between, sum_stats};
use crate::server::proc_stats;
use crate::stats::{cumulative, summarize};

pub enum RawTarget {
    InProcess(RawServer),
    Process(Box<RawProcess>),
}

impl RawTarget {
    pub fn addr(&self) -> std::net::SocketAddr {
        match self {
            RawTarget::InProcess(s) => s.addr,
            RawTarget::Process(p) => p.addr,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            RawTarget::InProcess(_) => None,
            RawTarget::Process(p) => Some(p.pid),
        }
    }

    async fn broadcast(&mut self, text: &str) -> anyhow::Result<usize> {
        match self {
            RawTarget::InProcess(s) => Ok(s.broadcast(text)),
            RawTarget::Process(p) => Ok(p.broadcast(text).await?.to),
        }
    }

    pub async fn stop(self) {
        match self {
            RawTarget::InProcess(s) => s.stop(),
            RawTarget::Process(p) => p.stop().await,
        }
    }
}

/// What the baseline measured, for the report and for the ratios of a muster run.
pub struct RawOutcome {
    /// Which server: "rust" (the harness's own) or "node" (`ws`).
    pub stack: &'static str,
    pub report: Report,
    pub times: OrderTimes,
    pub clients: usize,
    pub rss_per_conn_kib: Option<f64>,
}

pub async fn run(
    stack: &'static str,
    target: &mut RawTarget,
    clients: usize,
    frame: &str,
    fleet_opts: &FleetOpts,
    phase_timeout: Duration,
) -> anyhow::Result<RawOutcome> {
    run_many(stack, std::slice::from_mut(target), clients, frame, fleet_opts, phase_timeout).await
}

/// The baseline on several raw servers (as many as muster nodes): client i connects to
/// server i % N, and each server pushes the frame to its own clients. CPU and memory are
/// summed over the servers.
pub async fn run_many(
    stack: &'static str,
    targets: &mut [RawTarget],
    clients: usize,
    frame: &str,
    fleet_opts: &FleetOpts,
    phase_timeout: Duration,
) -> anyhow::Result<RawOutcome> {
    anyhow::ensure!(!targets.is_empty(), "no raw server");
    let mut report = Report::new(&format!("raw-fanout-{stack}"));
    report.param("stack", stack);
    report.param("clients", clients);
    report.param("frame_bytes", frame.len());
    report.param("answer_delay", fleet_opts.answer_delay.describe());
    if targets.len() > 1 {
        report.param("servers", targets.len());
    }
    let pids: Vec<Option<u32>> = targets.iter().map(RawTarget::pid).collect();
    let read = || sum_stats(&pids.iter().map(|p| p.and_then(proc_stats)).collect::<Vec<_>>());
    let stats0 = read();
    let members: Vec<SimMember> = (0..clients as u32)
        .map(|i| SimMember { idx: i, id: format!("raw{i}"), token: "unused".into(), node: 0 })
        .collect();
    let addrs: Vec<std::net::SocketAddr> = targets.iter().map(RawTarget::addr).collect();
    let specs = fleet_opts.specs_on(&addrs, members, true);
    report.param("client_processes", specs.len());
    let mut fleet = Fleet::start(specs, &fleet_opts.mode).await?;
    let n = clients as u64;

    let bar = fleet_opts.bar(n, "raw: connecting");
    fleet.send(Cmd::Connect).await?;
    let connected = fleet.wait(phase_timeout, &bar, |t| t.connected, |t| t.connected + t.connect_failed >= n).await;
    bar.finish_and_clear();
    let online = fleet.totals().connected;
    report.check("every client connected", connected && online == n, format!("{online} of {n}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats1 = read();
    let rss_per_conn_kib = match (stats0, stats1) {
        (Some(a), Some(b)) if online > 0 => Some((b.rss_kib as f64 - a.rss_kib as f64) / online as f64),
        _ => None,
    };

    let bar = fleet_opts.bar(online, "raw: fan-out, ack, report");
    let clients_cpu0 = fleet.cpu_s();
    let t_cmd = now_us();
    let sent_to: usize = join_all(targets.iter_mut().map(|t| t.broadcast(frame)))
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<usize>>>()?
        .into_iter()
        .sum();
    let finished = fleet.wait(phase_timeout, &bar, |t| t.reported, |t| t.reported >= online).await;
    bar.finish_and_clear();
    let stats2 = read();
    let clients_cpu = clients_cpu0.zip(fleet.cpu_s()).map(|(a, b)| b - a);
    let results = fleet.finish(Duration::from_secs(60)).await?;
    let times = OrderTimes::of(&results, "mob-1", t_cmd);

    report.check(
        "every client got the frame, acked and reported",
        finished && times.reported.len() as u64 == online,
        format!("sent to {sent_to}; delivered {}, reported {}", times.delivered.len(), times.reported.len()),
    );
    report.row("clients connected", online as f64, "");
    report.row("time until all delivered", times.all_delivered_ms(), "ms");
    report.row("time until all acknowledged", times.all_acked_ms(), "ms");
    report.row("time until all reported", times.all_reported_ms(), "ms");
    report.row("last ack answered after the last ack sent", times.last_ack_lag_ms, "ms");
    report.row("messages per second", times.messages_per_s(), "msg/s");
    if let Some(c) = cpu_between(stats1, stats2) {
        report.row("server CPU during the fan-out", c, "s");
    }
    if let Some(c) = clients_cpu {
        report.row("clients' CPU per client, frame to last report", c * 1e6 / online.max(1) as f64, "µs");
    }
    if let Some(s) = stats2 {
        report.row("server peak RSS", s.hwm_kib as f64 / 1024.0, "MiB");
    }
    if let Some(r) = rss_per_conn_kib {
        report.row("server RSS per idle connection", r, "KiB");
    }
    report.latency("command → delivered", summarize(times.delivered.clone()));
    report.latency("command → ack answered", summarize(times.acked.clone()));
    report.latency("ack round trip", summarize(times.ack_rtt.clone()));
    report.latency("report round trip", summarize(times.report_rtt.clone()));
    report.series = vec![
        Series {
            label: format!("raw ({stack}): delivered"),
            rgb: (120, 170, 230),
            points: cumulative(times.delivered.clone(), 400),
        },
        Series {
            label: format!("raw ({stack}): acked"),
            rgb: (240, 160, 120),
            points: cumulative(times.acked.clone(), 400),
        },
    ];
    Ok(RawOutcome { stack, report, times, clients: online as usize, rss_per_conn_kib })
}
