//! Fairness as a figure (issue #22, item 5): a seeded week of incidents and service orders
//! of mixed difficulty in the demo city, dispatched twice on the same stream of tasks with
//! the same answers from the members: once by muster's rules, once by plain nearest-first.
//!
//! Both runs drive the real domain: `dispatcher::execute` with commands at a simulated clock
//! (raise, accept, decline, tick, resolve, cancel; post, claim, check in, check out), as the
//! engine does, so the offer ladder (overbook, TTL, reach, escalation), `matching::find`,
//! the load ranking, the daily easy cap, fatigue, the hard-order reservation and the weekly
//! easy-order cap are muster's own code. "Nearest-first" is the same domain with every
//! ranking and fairness term set to zero (score = distance, ties by member index) and the
//! caps and the reservation turned off: what a plain dispatcher with the same ladder does.
//!
//! The members' answers are a stated, seeded model, drawn once per (task, member) from the
//! seed so that both runs see the same answer from the same member to the same task:
//!
//! - an offer of an incident is accepted with probability `BASE[d] × exp(−distance / 2 km)`,
//!   `BASE` = 0.85, 0.75, 0.60, 0.45, 0.35 for difficulty 1..5 (nearer and easier, more
//!   often); otherwise declined (60%) or left to expire (40%);
//! - an answer comes after a log-normal delay (median 20 s, σ 0.9: 4% come after the 90 s
//!   TTL and are refused as expired);
//! - an order is claimed by each member of its community with `ORDER_FACTOR` (0.25) times
//!   the same probability, after a log-normal delay (median 15 min, σ 1.0): most members do
//!   not take what they only find on a list; a member named by a hard order's reservation is
//!   sent it (`order.offer`) and answers as to an offer (the same uniform and normal draws,
//!   without the factor, on the offer's delay). A member refused by the reservation tries
//!   again when it ends; one refused by a cap or a full order gives up.
//!
//! The stream: `INCIDENTS_PER_DAY` incidents and `ORDERS_PER_DAY` orders a day, 85% of them
//! between 08:00 and 22:00 local time, in grids drawn uniformly, categories drawn uniformly
//! from the configured ones (their difficulty, one more 20% of the time). Incidents are
//! level IV (80%) or III, headcount 1–2 (easy), 1–3 (normal), 2–4 (hard), resolved 30–90,
//! 60–120 or 120–240 minutes after they fill, cancelled unfilled after an hour. Orders have
//! 1–3 slots, a 24-hour window, are worked for 1–3 hours (check-in, then check-out, which
//! credits the load). Members keep their demo-city positions and duty; no skills are asked.
//!
//! Printed side by side: the Gini of difficulty-weighted load (`LoadStats::of`, as
//! /v1/fairness computes it: over all members, over members on call, and the median over
//! communities of `reports::fairness`), the share of tasks filled and the time to fill per
//! class (p50/p90), and travel per assignment.
//!
//! `cargo bench --bench fairness` runs the week on `demo_city(20_000, 2021)`; `cargo test
//! --bench fairness -- --bench` runs the same in a debug build. Without `--bench` (as
//! `cargo test --all-targets` runs it) a smoke pass of one day on 2,000 members checks that
//! the figures are computed and sane. `FAIRNESS_SEED` sets the seed (printed either way);
//! `FAIRNESS_DAYS` the number of days; `FAIRNESS_VARIANT` adds columns of muster with some
//! settings changed (see `main`), `FAIRNESS_BASE=0` leaves out the two usual ones.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use muster::demo::demo_city;
use muster::domain::dispatcher::{Actor, Command, RaiseIncident, Reply, State, execute};
use muster::domain::event::{EventBody, Ts};
use muster::domain::incident::Status;
use muster::domain::org::City;
use muster::domain::reports;
use muster::domain::response::{Level, Rules};
use muster::domain::scope::of_community;
use muster::domain::service::{OrderStatus, PostOrder};
use muster::domain::state::FrameFilter;
use muster::domain::workload::{LoadStats, TaskClass};
use muster::settings::Settings;

const DEFAULT_SEED: u64 = 2021;
const MEMBERS: usize = 20_000;
const SMOKE_MEMBERS: usize = 2_000;
const DAYS: i64 = 7;
const SMOKE_DAYS: i64 = 1;
const INCIDENTS_PER_DAY: usize = 200;
const ORDERS_PER_DAY: usize = 150;
const SMOKE_INCIDENTS_PER_DAY: usize = 30;
const SMOKE_ORDERS_PER_DAY: usize = 20;
/// Acceptance at zero distance, by difficulty 1..5.
const BASE: [f64; 5] = [0.85, 0.75, 0.60, 0.45, 0.35];
const DISTANCE_SCALE_M: f64 = 2_000.0;
const DECLINE_P: f64 = 0.6;
const ANSWER_MEDIAN_S: f64 = 20.0;
const ANSWER_SIGMA: f64 = 0.9;
const ORDER_FACTOR: f64 = 0.25;
const CLAIM_MEDIAN_S: f64 = 900.0;
const CLAIM_SIGMA: f64 = 1.0;
const CANCEL_UNFILLED_S: i64 = 3_600;
const ORDER_WINDOW_S: i64 = 24 * 3_600;
/// 2021-08-02T00:00:00+08:00: a Monday, local midnight.
const T0: Ts = 1_627_833_600_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

// ---------------------------------------------------------------------------------------
// The stream of tasks
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Incident,
    Order,
}

#[derive(Debug, Clone)]
struct Task {
    kind: Kind,
    at: Ts,
    grid: usize,
    category: String,
    difficulty: u8,
    level: Level,
    /// Headcount of an incident, slots of an order.
    people: u32,
    /// How long the work takes once filled (incidents) or claimed (orders).
    work_ms: i64,
}

fn stream(city: &City, rules: &Rules, days: i64, per_day: (usize, usize), seed: u64) -> Vec<Task> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_7a5c);
    let grids = city.communities.iter().map(|c| c.grids.len()).sum::<usize>();
    let mut tasks = Vec::new();
    for day in 0..days {
        for (kind, n) in [(Kind::Incident, per_day.0), (Kind::Order, per_day.1)] {
            for _ in 0..n {
                // 85% between 08:00 and 22:00 local time.
                let hour = if rng.gen_bool(0.85) { rng.gen_range(8..22) } else { (rng.gen_range(22..32)) % 24 };
                let at = T0 + day * DAY_MS + hour * HOUR_MS + rng.gen_range(0..HOUR_MS);
                let cat = &rules.categories[rng.gen_range(0..rules.categories.len())];
                let difficulty = (cat.difficulty + u8::from(rng.gen_bool(0.2))).min(5);
                let class = TaskClass::of(difficulty, rules);
                let level = if rng.gen_bool(0.8) { Level::IV } else { Level::III };
                let (people, work_min) = match (kind, class) {
                    (Kind::Order, _) => (rng.gen_range(1..=3), rng.gen_range(60..=180)),
                    (Kind::Incident, TaskClass::Easy) => (rng.gen_range(1..=2), rng.gen_range(30..=90)),
                    (Kind::Incident, TaskClass::Normal) => (rng.gen_range(1..=3), rng.gen_range(60..=120)),
                    (Kind::Incident, TaskClass::Hard) => (rng.gen_range(2..=4), rng.gen_range(120..=240)),
                };
                tasks.push(Task {
                    kind,
                    at,
                    grid: rng.gen_range(0..grids),
                    category: cat.id.clone(),
                    difficulty,
                    level,
                    people,
                    work_ms: work_min * 60_000,
                });
            }
        }
    }
    tasks.sort_by_key(|t| t.at);
    tasks
}

// ---------------------------------------------------------------------------------------
// The members' answers
// ---------------------------------------------------------------------------------------

/// What one member does with one task, the same in both runs: a uniform `u` that says
/// whether they are willing (`willing`), and a standard normal `z` that says how long they
/// take (`delay_ms`). Both are drawn before anyone knows how the member will be asked, so
/// the runs are coupled: whoever takes a task when asked one way takes it when asked a more
/// pressing way too.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Draw {
    /// Acceptance at this distance and difficulty, when offered.
    p: f64,
    u: f64,
    /// Unwilling: decline (else let the offer expire).
    declines: bool,
    z: f64,
}

impl Draw {
    /// Willing when sent the task (`notified`: an offer, or a hard order's reservation,
    /// `order.offer`), or when finding it on the community's list.
    fn willing(&self, notified: bool) -> bool {
        self.u < if notified { self.p } else { self.p * ORDER_FACTOR }
    }

    /// A log-normal delay from the same `z`: an answer to an offer (`notified`), or a claim
    /// of an order found on the list.
    fn delay_ms(&self, notified: bool) -> i64 {
        let (median_s, sigma) = if notified { (ANSWER_MEDIAN_S, ANSWER_SIGMA) } else { (CLAIM_MEDIAN_S, CLAIM_SIGMA) };
        (median_s * (sigma * self.z).exp() * 1000.0).round().max(1.0) as i64
    }
}

fn draw(seed: u64, task: usize, member: u32, difficulty: u8, distance_m: f64) -> Draw {
    let key = seed
        ^ (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (member as u64 + 1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    let p = BASE[(difficulty.clamp(1, 5) - 1) as usize] * (-distance_m / DISTANCE_SCALE_M).exp();
    let u: f64 = rng.r#gen();
    let declines = rng.gen_bool(DECLINE_P);
    // Box–Muller: a standard normal for the log-normal delay.
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.r#gen());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    Draw { p, u, declines, z }
}

// ---------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Raise(usize),
    Post(usize),
    Accept { offer: String, member: String },
    Decline { offer: String, member: String },
    Resolve(String),
    CancelUnfilled(String),
    Claim { order: String, member: u32, retried: bool },
    CheckIn { order: String, member: u32 },
    CheckOut { order: String, member: u32 },
}

#[derive(Debug, Clone, Default)]
struct TaskResult {
    /// Time from raising or posting to the last place taken.
    fill_ms: Option<i64>,
    /// Distance of each member who took a place.
    travel_m: Vec<f64>,
}

struct Run {
    results: Vec<TaskResult>,
    /// Per member: difficulty-weighted load, and on call.
    loads: Vec<f64>,
    /// Per member: the part of the load from hard tasks.
    hard_loads: Vec<f64>,
    on_call: Vec<bool>,
    community_gini_median: f64,
    commands: u64,
    refused: u64,
    /// Sum of difficulty over places taken on incidents and orders checked out.
    credited: f64,
}

fn member_actor(id: &str) -> Actor {
    Actor::Member { member: id.to_string() }
}

fn simulate(city: &City, tasks: &[Task], rules: &Rules, seed: u64) -> Run {
    // Nobody listens: build no frames (their seqs still advance).
    let mut state = State { frame_filter: FrameFilter::only(|_| false), ..State::default() };
    let command = Actor::Command { district: None };
    execute(&mut state, rules, &Actor::System, Command::ImportCity(Box::new(city.clone())), T0 - DAY_MS)
        .expect("the demo city imports");

    let mut queue: BTreeMap<(Ts, u64), Step> = BTreeMap::new();
    let mut n = 0u64;
    let mut push = |queue: &mut BTreeMap<(Ts, u64), Step>, at: Ts, step: Step| {
        n += 1;
        queue.insert((at, n), step);
    };
    for (i, t) in tasks.iter().enumerate() {
        push(&mut queue, t.at, if t.kind == Kind::Incident { Step::Raise(i) } else { Step::Post(i) });
    }
    let mut task_of: HashMap<String, usize> = HashMap::new();
    let mut results = vec![TaskResult::default(); tasks.len()];
    let (mut commands, mut refused, mut credited) = (0u64, 0u64, 0.0);
    let mut offer_distance: HashMap<String, f64> = HashMap::new();

    loop {
        let next_step = queue.first_key_value().map(|(k, _)| k.0);
        let next_deadline = state.deadlines.first().map(|d| d.0);
        let (now, cmd, actor, step) = match (next_step, next_deadline) {
            (None, None) => break,
            (s, Some(d)) if s.is_none_or(|s| d <= s) => (d, Command::Tick, Actor::System, None),
            _ => {
                let ((at, _), step) = queue.pop_first().expect("a step");
                let (cmd, actor) = match &step {
                    Step::Raise(i) => {
                        let t = &tasks[*i];
                        let r = RaiseIncident {
                            grid_id: Some(state.city.grid_ids[t.grid].clone()),
                            location: None,
                            category: t.category.clone(),
                            level: t.level,
                            headcount: t.people,
                            skills: Vec::new(),
                            note: None,
                            idempotency_key: None,
                            difficulty: Some(t.difficulty),
                        };
                        (Command::Raise(r), command.clone())
                    }
                    Step::Post(i) => {
                        let t = &tasks[*i];
                        let o = PostOrder {
                            grid_id: Some(state.city.grid_ids[t.grid].clone()),
                            location: None,
                            category: t.category.clone(),
                            difficulty: Some(t.difficulty),
                            title: format!("task {i}"),
                            note: None,
                            window_start: at,
                            window_end: at + ORDER_WINDOW_S * 1000,
                            slots: t.people,
                            skills: Vec::new(),
                        };
                        (Command::PostOrder(o), command.clone())
                    }
                    Step::Accept { offer, member } => {
                        (Command::Accept { offer_id: offer.clone() }, member_actor(member))
                    }
                    Step::Decline { offer, member } => {
                        (Command::Decline { offer_id: offer.clone(), reason: None }, member_actor(member))
                    }
                    Step::Resolve(id) => (Command::Resolve { incident_id: id.clone(), note: None }, command.clone()),
                    Step::CancelUnfilled(id) => {
                        if state.incidents[id].status != Status::Open {
                            continue;
                        }
                        (Command::Cancel { incident_id: id.clone(), reason: None }, command.clone())
                    }
                    Step::Claim { order, member, .. } => (
                        Command::ClaimOrder { order_id: order.clone(), assign_to: None },
                        member_actor(&state.city.members()[*member as usize].id),
                    ),
                    Step::CheckIn { order, member } | Step::CheckOut { order, member } => {
                        let position = state.orders[order].location;
                        let order_id = order.clone();
                        let cmd = if matches!(step, Step::CheckIn { .. }) {
                            Command::CheckIn { order_id, position }
                        } else {
                            Command::CheckOut { order_id, position }
                        };
                        (cmd, member_actor(&state.city.members()[*member as usize].id))
                    }
                };
                (at, cmd, actor, Some(step))
            }
        };
        commands += 1;
        let out = match execute(&mut state, rules, &actor, cmd, now) {
            Ok(out) => out,
            Err(e) => {
                refused += 1;
                // A member kept out of a hard order's reservation comes back when it ends.
                if let Some(Step::Claim { order, member, retried: false }) = step
                    && e.code.as_str() == "priority_window"
                    && let Some(until) = state.orders[&order].priority_until
                {
                    push(&mut queue, until, Step::Claim { order, member, retried: true });
                }
                continue;
            }
        };
        match (&step, &out.reply) {
            (Some(Step::Raise(i)), Some(Reply::Incident(id))) => {
                task_of.insert(id.clone(), *i);
                push(&mut queue, now + CANCEL_UNFILLED_S * 1000, Step::CancelUnfilled(id.clone()));
            }
            (Some(Step::Post(i)), Some(Reply::Order(id))) => {
                task_of.insert(id.clone(), *i);
                let t = &tasks[*i];
                let o = &state.orders[id];
                for m in 0..state.roster.members.len() as u32 {
                    if !of_community(&state, m, o.community) {
                        continue;
                    }
                    let d = state.roster.members[m as usize].position.distance_m(o.location);
                    // Members named by a hard order's reservation are sent it (`order.offer`)
                    // and answer as to an offer; the rest find it on the list.
                    let (a, notified) = (draw(seed, *i, m, t.difficulty, d), o.priority.contains(&m));
                    if a.willing(notified) {
                        let at = now + a.delay_ms(notified);
                        push(&mut queue, at, Step::Claim { order: id.clone(), member: m, retried: false });
                    }
                }
            }
            _ => {}
        }
        for e in &out.events {
            match &e.body {
                EventBody::OfferSent { offer_id, incident_id, member_id, distance_m, .. } => {
                    let i = task_of[incident_id];
                    let m = state.city.member_by_id[member_id];
                    offer_distance.insert(offer_id.clone(), *distance_m);
                    let (offer, member) = (offer_id.clone(), member_id.clone());
                    let a = draw(seed, i, m, tasks[i].difficulty, *distance_m);
                    let at = now + a.delay_ms(true);
                    match (a.willing(true), a.declines) {
                        (true, _) => push(&mut queue, at, Step::Accept { offer, member }),
                        (false, true) => push(&mut queue, at, Step::Decline { offer, member }),
                        (false, false) => {}
                    }
                }
                EventBody::OfferAccepted { offer_id, incident_id, .. } => {
                    let i = task_of[incident_id];
                    results[i].travel_m.push(offer_distance[offer_id]);
                    credited += tasks[i].difficulty as f64;
                }
                EventBody::IncidentFilled { incident_id } => {
                    let i = task_of[incident_id];
                    results[i].fill_ms = Some(now - tasks[i].at);
                    push(&mut queue, now + tasks[i].work_ms, Step::Resolve(incident_id.clone()));
                }
                EventBody::OrderClaimed { order_id, member_id, .. } => {
                    let i = task_of[order_id];
                    let m = state.city.member_by_id[member_id];
                    let o = &state.orders[order_id];
                    results[i].travel_m.push(state.roster.members[m as usize].position.distance_m(o.location));
                    if o.status == OrderStatus::Full {
                        results[i].fill_ms = Some(now - tasks[i].at);
                    }
                    push(&mut queue, now + 10 * 60_000, Step::CheckIn { order: order_id.clone(), member: m });
                    push(
                        &mut queue,
                        now + 10 * 60_000 + tasks[i].work_ms,
                        Step::CheckOut { order: order_id.clone(), member: m },
                    );
                }
                EventBody::CheckedOut { order_id, .. } => credited += tasks[task_of[order_id]].difficulty as f64,
                _ => {}
            }
        }
    }

    let loads: Vec<f64> = state.roster.members.iter().map(|m| m.work.load).collect();
    let hard_loads: Vec<f64> = state.roster.members.iter().map(|m| m.work.hard_load).collect();
    let on_call: Vec<bool> = state.roster.members.iter().map(|m| m.on_call).collect();
    let view = reports::fairness(&state, &Actor::Command { district: None });
    let mut ginis: Vec<f64> = view.communities.iter().map(|r| r.load.gini).collect();
    ginis.sort_by(f64::total_cmp);
    let community_gini_median = ginis.get(ginis.len() / 2).copied().unwrap_or(0.0);
    Run { results, loads, hard_loads, on_call, community_gini_median, commands, refused, credited }
}

// ---------------------------------------------------------------------------------------
// The policies and the report
// ---------------------------------------------------------------------------------------

/// The same rules with every ranking and fairness term off: score = distance.
fn nearest_first(rules: &Rules) -> Rules {
    let mut r = rules.clone();
    r.weights.missing_skill_m = 0.0;
    r.weights.residence_grid_m = 0.0;
    r.weights.paired_team_m = 0.0;
    r.weights.recent_duty_m = 0.0;
    r.weights.reliability_m = 0.0;
    r.fairness.load_m = 0.0;
    r.fairness.hard_first_m = 0.0;
    r.fairness.easy_cap_per_day = u32::MAX;
    r.fatigue.max_duty_h = f64::MAX;
    r.service.hard_priority_s = 0;
    r.service.easy_orders_per_week = u32::MAX;
    r
}

fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// The figures of one run, as strings for the table, and the numbers the smoke pass checks.
struct Figures {
    rows: Vec<(String, String)>,
    gini_all: f64,
    gini_on_call: f64,
    filled: usize,
    unfilled: usize,
}

fn fmt_s(ms: Option<f64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 120_000.0 => format!("{:.0} s", ms / 1000.0),
        Some(ms) => format!("{:.1} min", ms / 60_000.0),
    }
}

fn figures(tasks: &[Task], rules: &Rules, run: &Run) -> Figures {
    let mut rows = Vec::new();
    let all = LoadStats::of(&run.loads);
    let on_call: Vec<f64> = run.loads.iter().zip(&run.on_call).filter(|(_, c)| **c).map(|(l, _)| *l).collect();
    let on = LoadStats::of(&on_call);
    rows.push(("Gini of load, all members (/v1/fairness)".into(), format!("{:.3}", all.gini)));
    rows.push(("Gini of load, members on call".into(), format!("{:.3}", on.gini)));
    rows.push(("Gini of load, median over communities".into(), format!("{:.3}", run.community_gini_median)));
    rows.push((
        "load on call: p50 / p90 / max; idle".into(),
        format!("{:.0} / {:.0} / {:.0}; {} of {}", on.p50, on.p90, on.max, on.idle, on.members),
    ));
    let busy = run.loads.iter().filter(|l| **l > 0.0).count();
    let hard = run.hard_loads.iter().filter(|l| **l > 0.0).count();
    rows.push(("members who carried any load / any hard load".into(), format!("{busy} / {hard}")));
    let (mut filled, mut unfilled) = (0, 0);
    for kind in [Kind::Incident, Kind::Order] {
        for class in [TaskClass::Easy, TaskClass::Normal, TaskClass::Hard] {
            let mine: Vec<usize> = (0..tasks.len())
                .filter(|&i| tasks[i].kind == kind && TaskClass::of(tasks[i].difficulty, rules) == class)
                .collect();
            let mut fill: Vec<f64> = mine.iter().filter_map(|&i| run.results[i].fill_ms.map(|f| f as f64)).collect();
            fill.sort_by(f64::total_cmp);
            filled += fill.len();
            unfilled += mine.len() - fill.len();
            let name = format!("{kind:?}s, {class:?}").to_lowercase();
            let share = if mine.is_empty() { 0.0 } else { fill.len() as f64 / mine.len() as f64 * 100.0 };
            rows.push((format!("{name}: filled (of {})", mine.len()), format!("{share:.1}%")));
            rows.push((
                format!("{name}: time to fill p50 / p90"),
                format!("{} / {}", fmt_s(quantile(&fill, 0.5)), fmt_s(quantile(&fill, 0.9))),
            ));
        }
    }
    for kind in [Kind::Incident, Kind::Order] {
        let mut travel: Vec<f64> = (0..tasks.len())
            .filter(|&i| tasks[i].kind == kind)
            .flat_map(|i| run.results[i].travel_m.iter().copied())
            .collect();
        travel.sort_by(f64::total_cmp);
        let mean = travel.iter().sum::<f64>() / travel.len().max(1) as f64;
        rows.push((
            format!("{kind:?} travel per member: mean / p90 (places taken)").to_lowercase(),
            format!("{mean:.0} m / {:.0} m ({})", quantile(&travel, 0.9).unwrap_or(0.0), travel.len()),
        ));
    }
    rows.push(("commands run (refused)".into(), format!("{} ({})", run.commands, run.refused)));
    Figures { rows, gini_all: gini_of(&run.loads), gini_on_call: gini_of(&on_call), filled, unfilled }
}

fn gini_of(v: &[f64]) -> f64 {
    muster::domain::workload::gini(v)
}

fn main() {
    let full = full_mode();
    let seed: u64 = env_num("FAIRNESS_SEED").unwrap_or(DEFAULT_SEED);
    let days: i64 = env_num("FAIRNESS_DAYS").unwrap_or(if full { DAYS } else { SMOKE_DAYS });
    let members = if full { MEMBERS } else { SMOKE_MEMBERS };
    let per_day =
        if full { (INCIDENTS_PER_DAY, ORDERS_PER_DAY) } else { (SMOKE_INCIDENTS_PER_DAY, SMOKE_ORDERS_PER_DAY) };
    println!(
        "fairness: FAIRNESS_SEED={seed}, {days} day(s), demo_city({members}, 2021), \
         {} incidents and {} orders a day{}",
        per_day.0,
        per_day.1,
        if full { "" } else { " (smoke pass; --bench for the week)" }
    );
    let rules = Settings::load_with_env(None, Vec::new()).expect("default settings load").dispatch;
    let city = demo_city(members, 2021);
    let tasks = stream(&city, &rules, days, per_day, seed);

    let mut policies = Vec::new();
    if std::env::var("FAIRNESS_BASE").as_deref() != Ok("0") {
        policies.push(("muster".to_string(), rules.clone()));
        policies.push(("nearest-first".to_string(), nearest_first(&rules)));
    }
    // More columns, to see what one term does: FAIRNESS_VARIANT="MUSTER_DISPATCH__WEIGHTS__RECENT_DUTY_M=0;…"
    // (the configuration's own environment overrides laid over the defaults, one column per
    // `;`-separated group); FAIRNESS_BASE=0 leaves out the two columns above.
    for v in std::env::var("FAIRNESS_VARIANT").unwrap_or_default().split(';').filter(|v| !v.trim().is_empty()) {
        let env = v.split_whitespace().map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("FAIRNESS_VARIANT: '{kv}' is not KEY=VALUE"));
            (k.to_string(), v.to_string())
        });
        let r = Settings::load_with_env(None, env.collect::<Vec<_>>()).expect("FAIRNESS_VARIANT loads").dispatch;
        policies.push((format!("muster, {}", v.trim()), r));
    }
    assert!(!policies.is_empty(), "FAIRNESS_BASE=0 wants a FAIRNESS_VARIANT");
    let mut figs = Vec::new();
    for (name, r) in &policies {
        let started = Instant::now();
        let run = simulate(&city, &tasks, r, seed);
        println!("{name}: {} commands in {:.1?}", run.commands, started.elapsed());
        let f = figures(&tasks, &rules, &run);
        // The smoke checks: every task is filled or counted unfilled, once; the Gini is a
        // Gini; the load the domain holds is what the places taken add up to.
        assert_eq!(f.filled + f.unfilled, tasks.len(), "{name}: every task is filled or unfilled");
        for (i, r) in run.results.iter().enumerate() {
            let t = &tasks[i];
            assert!(r.fill_ms.is_none_or(|f| f >= 0), "{name}: task {i} filled before it was raised");
            if r.fill_ms.is_some() {
                assert_eq!(r.travel_m.len() as u32, t.people, "{name}: filled task {i} has its places taken");
            }
            assert!(r.travel_m.len() as u32 <= t.people, "{name}: task {i} took more people than it asked");
        }
        for g in [f.gini_all, f.gini_on_call, run.community_gini_median] {
            assert!((0.0..=1.0).contains(&g), "{name}: Gini {g} outside [0, 1]");
        }
        let load: f64 = run.loads.iter().sum();
        assert!(
            (load - run.credited).abs() < 1e-6,
            "{name}: the domain's load {load} is not the {} credited",
            run.credited
        );
        assert!(f.filled > 0, "{name}: something was filled");
        figs.push(f);
    }

    println!();
    let names: Vec<&str> = policies.iter().map(|p| p.0.as_str()).collect();
    println!("| figure | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (i, (label, _)) in figs[0].rows.iter().enumerate() {
        let cells: Vec<&str> = figs.iter().map(|f| f.rows[i].1.as_str()).collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}
