//! The coordinator's side of the workers: in-process tasks (the smoke test) or child
//! processes of the harness's own executable (`worker` subcommand), when the members need
//! more sockets than one process may open (~9,000 client sockets each on this machine).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::proto::{Cmd, Counters, MemberResult, Out, WorkerSpec};

#[derive(Debug, Clone)]
pub enum Mode {
    /// Workers are tasks of this process.
    InProcess,
    /// Workers are child processes: `exe worker`.
    Processes { exe: PathBuf },
}

enum Link {
    Chan(mpsc::Sender<Cmd>),
    Pipe(ChildStdin),
}

pub struct Fleet {
    links: Vec<Link>,
    rx: mpsc::UnboundedReceiver<Out>,
    latest: Vec<Counters>,
    done: Vec<bool>,
    results: Vec<MemberResult>,
    pub failures: Vec<String>,
    children: Vec<Child>,
    pub members: usize,
}

impl Fleet {
    pub async fn start(specs: Vec<WorkerSpec>, mode: &Mode) -> anyhow::Result<Fleet> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut links = Vec::new();
        let mut children = Vec::new();
        let members = specs.iter().map(|s| s.members.len()).sum();
        let n = specs.len();
        for spec in specs {
            match mode {
                Mode::InProcess => {
                    let (ctx, crx) = mpsc::channel(16);
                    tokio::spawn(crate::worker::run(spec, crx, tx.clone()));
                    links.push(Link::Chan(ctx));
                }
                Mode::Processes { exe } => {
                    let worker = spec.worker;
                    let mut child = tokio::process::Command::new(exe)
                        .arg("worker")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .kill_on_drop(true)
                        .spawn()
                        .with_context(|| format!("starting worker {worker} ({})", exe.display()))?;
                    let mut stdin = child.stdin.take().expect("piped");
                    let mut line = serde_json::to_vec(&spec)?;
                    line.push(b'\n');
                    stdin.write_all(&line).await?;
                    stdin.flush().await?;
                    let stdout = child.stdout.take().expect("piped");
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stdout).lines();
                        while let Ok(Some(l)) = lines.next_line().await {
                            match serde_json::from_str::<Out>(&l) {
                                Ok(o) => {
                                    if tx.send(o).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => eprintln!("worker {worker}: unreadable line ({e})"),
                            }
                        }
                        let _ = tx.send(Out::Failed { worker, message: "its output ended".into() });
                    });
                    links.push(Link::Pipe(stdin));
                    children.push(child);
                }
            }
        }
        Ok(Fleet {
            links,
            rx,
            latest: vec![Counters::default(); n],
            done: vec![false; n],
            results: Vec::new(),
            failures: Vec::new(),
            children,
            members,
        })
    }

    pub async fn send(&mut self, cmd: Cmd) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&cmd)?;
        line.push(b'\n');
        for link in &mut self.links {
            match link {
                Link::Chan(tx) => tx.send(cmd).await.map_err(|_| anyhow::anyhow!("a worker has stopped"))?,
                Link::Pipe(stdin) => {
                    stdin.write_all(&line).await.context("a worker has stopped")?;
                    stdin.flush().await?;
                }
            }
        }
        Ok(())
    }

    /// CPU seconds the clients have used so far: the worker processes', or this process's
    /// when the members run in it (then the coordinator's own share is included).
    pub fn cpu_s(&self) -> Option<f64> {
        let pids: Vec<u32> = if self.children.is_empty() {
            vec![std::process::id()]
        } else {
            self.children.iter().filter_map(|c| c.id()).collect()
        };
        let all: Vec<_> = pids.into_iter().map(crate::server::proc_stats).collect();
        crate::scenario::sum_stats(&all).map(|s| s.cpu_s)
    }

    /// The sum of the workers' latest counters.
    pub fn totals(&self) -> Counters {
        let mut t = Counters::default();
        for c in &self.latest {
            t.add(c);
        }
        t
    }

    fn handle(&mut self, o: Out) {
        match o {
            Out::Progress { worker, counters } => self.latest[worker] = counters,
            Out::Results { members, .. } => self.results.extend(members),
            Out::Done { worker } => self.done[worker] = true,
            Out::Failed { worker, message } => {
                if !self.done[worker] {
                    self.failures.push(format!("worker {worker}: {message}"));
                }
            }
        }
    }

    /// Reads worker output until `done` holds for the totals, or `limit` passes (false).
    /// The bar shows `show(totals)`.
    pub async fn wait(
        &mut self,
        limit: Duration,
        bar: &ProgressBar,
        show: impl Fn(&Counters) -> u64,
        done: impl Fn(&Counters) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let t = self.totals();
            bar.set_position(show(&t));
            if done(&t) {
                return true;
            }
            tokio::select! {
                o = self.rx.recv() => match o {
                    Some(o) => self.handle(o),
                    None => return false,
                },
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Tells every worker to finish and gathers the members' results.
    pub async fn finish(mut self, limit: Duration) -> anyhow::Result<Vec<MemberResult>> {
        let _ = self.send(Cmd::Finish).await;
        self.links.clear(); // closes the pipes: end of input also means finish
        let deadline = tokio::time::Instant::now() + limit;
        while !self.done.iter().all(|d| *d) {
            tokio::select! {
                o = self.rx.recv() => match o {
                    Some(o) => self.handle(o),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        for mut c in std::mem::take(&mut self.children) {
            if tokio::time::timeout(Duration::from_secs(10), c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        if !self.done.iter().all(|d| *d) {
            bail!("workers did not report in time: {:?}", self.failures);
        }
        self.results.sort_by_key(|r| r.idx);
        Ok(self.results)
    }
}
