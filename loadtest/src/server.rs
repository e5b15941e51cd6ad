//! The muster server as a child process of the harness, and what /proc says about a
//! process (CPU seconds, RSS, peak RSS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Where the muster binary is unless `--muster-bin` says otherwise: beside this executable
/// (`target/release/muster` next to `target/release/muster-loadtest`).
pub fn default_muster_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("muster")))
        .unwrap_or_else(|| PathBuf::from("target/release/muster"))
}

/// Limits that keep the harness from measuring the rate limiter.
pub fn generous_limits() -> Vec<(String, String)> {
    [
        ("MUSTER_LIMITS__HTTP_PER_IP_PER_S", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_IP_BURST", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_PER_S", "1000000"),
        ("MUSTER_LIMITS__HTTP_PER_SUBJECT_BURST", "1000000"),
        ("MUSTER_LIMITS__WS_MESSAGES_PER_S", "1000"),
        ("MUSTER_LIMITS__WS_MESSAGES_BURST", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub struct MusterProcess {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    _data: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct MusterConfig {
    pub bin: PathBuf,
    pub members: usize,
    pub secret: String,
    /// Extra `MUSTER_*` variables (e.g. `MUSTER_WS__OUTBOUND_QUEUE`).
    pub env: Vec<(String, String)>,
    /// The server's stderr goes here.
    pub log: PathBuf,
}

impl MusterProcess {
    /// Starts `muster serve --demo` on 127.0.0.1 (a free port) with a fresh data directory,
    /// and waits for its `listening on http://ADDR` line.
    pub async fn start(cfg: &MusterConfig) -> anyhow::Result<MusterProcess> {
        if !cfg.bin.exists() {
            bail!(
                "no muster binary at {}: build it with `cargo build --release -p muster` or pass --muster-bin",
                cfg.bin.display()
            );
        }
        let data = tempfile::Builder::new().prefix("muster-loadtest-").tempdir()?;
        let log = std::fs::File::create(&cfg.log).with_context(|| format!("creating {}", cfg.log.display()))?;
        let mut cmd = tokio::process::Command::new(&cfg.bin);
        cmd.arg("serve")
            .arg("--demo")
            .arg("--demo-members")
            .arg(cfg.members.to_string())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data.path())
            .env("MUSTER_AUTH__SECRET", &cfg.secret)
            .env("MUSTER_LOG__FILTER", "warn")
            .envs(generous_limits())
            .envs(cfg.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", cfg.bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let find = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix("listening on http://") {
                    return Ok::<_, anyhow::Error>(a.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("the server ended before it listened (see {})", cfg.log.display())
        };
        let addr = tokio::time::timeout(Duration::from_secs(180), find)
            .await
            .context("the server did not listen within 180 s")??;
        anyhow::ensure!(addr.ip().is_loopback(), "the server listens on {addr}, not on loopback");
        // Keep reading what it prints (the demo tokens), so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(MusterProcess { child, addr, pid, _data: data })
    }

    /// SIGTERM, then up to 15 s for a graceful stop, then SIGKILL.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        terminate(self.pid);
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// Sends SIGTERM to a process this harness started.
pub fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcStats {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    /// Peak RSS (VmHWM).
    pub hwm_kib: u64,
    pub threads: u64,
}

/// CPU seconds and memory of a process, from /proc/<pid>/stat and /proc/<pid>/status.
pub fn proc_stats(pid: u32) -> Option<ProcStats> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcStats {
        cpu_s: (utime + stime) / tck,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        threads: kib("Threads:"),
    })
}

/// Facts about this machine for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub open_files: String,
    pub load_avg: String,
}

pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_default();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid rlimit.
    let open_files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        format!("{} (hard {})", lim.rlim_cur, lim.rlim_max)
    } else {
        "?".into()
    };
    Machine {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model,
        mem_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        open_files,
        load_avg: read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    }
}

/// `git rev-parse --short HEAD` where the harness runs, if it is a git checkout.
pub fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
