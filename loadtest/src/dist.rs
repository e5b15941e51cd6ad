//! How long a member takes to answer: `0` (capacity runs), `fixed:MS`, `uniform:MIN:MAX`
//! or `lognormal:MEDIAN_MS[:SIGMA[:MAX_MS]]` (people: most answer in a couple of
//! seconds, a few take much longer). Every draw is capped, so no member waits unbounded.

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The cap of a lognormal draw when none is given.
pub const DEFAULT_MAX_MS: f64 = 60_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delay {
    Zero,
    Fixed { ms: f64 },
    Uniform { min_ms: f64, max_ms: f64 },
    LogNormal { median_ms: f64, sigma: f64, max_ms: f64 },
}

impl Delay {
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match *self {
            Delay::Zero => 0.0,
            Delay::Fixed { ms } => ms,
            Delay::Uniform { min_ms, max_ms } => {
                if max_ms > min_ms {
                    rng.gen_range(min_ms..max_ms)
                } else {
                    min_ms
                }
            }
            Delay::LogNormal { median_ms, sigma, max_ms } => {
                // Box-Muller: one standard normal from two uniforms.
                let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
                let u2: f64 = rng.r#gen();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (median_ms.ln() + sigma * z).exp().min(max_ms)
            }
        };
        Duration::from_micros((ms.max(0.0) * 1000.0) as u64)
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Delay::Zero) || matches!(self, Delay::Fixed { ms } if *ms <= 0.0)
    }

    /// The longest a draw can take.
    pub fn max(&self) -> Duration {
        let ms = match *self {
            Delay::Zero => 0.0,
            Delay::Fixed { ms } => ms,
            Delay::Uniform { max_ms, .. } => max_ms,
            Delay::LogNormal { max_ms, .. } => max_ms,
        };
        Duration::from_micros((ms.max(0.0) * 1000.0) as u64)
    }

    pub fn describe(&self) -> String {
        match *self {
            Delay::Zero => "0 ms".into(),
            Delay::Fixed { ms } => format!("{ms} ms"),
            Delay::Uniform { min_ms, max_ms } => format!("uniform {min_ms}–{max_ms} ms"),
            Delay::LogNormal { median_ms, sigma, max_ms } => {
                format!("lognormal, median {median_ms} ms, sigma {sigma}, capped at {max_ms} ms")
            }
        }
    }
}

impl FromStr for Delay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            parts
                .get(i)
                .ok_or_else(|| format!("'{s}': {what} is missing"))?
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("'{s}': {what} must be a non-negative number"))
        };
        let opt = |i: usize, what: &str, default: f64| if parts.len() > i { num(i, what) } else { Ok(default) };
        match parts[0] {
            "0" | "zero" if parts.len() == 1 => Ok(Delay::Zero),
            "fixed" => Ok(Delay::Fixed { ms: num(1, "the delay in ms")? }),
            "uniform" => Ok(Delay::Uniform { min_ms: num(1, "the minimum")?, max_ms: num(2, "the maximum")? }),
            "lognormal" => {
                let median_ms = num(1, "the median in ms")?;
                if median_ms <= 0.0 {
                    return Err(format!("'{s}': the median must be above 0"));
                }
                Ok(Delay::LogNormal {
                    median_ms,
                    sigma: opt(2, "sigma", 0.8)?,
                    max_ms: opt(3, "the cap in ms", DEFAULT_MAX_MS)?,
                })
            }
            _ => Err(format!("'{s}' is not 0, fixed:MS, uniform:MIN:MAX or lognormal:MEDIAN_MS[:SIGMA[:MAX_MS]]")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_and_draws_within_bounds() {
        assert_eq!("0".parse::<Delay>().unwrap(), Delay::Zero);
        assert_eq!("fixed:5".parse::<Delay>().unwrap(), Delay::Fixed { ms: 5.0 });
        assert!("lognormal:0".parse::<Delay>().is_err());
        assert!("normal:3".parse::<Delay>().is_err());
        let d: Delay = "lognormal:2000:0.8:10000".parse().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut draws: Vec<Duration> = (0..20_001).map(|_| d.sample(&mut rng)).collect();
        draws.sort();
        let median = draws[10_000].as_secs_f64();
        assert!((1.8..2.2).contains(&median), "median {median}");
        assert!(draws.last().unwrap() <= &Duration::from_secs(10));
    }
}
