//! The end of a run: a table written as JSON and as Markdown into `--out`, and a PNG chart
//! of counts over time (plotters' bitmap backend; text through ab_glyph with a TTF found on
//! the machine, else no text at all and the legend only in the Markdown).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::server::Machine;
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<String>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// One muster node's figures in a multi-node run (or the sum over the nodes, or the Redis).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFigures {
    /// "0", "1", …, "all nodes", "redis-server".
    pub node: String,
    pub addr: Option<String>,
    pub pid: Option<u32>,
    /// Members connected to it.
    pub connections: Option<u64>,
    /// CPU seconds in the scenario's main phase (`Report::node_phase` says which).
    pub cpu_phase_s: Option<f64>,
    /// CPU seconds from before the members connected to the end of the run.
    pub cpu_run_s: Option<f64>,
    /// Peak RSS (VmHWM) at the end of the run; for "all nodes" the sum of the peaks.
    pub peak_rss_mib: Option<f64>,
    /// (RSS with its members connected and idle − RSS before) / its connections.
    pub rss_per_conn_kib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    pub rgb: (u8, u8, u8),
    /// (seconds, count)
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub started_utc: String,
    pub git_rev: String,
    pub machine: Machine,
    pub params: BTreeMap<String, Value>,
    pub rows: Vec<Row>,
    pub latencies: Vec<Latency>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// Per node, in a multi-node run (empty on one node).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeFigures>,
    /// What `cpu_phase_s` of `nodes` covers.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_phase: String,
    #[serde(skip)]
    pub series: Vec<Series>,
    /// What the chart's y axis counts.
    pub y_desc: String,
    pub chart: Option<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            git_rev: crate::server::git_rev(),
            machine: crate::server::machine(),
            params: BTreeMap::new(),
            rows: Vec::new(),
            latencies: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            nodes: Vec::new(),
            node_phase: String::new(),
            series: Vec::new(),
            y_desc: "members".into(),
            chart: None,
        }
    }

    pub fn param(&mut self, k: &str, v: impl Serialize) {
        self.params.insert(k.into(), serde_json::to_value(v).unwrap_or(Value::Null));
    }

    pub fn row(&mut self, metric: &str, value: f64, unit: &str) {
        self.rows.push(Row { metric: metric.into(), value: round3(value), unit: unit.into(), target: None, met: None });
    }

    /// A row with a target: `met` is whether the value is at most `max`.
    pub fn row_max(&mut self, metric: &str, value: f64, unit: &str, max: f64) {
        self.rows.push(Row {
            metric: metric.into(),
            value: round3(value),
            unit: unit.into(),
            target: Some(format!("≤ {max} {unit}")),
            met: Some(value <= max),
        });
    }

    /// A row with a target: `met` is whether the value is at least `min`.
    pub fn row_min(&mut self, metric: &str, value: f64, unit: &str, min: f64) {
        self.rows.push(Row {
            metric: metric.into(),
            value: round3(value),
            unit: unit.into(),
            target: Some(format!("≥ {min} {unit}")),
            met: Some(value >= min),
        });
    }

    pub fn latency(&mut self, name: &str, s: Summary) {
        self.latencies.push(Latency { name: name.into(), summary: s });
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok, detail: detail.into() });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn value(&self, metric: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.metric == metric).map(|r| r.value)
    }

    pub fn all_checks_pass(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("# muster-loadtest: {}\n\n", self.scenario));
        s.push_str(&format!("- command: `{}`\n", self.command));
        s.push_str(&format!("- started: {}, commit `{}`\n", self.started_utc, self.git_rev));
        let m = &self.machine;
        s.push_str(&format!(
            "- machine: {} CPUs ({}), {} GiB, Linux {}, open files {}, load average at start {}\n",
            m.cpus, m.cpu_model, m.mem_gib, m.kernel, m.open_files, m.load_avg
        ));
        if !self.params.is_empty() {
            let p: Vec<String> = self.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            s.push_str(&format!("- parameters: {}\n", p.join(", ")));
        }
        s.push_str("\n| metric | value | target | met |\n| --- | ---: | --- | --- |\n");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            s.push_str(&format!(
                "| {} | {} {} | {} | {} |\n",
                r.metric,
                fmt_num(r.value),
                r.unit,
                r.target.clone().unwrap_or_default(),
                met
            ));
        }
        if !self.nodes.is_empty() {
            s.push_str(&format!(
                "\nPer node ({} nodes):\n\n| node | address | pid | connections | CPU, {} (s) | CPU, whole run (s) | peak RSS (MiB) | RSS per idle connection (KiB) |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
                self.nodes.iter().filter(|n| n.addr.is_some()).count(),
                self.node_phase
            ));
            let num = |v: Option<f64>| v.map(|v| fmt_num(round3(v))).unwrap_or_default();
            for n in &self.nodes {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    n.node,
                    n.addr.clone().unwrap_or_default(),
                    n.pid.map(|p| p.to_string()).unwrap_or_default(),
                    n.connections.map(|c| c.to_string()).unwrap_or_default(),
                    num(n.cpu_phase_s),
                    num(n.cpu_run_s),
                    num(n.peak_rss_mib),
                    num(n.rss_per_conn_kib),
                ));
            }
        }
        if !self.latencies.is_empty() {
            s.push_str("\n| latency (ms) | n | p50 | p95 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
            for l in &self.latencies {
                let x = &l.summary;
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    l.name,
                    x.n,
                    fmt_num(x.p50_ms),
                    fmt_num(x.p95_ms),
                    fmt_num(x.p99_ms),
                    fmt_num(x.max_ms)
                ));
            }
        }
        if !self.checks.is_empty() {
            s.push_str("\nCorrectness:\n\n");
            for c in &self.checks {
                s.push_str(&format!("- [{}] {}: {}\n", if c.ok { "x" } else { " " }, c.name, c.detail));
            }
        }
        if let Some(chart) = &self.chart {
            s.push_str(&format!(
                "\n![{y} over time]({chart})\n\nChart legend (x: seconds from the command; y: {y}):\n\n",
                y = self.y_desc
            ));
            for sr in &self.series {
                s.push_str(&format!("- rgb({}, {}, {}): {}\n", sr.rgb.0, sr.rgb.1, sr.rgb.2, sr.label));
            }
        }
        if !self.notes.is_empty() {
            s.push_str("\nNotes:\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }

    /// Writes `<scenario>.json`, `<scenario>.md` and, with series, `<scenario>.png`.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        if !self.series.is_empty() {
            let png = dir.join(format!("{}.png", self.scenario));
            match chart(&png, &self.scenario, &self.y_desc, &self.series) {
                Ok(labels) => {
                    if !labels {
                        self.note("no TTF font was found, so the chart has no text; the legend is above");
                    }
                    self.chart = Some(format!("{}.png", self.scenario));
                    written.push(png);
                }
                Err(e) => self.note(format!("the chart could not be drawn: {e}")),
            }
        }
        let json = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&json, serde_json::to_string_pretty(self)?)?;
        let md = dir.join(format!("{}.md", self.scenario));
        std::fs::write(&md, self.markdown())?;
        written.push(json);
        written.push(md);
        Ok(written)
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.2}") }
}

/// Registers a TTF as "sans-serif" once; false when none is found.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        const CANDIDATES: &[&str] = &[
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        ];
        for path in CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Draws the series as lines; returns whether text could be drawn.
pub fn chart(path: &Path, title: &str, y_desc: &str, series: &[Series]) -> anyhow::Result<bool> {
    use plotters::prelude::*;
    let labels = font_available();
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.1f64, f64::max) * 1.05;
    let x_min = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0f64, f64::min);
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.05;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut b = ChartBuilder::on(&root);
    b.margin(20);
    if labels {
        b.caption(title, ("sans-serif", 24)).x_label_area_size(45).y_label_area_size(70);
    } else {
        b.x_label_area_size(5).y_label_area_size(5);
    }
    let mut c = b.build_cartesian_2d(x_min..x_max, 0.0..y_max).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut mesh = c.configure_mesh();
    if labels {
        mesh.x_desc("seconds from the command").y_desc(y_desc).label_style(("sans-serif", 15));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for s in series {
        let colour = RGBColor(s.rgb.0, s.rgb.1, s.rgb.2);
        let drawn = c
            .draw_series(LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if labels {
            drawn.label(s.label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
    }
    if labels {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(labels)
}
