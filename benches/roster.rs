//! Rostering a campaign (issue #19) on the demo city: the instance, its figures.
//!
//! Run with `cargo bench --bench roster`. The instance: `demo_city(20_000, 2021)`, its
//! 16,000 assault members as the pool (home: the centre of their residence grid; their
//! team's paired community); 1,000 sites spread over the communities (about 5 each, at
//! grid centres); 4 shifts of 6 h a day for 3 days, shared by all sites; per site and
//! shift 7 people in 3 roles (queue order 4, registration 2, a sampling helper 1 who needs
//! the `sampling` skill): 84,000 slots. Rules: at most 12 h in any 24 h, 6 h of rest
//! between shifts, 3 days in a row, 8 km from home or the paired community.
//!
//! It prints, once: the time to roster on one core (reach index, construction + repair +
//! local search), the independent checker's verdict, the fill and shortfall, mean travel
//! against greedy nearest-first on the same instance, the gap to the lower bound on
//! travel, the Gini of hours; then 5% of the members (800) not showing up at the start of
//! the fifth shift, re-rostered from that shift on (time, slots vacated, assignments
//! changed, fill). Then criterion times `solve` on a 100-site instance. Under `cargo test
//! --benches` it runs a small instance once. `ROSTER_ITERATIONS` sets the local search's
//! budget (default 400,000); `ROSTER_WEIGHTS=fair,team,own` other soft weights.

use std::time::Instant;

use criterion::Criterion;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use muster::demo::demo_city;
use muster::domain::campaign::{
    Budget, HardRules, Instance, NONE, Reach, Req, SitePlace, Span, Weights, changes, check, greedy_nearest,
    pool_from_city, reroster, skills_mask, solve, travel_bound,
};
use muster::domain::geo::Position;
use muster::domain::org::{CityIndex, TeamKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const H: i64 = 3_600_000;
const T0: i64 = 1_627_776_000_000; // 2021-08-01T00:00:00Z

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The demo city's assault members and `sites` sites over `days` days.
fn instance(members: usize, sites: usize, days: i64) -> Instance {
    let city = CityIndex::build(demo_city(members, 2021)).expect("the demo city is valid");
    let c = city.city().expect("built from a city");
    let pool: Vec<u32> = (0..c.members.len() as u32)
        .filter(|&m| city.member_team[m as usize].is_some_and(|t| c.teams[t as usize].kind == TeamKind::Assault))
        .collect();
    let members = pool_from_city(&city, &pool, |_| 0.0, |_| Vec::new());
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let mut communities: Vec<usize> = (0..c.communities.len()).collect();
    communities.shuffle(&mut rng);
    let places: Vec<SitePlace> = (0..sites)
        .map(|k| {
            let ci = communities[k % communities.len()];
            let grid = &c.communities[ci].grids[rng.gen_range(0..c.communities[ci].grids.len())];
            let centre = city.grid_centers[city.grid_flat[&grid.id] as usize];
            let position =
                Position::new(centre.lat + rng.gen_range(-0.001..0.001), centre.lng + rng.gen_range(-0.001..0.001))
                    .expect("near a grid centre");
            SitePlace { position, community: Some(ci as u32) }
        })
        .collect();
    let shifts: Vec<Span> = (0..days * 4).map(|k| Span { start: T0 + k * 6 * H, end: T0 + (k + 1) * 6 * H }).collect();
    let sampling = skills_mask(&city, &["sampling".to_string()]);
    let mut reqs = Vec::new();
    for site in 0..sites as u32 {
        for shift in 0..shifts.len() as u32 {
            reqs.push(Req { site, shift, role: 0, headcount: 4, skills: 0 });
            reqs.push(Req { site, shift, role: 1, headcount: 2, skills: 0 });
            reqs.push(Req { site, shift, role: 2, headcount: 1, skills: sampling });
        }
    }
    let rules =
        HardRules { max_in_24h_ms: 12 * H, min_rest_ms: 6 * H, max_consecutive_days: 3, max_distance_m: 8_000.0 };
    Instance::new(rules, weights(), T0, members, places, shifts, reqs)
}

/// The default weights, or `ROSTER_WEIGHTS=fair,team,own` (m/h², m, m) to compare others.
fn weights() -> Weights {
    let mut w = Weights::default();
    if let Ok(v) = std::env::var("ROSTER_WEIGHTS") {
        let f: Vec<f64> = v.split(',').map(|x| x.trim().parse().expect("ROSTER_WEIGHTS=fair,team,own")).collect();
        assert_eq!(f.len(), 3, "ROSTER_WEIGHTS=fair,team,own");
        (w.fair_m_per_h2, w.team_pair_m, w.own_community_m) = (f[0], f[1], f[2]);
    }
    w
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn figures(inst: &Instance, iterations: u64) {
    println!(
        "instance: {} members, {} sites, {} shifts, {} requirements, {} slots; local search budget {iterations}",
        inst.members.len(),
        inst.sites.len(),
        inst.shifts.len(),
        inst.reqs.len(),
        inst.slots()
    );
    let t = Instant::now();
    let reach = Reach::build(inst);
    let t_reach = secs(t);
    let t = Instant::now();
    let built = solve(inst, &reach, Budget { iterations: 0, seed: 19 });
    let t_built = secs(t);
    let t = Instant::now();
    let sol = solve(inst, &reach, Budget { iterations, seed: 19 });
    let t_solve = secs(t);
    println!(
        "roster: reach index {t_reach:.2} s; construction + repair alone {t_built:.2} s; with local search {t_solve:.2} s \
         ({} improving moves); total {:.2} s on one core",
        sol.improvements,
        t_reach + t_solve
    );
    let v = check(inst, &sol.assign);
    let vb = check(inst, &built.assign);
    println!(
        "checker: {} violations, {} malformed; filled {}/{} ({:.2}%); shortfall in {} requirements, {} slots",
        v.violations.len(),
        v.malformed,
        v.filled,
        v.slots,
        100.0 * v.filled as f64 / v.slots as f64,
        sol.shortfall.len(),
        sol.shortfall.iter().map(|s| s.missing).sum::<u32>()
    );
    let mut binding = std::collections::BTreeMap::new();
    for s in &sol.shortfall {
        *binding.entry(format!("{:?}", s.binding)).or_insert(0u32) += s.missing;
    }
    if !binding.is_empty() {
        println!("shortfall by binding rule: {binding:?}");
    }
    let t = Instant::now();
    let greedy = greedy_nearest(inst, &reach);
    let t_greedy = secs(t);
    let g = check(inst, &greedy);
    let (bound, covered) = travel_bound(inst, &reach);
    let lb_mean = bound / covered.max(1) as f64;
    println!(
        "travel: mean {:.0} m (construction alone {:.0} m); greedy nearest-first {:.0} m over {} filled ({} violations, {t_greedy:.2} s): \
         {:.1}% shorter",
        v.travel_mean_m,
        vb.travel_mean_m,
        g.travel_mean_m,
        g.filled,
        g.violations.len(),
        100.0 * (1.0 - v.travel_mean_m / g.travel_mean_m)
    );
    println!(
        "lower bound on travel: mean {lb_mean:.0} m over {covered} slots; gap {:.1}% (greedy {:.1}%)",
        100.0 * (v.travel_mean_m / lb_mean - 1.0),
        100.0 * (g.travel_mean_m / lb_mean - 1.0)
    );
    println!(
        "hours Gini {:.3} (construction alone {:.3}, greedy {:.3}); team pairs {}; own community {:.1}%",
        v.hours_gini,
        vb.hours_gini,
        g.hours_gini,
        v.team_pairs,
        100.0 * v.own_community as f64 / v.filled.max(1) as f64
    );

    // 5% of the members do not show up at the start of the fifth shift.
    let shift = 4.min(inst.shifts.len() as u32 - 1);
    let start = inst.shifts[shift as usize].start;
    let mut in_shift: Vec<u32> = (0..inst.slots() as u32)
        .filter(|&s| inst.req_of(s).shift == shift && sol.assign[s as usize] != NONE)
        .map(|s| sol.assign[s as usize])
        .collect();
    in_shift.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
    let n = (inst.members.len() / 20).min(in_shift.len());
    let no_shows = &in_shift[..n];
    let mut after = inst.clone();
    for &m in no_shows {
        after.members[m as usize].unavailable.push((start, inst.shifts[shift as usize].end));
    }
    let t = Instant::now();
    // The reach index does not change with availability: the one built above serves.
    let again = reroster(&after, &reach, &sol.assign, start, Budget { iterations: 0, seed: 19 });
    let t_re = secs(t);
    let va = check(&after, &again.assign);
    let changed = changes(&sol.assign, &again.assign);
    println!(
        "no-shows: {n} members at the start of shift {shift}; re-roster {:.3} s; {} violations; filled {}/{} \
         (before {}); {changed} assignments changed ({:.2} per no-show); shortfall {} slots",
        t_re,
        va.violations.len(),
        va.filled,
        va.slots,
        v.filled,
        changed as f64 / n.max(1) as f64,
        again.shortfall.iter().map(|s| s.missing).sum::<u32>()
    );
}

fn main() {
    let iterations = std::env::var("ROSTER_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(400_000u64);
    if !full_mode() {
        figures(&instance(1_000, 40, 2), 5_000);
        return;
    }
    figures(&instance(20_000, 1_000, 3), iterations);
    let small = instance(20_000, 100, 3);
    let reach = Reach::build(&small);
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    c.bench_function("roster 100 sites × 12 shifts × 7 (8,400 slots), 100k moves", |b| {
        b.iter(|| solve(&small, &reach, Budget { iterations: 100_000, seed: 19 }))
    });
    c.final_summary();
}
