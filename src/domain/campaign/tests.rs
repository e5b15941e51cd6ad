//! The solver against the independent checker: every hard rule, the shortfall, determinism,
//! re-rostering, and random small instances (proptest).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::domain::geo::Position;

const H: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % (24 * H);

fn at(east_m: f64, north_m: f64) -> Position {
    // ~111 km per degree of latitude; at 30.6°N a degree of longitude is ~95.8 km.
    Position::new(30.6 + north_m / 111_195.0, 114.3 + east_m / 95_700.0).unwrap()
}

fn rules() -> HardRules {
    HardRules { max_in_24h_ms: 12 * H, min_rest_ms: 6 * H, max_consecutive_days: 7, max_distance_m: 5_000.0 }
}

fn member(east_m: f64, skills: u64) -> PoolMember {
    PoolMember {
        home: at(east_m, 0.0),
        community: None,
        team: None,
        paired: None,
        skills,
        hours_before: 0.0,
        unavailable: vec![],
    }
}

fn site(east_m: f64) -> SitePlace {
    SitePlace { position: at(east_m, 0.0), community: None }
}

fn span(from_h: i64, to_h: i64) -> Span {
    Span { start: T0 + from_h * H, end: T0 + to_h * H }
}

fn req(site: u32, shift: u32, headcount: u32, skills: u64) -> Req {
    Req { site, shift, role: 0, headcount, skills }
}

fn inst(
    rules: HardRules,
    members: Vec<PoolMember>,
    sites: Vec<SitePlace>,
    shifts: Vec<Span>,
    reqs: Vec<Req>,
) -> Instance {
    Instance::new(rules, Weights::default(), T0, members, sites, shifts, reqs)
}

const BUDGET: Budget = Budget { iterations: 2_000, seed: 7 };

fn run(i: &Instance) -> (Solution, Verdict) {
    let reach = Reach::build(i);
    let sol = solve(i, &reach, BUDGET);
    let v = check(i, &sol.assign);
    assert!(v.violations.is_empty() && v.malformed == 0, "{:?}", v.violations);
    (sol, v)
}

#[test]
fn a_member_without_the_skills_is_never_rostered() {
    // The nearest member lacks the skill; the farther one has it.
    let i = inst(
        rules(),
        vec![member(10.0, 0b00), member(900.0, 0b01)],
        vec![site(0.0)],
        vec![span(0, 6)],
        vec![req(0, 0, 1, 0b01)],
    );
    let (sol, _) = run(&i);
    assert_eq!(sol.assign, vec![1]);
    let i = inst(rules(), vec![member(10.0, 0b10)], vec![site(0.0)], vec![span(0, 6)], vec![req(0, 0, 1, 0b01)]);
    let (sol, _) = run(&i);
    assert_eq!(sol.assign, vec![NONE]);
    assert_eq!(sol.shortfall[0].binding, Rule::Skill);
}

#[test]
fn a_member_past_the_distance_limit_is_never_rostered_unless_paired_near() {
    let far = member(6_000.0, 1);
    let i = inst(rules(), vec![far.clone()], vec![site(0.0)], vec![span(0, 6)], vec![req(0, 0, 1, 1)]);
    let (sol, _) = run(&i);
    assert_eq!(sol.assign, vec![NONE]);
    assert_eq!((sol.shortfall[0].binding, sol.shortfall[0].skilled, sol.shortfall[0].in_reach), (Rule::Distance, 1, 0));
    // Paired with a community 1 km from the site: within reach again.
    let paired = PoolMember { paired: Some((3, at(1_000.0, 0.0))), ..far };
    let i = inst(rules(), vec![paired], vec![site(0.0)], vec![span(0, 6)], vec![req(0, 0, 1, 1)]);
    assert_eq!(run(&i).0.assign, vec![0]);
}

#[test]
fn a_member_unavailable_is_never_rostered_then() {
    let busy = PoolMember { unavailable: vec![(T0 + 5 * H, T0 + 7 * H)], ..member(10.0, 1) };
    let i = inst(
        rules(),
        vec![busy],
        vec![site(0.0)],
        vec![span(0, 6), span(12, 18)],
        vec![req(0, 0, 1, 1), req(0, 1, 1, 1)],
    );
    let (sol, _) = run(&i);
    assert_eq!(sol.assign, vec![NONE, 0]);
    assert_eq!(sol.shortfall[0].binding, Rule::Availability);
}

#[test]
fn nobody_holds_two_overlapping_shifts() {
    let i = inst(
        rules(),
        vec![member(10.0, 1)],
        vec![site(0.0), site(50.0)],
        vec![span(0, 6), span(4, 10)],
        vec![req(0, 0, 1, 1), req(1, 1, 1, 1)],
    );
    let (sol, _) = run(&i);
    assert_eq!(sol.filled(), 1);
    assert_eq!(sol.shortfall[0].binding, Rule::Overlap);
    // Two slots of one shift: one member fills one.
    let i = inst(rules(), vec![member(10.0, 1)], vec![site(0.0)], vec![span(0, 6)], vec![req(0, 0, 2, 1)]);
    let (sol, _) = run(&i);
    assert_eq!((sol.filled(), sol.shortfall[0].missing), (1, 1));
}

#[test]
fn the_rest_rule_holds() {
    // 6 h of rest needed; 0–6 and 10–16 leave 4.
    let i = inst(
        rules(),
        vec![member(10.0, 1)],
        vec![site(0.0)],
        vec![span(0, 6), span(10, 16)],
        vec![req(0, 0, 1, 1), req(0, 1, 1, 1)],
    );
    let (sol, _) = run(&i);
    assert_eq!(sol.filled(), 1);
    assert_eq!(sol.shortfall[0].binding, Rule::Rest);
    let mut r = rules();
    r.min_rest_ms = 4 * H;
    let i = Instance { rules: r, ..i };
    assert_eq!(run(&i).0.filled(), 2);
}

#[test]
fn the_hours_in_24h_rule_holds() {
    // At most 8 h in any 24: 0–6 and 12–18 make 12.
    let mut r = rules();
    r.max_in_24h_ms = 8 * H;
    let i = inst(
        r,
        vec![member(10.0, 1)],
        vec![site(0.0)],
        vec![span(0, 6), span(12, 18), span(30, 36)],
        vec![req(0, 0, 1, 1), req(0, 1, 1, 1), req(0, 2, 1, 1)],
    );
    let (sol, _) = run(&i);
    assert_eq!(sol.filled(), 2, "0–6 and 30–36 fit; 12–18 would make 12 h with either");
    assert_eq!(sol.shortfall.len(), 1);
    assert_eq!(sol.shortfall[0].binding, Rule::Hours);
}

#[test]
fn the_consecutive_days_rule_holds() {
    let mut r = rules();
    r.max_consecutive_days = 2;
    let shifts = vec![span(0, 6), span(24, 30), span(48, 54)];
    let reqs = (0..3).map(|s| req(0, s, 1, 1)).collect();
    let i = inst(r, vec![member(10.0, 1)], vec![site(0.0)], shifts, reqs);
    let (sol, _) = run(&i);
    assert_eq!(sol.filled(), 2);
    assert_eq!(sol.shortfall[0].binding, Rule::ConsecutiveDays);
}

#[test]
fn the_shortfall_is_exact_per_requirement() {
    // Three wanted, two members with the skill in reach, one more far away, one unskilled.
    let members = vec![member(10.0, 1), member(20.0, 1), member(9_000.0, 1), member(30.0, 0)];
    let i = inst(rules(), members, vec![site(0.0)], vec![span(0, 6)], vec![req(0, 0, 3, 1), req(0, 0, 1, 0)]);
    let (sol, v) = run(&i);
    assert_eq!(v.filled, 3);
    assert_eq!(sol.shortfall.len(), 1);
    let s = &sol.shortfall[0];
    assert_eq!((s.req, s.missing, s.skilled, s.in_reach, s.available, s.not_overlapping), (0, 1, 3, 2, 2, 0));
    assert_eq!(s.binding, Rule::Overlap);
}

/// A random instance: members in a 6 km square, two skills, teams, paired communities,
/// some unavailability; sites; 6 h shifts over two days; requirements for two roles.
fn random_instance(seed: u64, members: usize, sites: usize) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pos = |rng: &mut ChaCha8Rng| at(rng.gen_range(0.0..6_000.0), rng.gen_range(0.0..6_000.0));
    let communities: Vec<Position> = (0..4).map(|_| pos(&mut rng)).collect();
    let members = (0..members)
        .map(|_| {
            let team = rng.gen_range(0..6u32);
            let c = team % 4;
            let unavailable = if rng.gen_bool(0.2) {
                let a = T0 + rng.gen_range(0..48) * H;
                vec![(a, a + rng.gen_range(1..12) * H)]
            } else {
                vec![]
            };
            PoolMember {
                home: pos(&mut rng),
                community: Some(rng.gen_range(0..4)),
                team: rng.gen_bool(0.8).then_some(team),
                paired: rng.gen_bool(0.7).then_some((c, communities[c as usize])),
                skills: rng.gen_range(0..4),
                hours_before: rng.gen_range(0.0..10.0),
                unavailable,
            }
        })
        .collect();
    let sites = (0..sites)
        .map(|_| SitePlace { position: pos(&mut rng), community: Some(rng.gen_range(0..4)) })
        .collect::<Vec<_>>();
    let shifts: Vec<Span> = (0..8).map(|k| span(k * 6, k * 6 + 6)).collect();
    let mut reqs = Vec::new();
    for s in 0..sites.len() as u32 {
        for sh in 0..shifts.len() as u32 {
            for role in 0..2u16 {
                let headcount = rng.gen_range(0..3);
                if headcount > 0 {
                    reqs.push(Req { site: s, shift: sh, role, headcount, skills: u64::from(role) });
                }
            }
        }
    }
    let rules = HardRules {
        max_in_24h_ms: rng.gen_range(6..=14) * H,
        min_rest_ms: rng.gen_range(0..=12) * H,
        max_consecutive_days: rng.gen_range(1..=3),
        max_distance_m: rng.gen_range(1_500.0..7_000.0),
    };
    Instance::new(rules, Weights::default(), T0, members, sites, shifts, reqs)
}

#[test]
fn the_same_seed_gives_the_same_roster() {
    let i = random_instance(11, 60, 5);
    let reach = Reach::build(&i);
    let a = solve(&i, &reach, BUDGET);
    let b = solve(&i, &reach, BUDGET);
    assert_eq!(a, b);
    assert!(a.filled() > 0);
}

#[test]
fn local_search_does_not_worsen_the_construction_and_the_bound_holds() {
    let i = random_instance(5, 120, 6);
    let reach = Reach::build(&i);
    let built = solve(&i, &reach, Budget { iterations: 0, seed: 1 });
    let improved = solve(&i, &reach, Budget { iterations: 20_000, seed: 1 });
    let (vb, vi) = (check(&i, &built.assign), check(&i, &improved.assign));
    assert!(vi.filled >= vb.filled);
    if vi.filled == vb.filled {
        assert!(vi.objective <= vb.objective + 1e-6, "{} > {}", vi.objective, vb.objective);
    }
    let greedy = check(&i, &greedy_nearest(&i, &reach));
    assert!(greedy.violations.is_empty());
    let (bound, covered) = travel_bound(&i, &reach);
    assert!(covered >= vi.filled);
    if vi.filled == vi.slots {
        assert!(bound <= vi.travel_total_m + 1e-6);
    }
}

#[test]
fn no_shows_are_replaced_moving_few_people() {
    let i = random_instance(3, 150, 4);
    let reach = Reach::build(&i);
    let first = solve(&i, &reach, BUDGET);
    // Members of the third shift who do not come: unavailable from its start for a day.
    let third = 2u32;
    let start = i.shifts[third as usize].start;
    let no_shows: Vec<u32> = (0..i.slots() as u32)
        .filter(|&s| i.req_of(s).shift == third && first.assign[s as usize] != NONE)
        .map(|s| first.assign[s as usize])
        .step_by(3)
        .collect();
    assert!(!no_shows.is_empty());
    let mut after = i.clone();
    for &m in &no_shows {
        after.members[m as usize].unavailable.push((start, start + 24 * H));
    }
    let reach2 = Reach::build(&after);
    let again = reroster(&after, &reach2, &first.assign, start, BUDGET);
    let v = check(&after, &again.assign);
    assert!(v.violations.is_empty(), "{:?}", v.violations);
    // Earlier shifts untouched; no no-show holds a slot from the third shift on.
    for s in 0..i.slots() {
        let r = i.req_of(s as u32);
        if i.shifts[r.shift as usize].start < start {
            assert_eq!(again.assign[s], first.assign[s]);
        } else if i.shifts[r.shift as usize].start < start + 24 * H {
            assert!(!no_shows.contains(&again.assign[s]), "a no-show still holds slot {s}");
        }
    }
    // Vacated slots: the no-shows' slots in the day they cannot serve.
    let vacated = (0..i.slots())
        .filter(|&s| (start..start + 24 * H).contains(&i.shifts[i.req_of(s as u32).shift as usize].start))
        .filter(|&s| no_shows.contains(&first.assign[s]))
        .count();
    let changed = changes(&first.assign, &again.assign);
    assert!(changed >= vacated, "each vacated slot changed (refilled or left empty)");
    assert!(changed <= 2 * vacated, "{changed} changes for {vacated} vacated slots");
}

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/domain/campaign/proptest-regressions.txt");

#[test]
fn the_checker_finds_no_violation_in_any_roster_on_random_instances() {
    let mut runner = TestRunner::new(Config {
        cases: 48,
        rng_seed: RngSeed::Fixed(0x19_c4_4a_16),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    });
    let strategy = (any::<u64>(), 1usize..40, 1usize..5, 0u64..3_000);
    runner
        .run(&strategy, |(seed, members, sites, iterations)| {
            let i = random_instance(seed, members, sites);
            let reach = Reach::build(&i);
            let sol = solve(&i, &reach, Budget { iterations, seed });
            let v = check(&i, &sol.assign);
            prop_assert!(v.violations.is_empty() && v.malformed == 0, "solve: {:?}", v.violations);
            prop_assert_eq!(v.filled + sol.shortfall.iter().map(|s| s.missing as usize).sum::<usize>(), v.slots);
            let g = check(&i, &greedy_nearest(&i, &reach));
            prop_assert!(g.violations.is_empty(), "greedy: {:?}", g.violations);
            let mut after = i.clone();
            for m in after.members.iter_mut().step_by(4) {
                m.unavailable.push((T0 + 12 * H, T0 + 30 * H));
            }
            let again = reroster(&after, &Reach::build(&after), &sol.assign, T0 + 12 * H, Budget { iterations, seed });
            let v = check(&after, &again.assign);
            prop_assert!(v.violations.is_empty(), "reroster: {:?}", v.violations);
            Ok(())
        })
        .unwrap();
}
