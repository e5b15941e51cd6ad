//! Percentiles (nearest rank) and cumulative curves.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub fn summarize(mut ms: Vec<f64>) -> Summary {
    ms.retain(|v| v.is_finite());
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return Summary::default();
    }
    Summary {
        n: ms.len(),
        p50_ms: round(rank(&ms, 50.0)),
        p95_ms: round(rank(&ms, 95.0)),
        p99_ms: round(rank(&ms, 99.0)),
        max_ms: round(*ms.last().expect("non-empty")),
        mean_ms: round(ms.iter().sum::<f64>() / ms.len() as f64),
    }
}

/// (seconds since the start, how many by then) for a chart, at most `points` points.
pub fn cumulative(mut at_ms: Vec<f64>, points: usize) -> Vec<(f64, f64)> {
    at_ms.retain(|v| v.is_finite());
    at_ms.sort_by(f64::total_cmp);
    let n = at_ms.len();
    if n == 0 {
        return vec![(0.0, 0.0)];
    }
    let step = n.div_ceil(points.max(1)).max(1);
    let mut out = vec![(at_ms[0].min(0.0) / 1000.0, 0.0)];
    for (i, t) in at_ms.iter().enumerate() {
        if i % step == step - 1 || i == n - 1 {
            out.push((t / 1000.0, (i + 1) as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = summarize((1..=100).map(f64::from).collect());
        assert_eq!((s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms), (100, 50.0, 95.0, 99.0, 100.0));
        assert_eq!(summarize(vec![]).n, 0);
        let c = cumulative(vec![3000.0, 1000.0, 2000.0], 10);
        assert_eq!(c.last(), Some(&(3.0, 3.0)));
    }
}
