//! A worker: the members of one process. `run` is the same in a child process
//! (`muster-loadtest worker`: spec and commands as JSON lines on stdin, `Out` lines on
//! stdout) and in-process (channels), so the smoke test runs exactly this code.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::member::{self, Ctl, Shared};
use crate::proto::{Cmd, MemberResult, Out, WorkerSpec};

/// Results go out in lines of this many members.
const RESULTS_PER_LINE: usize = 500;

/// Runs the members of `spec` as the commands say, then sends their results.
pub async fn run(spec: WorkerSpec, mut cmds: mpsc::Receiver<Cmd>, out: mpsc::UnboundedSender<Out>) {
    let worker = spec.worker;
    if !spec.all_addrs().all(|a| a.ip().is_loopback())
        || spec.sources.is_empty()
        || !spec.sources.iter().all(|s| s.is_loopback())
    {
        let message = format!(
            "refusing to run: traffic goes to loopback only (servers {:?})",
            spec.all_addrs().collect::<Vec<_>>()
        );
        let _ = out.send(Out::Failed { worker, message });
        let _ = out.send(Out::Done { worker });
        return;
    }
    let lifetime = Duration::from_secs(spec.lifetime_s);
    let progress_every = Duration::from_millis(spec.progress_ms.max(20));
    let members = spec.members.clone();
    let shared = Arc::new(Shared::new(spec));
    let (ctl_tx, ctl_rx) = watch::channel(Ctl::default());
    let handles: Vec<_> =
        members.into_iter().map(|m| tokio::spawn(member::run(shared.clone(), m, ctl_rx.clone()))).collect();
    drop(ctl_rx);

    let deadline = tokio::time::Instant::now() + lifetime;
    let mut tick = tokio::time::interval(progress_every);
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Connect) | Some(Cmd::Reconnect) => ctl_tx.send_modify(|c| {
                    c.online = true;
                    c.epoch += 1;
                }),
                Some(Cmd::Drop) => ctl_tx.send_modify(|c| c.online = false),
                Some(Cmd::Finish) | None => break,
            },
            _ = tick.tick() => {
                if out.send(Out::Progress { worker, counters: shared.counters.snapshot() }).is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    ctl_tx.send_modify(|c| c.finish = true);

    // Members close within a second; past 30 s the stragglers are given up.
    let n = handles.len();
    let mut results: Vec<MemberResult> = Vec::with_capacity(n);
    let gather = async {
        for h in handles {
            if let Ok(r) = h.await {
                results.push(r);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), gather).await.is_err() {
        let _ =
            out.send(Out::Failed { worker, message: format!("{} of {n} members did not finish", n - results.len()) });
    }
    let _ = out.send(Out::Progress { worker, counters: shared.counters.snapshot() });
    for chunk in results.chunks(RESULTS_PER_LINE) {
        let _ = out.send(Out::Results { worker, members: chunk.to_vec() });
    }
    let _ = out.send(Out::Done { worker });
}

/// `muster-loadtest worker`: the spec is the first line on stdin, commands follow; end of
/// input means finish (so a worker never outlives its coordinator for long).
pub async fn main_process() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("no worker spec on stdin")?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("parsing the worker spec")?;
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let lifetime = Duration::from_secs(spec.lifetime_s + 60);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Cmd>(&line) {
                Ok(c) => {
                    if cmd_tx.send(c).await.is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("worker: ignoring '{line}': {e}"),
            }
        }
        let _ = cmd_tx.send(Cmd::Finish).await;
    });
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(o) = out_rx.recv().await {
            let mut line = serde_json::to_vec(&o).expect("Out serializes");
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    tokio::time::timeout(lifetime, run(spec, cmd_rx, out_tx)).await.context("the worker outlived its lifetime")?;
    writer.await?;
    Ok(())
}
