//! Matching over 100,000 members: the nearest-50 search the dispatcher runs for every new
//! incident and every retry.
//!
//! Run with `cargo bench --bench matching`. The binary first times 20,000 individual
//! `find` calls per scenario with `Instant` and prints p50/p90/p99/max (criterion reports
//! means and medians, not tails), then runs the criterion benchmarks:
//!
//! - `nearest_50/city_reach`: every member on call, `Reach::City`.
//! - `nearest_50/community_reach`: every member on call, `Reach::Community`. A community
//!   short of 50 available members would take the linear-scan fallback; the report line
//!   `fallback` says how often that happens for the incident set (never, with everyone on call).
//! - `nearest_50/grid_reach`: every member on call, `Reach::Grid` (no fallback by design).
//! - `nearest_50/sparse_city`: 1% of members on call, `Reach::City`: the ring search walks
//!   far and, where 40 rings hold fewer than 50 members, the whole roster is scanned.
//!
//! Incidents are the centres of 1,000 grids drawn (with repetition) from the city's 564,
//! each asking for one skill; the set rotates call by call. The city is `demo_city(100_000,
//! 2021)`. Under `cargo test --benches` (no `--bench` argument) the binary runs a smoke pass
//! on a 2,000-member city (a few seconds in a debug build).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use muster::demo::{SKILLS, demo_city};
use muster::domain::event::Ts;
use muster::domain::geo::{Cell, Position};
use muster::domain::matching::{Roster, Target, find};
use muster::domain::org::CityIndex;
use muster::domain::response::{Reach, Rules};
use muster::domain::workload::TaskClass;
use muster::settings::Settings;

const MEMBERS: usize = 100_000;
const SMOKE_MEMBERS: usize = 2_000;
const SEED: u64 = 2021;
const WANT: usize = 50;
const INCIDENTS: usize = 1_000;
const SMOKE_INCIDENTS: usize = 50;
/// Calls timed one by one per scenario for the percentiles.
const TIMED_CALLS: usize = 20_000;
/// A scenario stops early once its timed calls have taken this long (the sparse one).
const TIMED_BUDGET: Duration = Duration::from_secs(15);
const SPARSE_ON_CALL_P: f64 = 0.01;
/// 2021-08-02T00:00:00Z, in milliseconds: nobody has a recent duty, so it only matters as input.
const NOW: Ts = 1_627_862_400_000;

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether the per-call timing runs a scenario: like criterion's filter, a positional
/// argument (`cargo bench --bench matching -- sparse`) keeps the names containing it.
fn selected(name: &str) -> bool {
    // Criterion's options that take a value, whose value is not a filter.
    const WITH_VALUE: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with('-') && (*i == 0 || !WITH_VALUE.contains(&args[i - 1].as_str())))
        .map(|(_, a)| a)
        .collect();
    positional.is_empty() || positional.iter().any(|p| name.contains(p.as_str()))
}

struct Incident {
    location: Position,
    grid: u32,
    skills: Vec<String>,
    difficulty: u8,
    class: TaskClass,
}

struct Fixture {
    city: CityIndex,
    /// Every member on call.
    full: Roster,
    /// About 1% of members on call.
    sparse: Roster,
    rules: Rules,
    incidents: Vec<Incident>,
    offered: HashSet<u32>,
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    reach: Reach,
    sparse: bool,
    /// A peacetime call below level Ⅱ: only the community's own members (when the rules
    /// say so), as `dispatcher::refill` sets it. City-wide calls are wartime or escalated.
    own_community: bool,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario { name: "city_reach", reach: Reach::City, sparse: false, own_community: false },
    Scenario { name: "community_reach", reach: Reach::Community, sparse: false, own_community: true },
    Scenario { name: "grid_reach", reach: Reach::Grid, sparse: false, own_community: true },
    Scenario { name: "sparse_city", reach: Reach::City, sparse: true, own_community: false },
];

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let members = if full_mode() { MEMBERS } else { SMOKE_MEMBERS };
        let started = Instant::now();
        let mut city = demo_city(members, SEED);
        for m in &mut city.members {
            m.on_call = true;
        }
        let city = CityIndex::build(city).expect("the demo city is valid");
        let full = Roster::from_city(&city);

        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let mut sparse = full.clone();
        for i in 0..sparse.members.len() as u32 {
            let on_call = rng.gen_bool(SPARSE_ON_CALL_P);
            sparse.edit(i, |m| m.on_call = on_call);
        }

        let rules = Settings::load_with_env(None, Vec::new()).expect("default settings load").dispatch;

        let grids = city.grid_centers.len();
        let n_incidents = if full_mode() { INCIDENTS } else { SMOKE_INCIDENTS };
        let incidents = (0..n_incidents)
            .map(|i| {
                let grid = rng.gen_range(0..grids) as u32;
                // Difficulties 1 to 5 in turn: easy, normal and hard tasks alike.
                let difficulty = (i % 5) as u8 + 1;
                Incident {
                    location: city.grid_centers[grid as usize],
                    grid,
                    skills: vec![SKILLS[i % SKILLS.len()].0.to_string()],
                    difficulty,
                    class: TaskClass::of(difficulty, &rules),
                }
            })
            .collect();

        let on_call = sparse.members.iter().filter(|m| m.on_call).count();
        let mut sizes: Vec<usize> = full.buckets.values().map(Vec::len).collect();
        sizes.sort_unstable();
        let q = |p: f64| sizes[((p * sizes.len() as f64) as usize).min(sizes.len() - 1)];
        println!(
            "members per occupied cell: min {} p50 {} p90 {} p99 {} max {}",
            sizes[0],
            q(0.5),
            q(0.9),
            q(0.99),
            sizes[sizes.len() - 1]
        );
        println!(
            "fixture: {members} members in {} cells, {grids} grids; sparse roster has {on_call} on call; \
             candidate_pool {}, max_ring {}; built in {:.2?}",
            full.buckets.len(),
            rules.candidate_pool,
            rules.max_ring,
            started.elapsed()
        );
        Fixture { city, full, sparse, rules, incidents, offered: HashSet::new() }
    })
}

impl Fixture {
    fn roster(&self, s: Scenario) -> &Roster {
        if s.sparse { &self.sparse } else { &self.full }
    }

    fn own_community(&self, s: Scenario, inc: &Incident) -> Option<u32> {
        (s.own_community && self.rules.peacetime_own_community)
            .then(|| self.city.grid_places[inc.grid as usize].community)
    }

    fn run(&self, s: Scenario, i: usize) -> usize {
        let inc = &self.incidents[i % self.incidents.len()];
        let target = Target {
            location: inc.location,
            grid: inc.grid,
            skills: &inc.skills,
            offered: &self.offered,
            difficulty: inc.difficulty,
            class: inc.class,
            own_community: self.own_community(s, inc),
            wartime: false,
        };
        let found = find(&self.city, self.roster(s), &self.rules, black_box(&target), s.reach, WANT, NOW);
        black_box(&found);
        found.len()
    }

    /// Does `find` leave the ring search for the roster scan, and at which ring would the
    /// pool be full? Mirrors the filter and stopping rule of `find` (outside any timing);
    /// keep it in step with `matching::find`.
    fn ring_profile(&self, s: Scenario) -> (usize, f64, usize) {
        let roster = self.roster(s);
        let pool_size = self.rules.candidate_pool.max(WANT);
        let (mut fallbacks, mut rings_sum, mut rings_n, mut short) = (0, 0u64, 0u64, 0);
        for inc in &self.incidents {
            let origin = inc.location.cell();
            let own = self.own_community(s, inc);
            // Nobody is engaged, fatigued or at the easy cap here, and nothing was offered.
            let eligible = |i: u32| {
                roster.available(i, &self.rules, NOW)
                    && own
                        .is_none_or(|c| roster.home(i) == c || self.city.member_paired_community[i as usize] == Some(c))
            };
            let mut per_ring = vec![0usize; self.rules.max_ring as usize + 1];
            let mut in_reach_total = 0;
            for (cell, bucket) in &roster.buckets {
                if !self.in_reach(s.reach, inc.grid, *cell) {
                    continue;
                }
                let n = bucket.iter().filter(|&&i| eligible(i)).count();
                in_reach_total += n;
                if let Ok(d) = origin.0.grid_distance(cell.0)
                    && d >= 0
                    && (d as u32) <= self.rules.max_ring
                {
                    per_ring[d as usize] += n;
                }
            }
            if in_reach_total < WANT {
                short += 1;
            }
            let mut cum = 0;
            let filled = per_ring.iter().position(|&n| {
                cum += n;
                cum >= pool_size
            });
            match filled {
                Some(k) => {
                    rings_sum += k as u64;
                    rings_n += 1;
                }
                None if s.reach != Reach::Grid => fallbacks += 1,
                None => {}
            }
        }
        let mean_ring = if rings_n == 0 { f64::NAN } else { rings_sum as f64 / rings_n as f64 };
        (fallbacks, mean_ring, short)
    }

    /// Mirror of `matching::in_reach` (private there).
    fn in_reach(&self, reach: Reach, incident_grid: u32, cell: Cell) -> bool {
        if reach == Reach::City {
            return true;
        }
        let Some(&g) = self.city.cell_to_grid.get(&cell) else { return false };
        let (here, there) = (self.city.grid_places[g as usize], self.city.grid_places[incident_grid as usize]);
        match reach {
            Reach::Grid => g == incident_grid || self.city.grid_neighbours[incident_grid as usize].contains(&g),
            Reach::Community => here.community == there.community,
            Reach::Street => here.street == there.street,
            Reach::District => here.district == there.district,
            Reach::City => true,
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The value at quantile `q` of sorted samples (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Times individual calls with `Instant` and prints the tail: criterion does not report p99.
fn percentiles(_: &mut Criterion) {
    let f = fixture();
    let (calls, warmup) = if full_mode() { (TIMED_CALLS, 1_000) } else { (20, 2) };
    println!();
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  {:>5} {:>9} {:>9}",
        "per-call timing (µs)", "calls", "mean", "p50", "p90", "p99", "max", "found", "fallback", "mean ring"
    );
    for s in SCENARIOS.into_iter().filter(|s| selected(&format!("nearest_50/{}", s.name))) {
        for i in 0..warmup {
            f.run(s, i);
        }
        let mut samples = Vec::with_capacity(calls);
        let mut found = 0;
        let started = Instant::now();
        for i in 0..calls {
            let t = Instant::now();
            found += f.run(s, i);
            samples.push(t.elapsed());
            if started.elapsed() > TIMED_BUDGET {
                break;
            }
        }
        let n = samples.len();
        let mean = samples.iter().sum::<Duration>() / n as u32;
        samples.sort_unstable();
        let (fallbacks, mean_ring, short) = f.ring_profile(s);
        println!(
            "{:<28} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {:>5.1} {:>8.1}% {:>9.2}",
            format!("nearest_50/{}", s.name),
            n,
            micros(mean),
            micros(quantile(&samples, 0.50)),
            micros(quantile(&samples, 0.90)),
            micros(quantile(&samples, 0.99)),
            micros(*samples.last().expect("at least one call")),
            found as f64 / n as f64,
            100.0 * fallbacks as f64 / f.incidents.len() as f64,
            mean_ring,
        );
        if short > 0 {
            println!(
                "  ({short} of {} incidents have fewer than {WANT} available members in reach)",
                f.incidents.len()
            );
        }
    }
    println!(
        "(found: mean candidates returned; fallback: share of incidents whose 40 rings hold < 50 members in reach,"
    );
    println!(" so find scans the roster; mean ring: the ring at which the pool fills, over the others)");
    println!();
}

fn nearest_50(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("nearest_50");
    for s in SCENARIOS {
        if s.sparse {
            group.sample_size(20).measurement_time(Duration::from_secs(8));
        } else {
            group.sample_size(50).measurement_time(Duration::from_secs(4));
        }
        let mut i = 0usize;
        group.bench_function(s.name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                f.run(s, i)
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = percentiles, nearest_50
}
criterion_main!(benches);
