//! Rostering: members to site × shift × role slots.
//!
//! `solve` builds a roster in two phases: a construction heuristic (slots in order of
//! scarcity, each given its cheapest eligible member from the site's candidates, nearest
//! first, with the scan cut off once no farther candidate can be cheaper), a repair pass
//! (an empty slot takes a member who holds a conflicting slot when someone else can take
//! that one), then local search within an iteration budget (replace a member by a cheaper
//! free one, or swap two members of the same shift between sites; first improvement,
//! seeded). `greedy_nearest` is the baseline, `travel_bound` the lower bound, `reroster`
//! the incremental repair of a published roster. Everything is deterministic in the
//! instance and the seed: no clock, no hash-order iteration.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::time::Ts;
use super::book::{Book, Rule};
use super::instance::{Instance, NONE, Reach};

/// How much local search may do (the domain has no clock: the caller picks a budget that
/// fits its time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    pub iterations: u64,
    pub seed: u64,
}

/// A requirement short of members: how many, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shortfall {
    pub req: u32,
    pub missing: u32,
    /// The rule that leaves nobody: the first stage of the funnel that is empty.
    pub binding: Rule,
    /// The funnel: members with the skills; of them, in reach; available; not on an
    /// overlapping shift; and free of the rest, hours and days rules (not yet rostered
    /// for this requirement).
    pub skilled: u32,
    pub in_reach: u32,
    pub available: u32,
    pub not_overlapping: u32,
    pub rested: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Per slot: the member, or `NONE`.
    pub assign: Vec<u32>,
    pub shortfall: Vec<Shortfall>,
    pub iterations: u64,
    pub improvements: u64,
}

impl Solution {
    pub fn filled(&self) -> usize {
        self.assign.iter().filter(|&&m| m != NONE).count()
    }
}

/// Builds and improves a roster.
pub fn solve(inst: &Instance, reach: &Reach, budget: Budget) -> Solution {
    let mut book = Book::new(inst, None);
    let order = by_scarcity(inst, reach, (0..inst.slots() as u32).collect());
    let gs = GroupSizes::of(inst);
    fill(&mut book, reach, &gs, &order);
    repair(&mut book, reach, &gs, &order);
    let movable: Vec<u32> = (0..inst.slots() as u32).collect();
    let (iterations, improvements) = search(&mut book, reach, &gs, &movable, budget);
    repair(&mut book, reach, &gs, &order);
    finish(book, reach, iterations, improvements)
}

/// Repairs a published roster after changes (members unavailable, requirements changed):
/// keeps every assignment still allowed, and refills the rest of the slots of shifts that
/// start at or after `from`, moving as few people as it can (each change costs
/// `Weights::change_m`). Slots of earlier shifts are kept as they were.
pub fn reroster(inst: &Instance, reach: &Reach, published: &[u32], from: Ts, budget: Budget) -> Solution {
    let mut book = Book::new(inst, Some(published));
    let open = |slot: u32| inst.shifts[inst.req_of(slot).shift as usize].start >= from;
    // Frozen slots first, as they were; then the open ones that still stand.
    for pass in [false, true] {
        for slot in 0..inst.slots() as u32 {
            let m = published.get(slot as usize).copied().unwrap_or(NONE);
            if m == NONE || m as usize >= inst.members.len() || open(slot) != pass {
                continue;
            }
            let r = inst.req_of(slot);
            if !pass
                || (r.skills & !inst.members[m as usize].skills == 0
                    && inst.in_reach(m, r.site)
                    && book.blocked(m, r.shift, NONE).is_none())
            {
                book.put(slot, m);
            }
        }
    }
    let empty = (0..inst.slots() as u32).filter(|&s| open(s) && book.assign[s as usize] == NONE).collect();
    let order = by_scarcity(inst, reach, empty);
    let gs = GroupSizes::of(inst);
    fill(&mut book, reach, &gs, &order);
    repair(&mut book, reach, &gs, &order);
    let movable: Vec<u32> = (0..inst.slots() as u32).filter(|&s| open(s)).collect();
    let (iterations, improvements) = search(&mut book, reach, &gs, &movable, budget);
    finish(book, reach, iterations, improvements)
}

/// Slots whose assignee differs between two rosters.
pub fn changes(a: &[u32], b: &[u32]) -> usize {
    (0..a.len().max(b.len()))
        .filter(|&i| a.get(i).copied().unwrap_or(NONE) != b.get(i).copied().unwrap_or(NONE))
        .count()
}

/// The baseline: slots in requirement order, each to the nearest member allowed.
pub fn greedy_nearest(inst: &Instance, reach: &Reach) -> Vec<u32> {
    let mut book = Book::new(inst, None);
    for slot in 0..inst.slots() as u32 {
        let r = inst.req_of(slot);
        let found = reach.by_site[r.site as usize].iter().find(|&&(m, _)| {
            r.skills & !inst.members[m as usize].skills == 0 && book.blocked(m, r.shift, NONE).is_none()
        });
        if let Some(&(m, _)) = found {
            book.put(slot, m);
        }
    }
    book.assign
}

/// A lower bound on total travel: per site and shift with `n` slots, the `n` nearest
/// distinct members in reach, available then and holding the skills of at least one of
/// its roles (a member fills at most one slot of a shift; every other rule is relaxed).
/// Returns (bound in metres, slots it covers).
pub fn travel_bound(inst: &Instance, reach: &Reach) -> (f64, usize) {
    let mut groups: std::collections::BTreeMap<(u32, u32), (u32, Vec<u64>)> = std::collections::BTreeMap::new();
    for r in &inst.reqs {
        let g = groups.entry((r.site, r.shift)).or_default();
        g.0 += r.headcount;
        g.1.push(r.skills);
    }
    let (mut total, mut covered) = (0.0, 0usize);
    for ((site, shift), (n, masks)) in groups {
        let mut taken = 0;
        for &(m, t) in &reach.by_site[site as usize] {
            if taken == n {
                break;
            }
            let have = inst.members[m as usize].skills;
            if masks.iter().any(|&k| k & !have == 0) && !inst.unavailable(m, shift) {
                total += t as f64;
                taken += 1;
            }
        }
        covered += taken as usize;
    }
    (total, covered)
}

/// Per (site, shift): its slots in all, bounding the teammate bonus when pruning.
struct GroupSizes(std::collections::HashMap<(u32, u32), u32, foldhash::fast::FixedState>);

impl GroupSizes {
    fn of(inst: &Instance) -> GroupSizes {
        let mut map = std::collections::HashMap::default();
        for r in &inst.reqs {
            *map.entry((r.site, r.shift)).or_insert(0) += r.headcount;
        }
        GroupSizes(map)
    }
    fn bonus(&self, inst: &Instance, site: u32, shift: u32) -> f64 {
        inst.weights.own_community_m.max(0.0) + self.team_bonus(inst, site, shift)
    }
    /// The most a teammate bonus can be there.
    fn team_bonus(&self, inst: &Instance, site: u32, shift: u32) -> f64 {
        let n = self.0.get(&(site, shift)).copied().unwrap_or(0) as f64;
        inst.weights.team_pair_m.max(0.0) * n
    }
}

/// The given slots, those of the scarcest requirements first (fewest members with the
/// skills in reach per slot), then by shift start, then in order.
fn by_scarcity(inst: &Instance, reach: &Reach, mut order: Vec<u32>) -> Vec<u32> {
    let mut supply = vec![f64::NAN; inst.reqs.len()];
    for &slot in &order {
        let ri = inst.slot_req[slot as usize] as usize;
        if supply[ri].is_nan() {
            let r = &inst.reqs[ri];
            let n = reach.by_site[r.site as usize]
                .iter()
                .filter(|&&(m, _)| r.skills & !inst.members[m as usize].skills == 0)
                .count();
            supply[ri] = n as f64 / r.headcount.max(1) as f64;
        }
    }
    order.sort_by(|&a, &b| {
        let (ra, rb) = (inst.slot_req[a as usize] as usize, inst.slot_req[b as usize] as usize);
        supply[ra]
            .total_cmp(&supply[rb])
            .then(inst.shifts[inst.reqs[ra].shift as usize].start.cmp(&inst.shifts[inst.reqs[rb].shift as usize].start))
            .then(a.cmp(&b))
    });
    order
}

/// The cheapest member allowed to take `slot` now, other than `except`.
fn best_for(book: &Book<'_>, reach: &Reach, gs: &GroupSizes, slot: u32, except: u32) -> Option<(u32, f64)> {
    best_within(book, reach, gs, slot, except, usize::MAX)
}

/// `best_for` among the site's `within` nearest members in reach.
fn best_within(
    book: &Book<'_>,
    reach: &Reach,
    gs: &GroupSizes,
    slot: u32,
    except: u32,
    within: usize,
) -> Option<(u32, f64)> {
    let inst = book.inst;
    let r = inst.req_of(slot);
    let bonus = gs.bonus(inst, r.site, r.shift);
    let team = gs.team_bonus(inst, r.site, r.shift);
    let mut best: Option<(u32, f64)> = None;
    for &(m, t) in reach.by_site[r.site as usize].iter().take(within) {
        if best.is_some_and(|(_, c)| t as f64 - bonus > c) {
            break;
        }
        if m == except || r.skills & !inst.members[m as usize].skills != 0 {
            continue;
        }
        // The cost first, the teammates only when they could make it the cheapest, the
        // rules only for someone cheaper than the best.
        let alone = book.add_cost_alone(m, slot, t as f64);
        if best.is_some_and(|(_, b)| alone - team >= b) {
            continue;
        }
        let c = alone - book.team_bonus(m, slot);
        if best.is_none_or(|(_, b)| c < b) && book.blocked(m, r.shift, NONE).is_none() {
            best = Some((m, c));
        }
    }
    best
}

fn fill(book: &mut Book<'_>, reach: &Reach, gs: &GroupSizes, order: &[u32]) {
    for &slot in order {
        if book.assign[slot as usize] == NONE
            && let Some((m, _)) = best_for(book, reach, gs, slot, NONE)
        {
            book.put(slot, m);
        }
    }
}

/// For each empty slot: a member in reach with the skills who is kept out only by a slot
/// they hold takes it, if someone else among the `REPAIR_NEAR` nearest of that slot's site
/// can take theirs (at most `REPAIR_TRIES` such exchanges are tried per slot, among its
/// `REPAIR_NEAR` nearest candidates).
fn repair(book: &mut Book<'_>, reach: &Reach, gs: &GroupSizes, order: &[u32]) {
    let inst = book.inst;
    for &slot in order {
        if book.assign[slot as usize] != NONE {
            continue;
        }
        let r = inst.req_of(slot).clone();
        let mut tries = 0;
        'candidates: for &(m, _) in reach.by_site[r.site as usize].iter().take(REPAIR_NEAR) {
            if tries >= REPAIR_TRIES {
                break;
            }
            if r.skills & !inst.members[m as usize].skills != 0 || inst.unavailable(m, r.shift) {
                continue;
            }
            for other in book.held[m as usize].clone() {
                if book.blocked(m, r.shift, other).is_some() {
                    continue;
                }
                tries += 1;
                // Would anyone else take `other` once `m` leaves it (and holds `slot`)?
                book.take(other);
                book.put(slot, m);
                match best_within(book, reach, gs, other, m, REPAIR_NEAR) {
                    Some((x, _)) => {
                        book.put(other, x);
                        break 'candidates;
                    }
                    None => {
                        book.take(slot);
                        book.put(other, m);
                    }
                }
            }
        }
    }
}

const REPAIR_TRIES: u32 = 8;
const REPAIR_NEAR: usize = 400;

fn travel(inst: &Instance, m: u32, site: u32) -> f64 {
    inst.travel(m, site)
}

/// First-improvement local search over `movable` slots.
fn search(book: &mut Book<'_>, reach: &Reach, gs: &GroupSizes, movable: &[u32], budget: Budget) -> (u64, u64) {
    const TRIES: usize = 12;
    const NEAR: usize = 160;
    let inst = book.inst;
    if movable.is_empty() {
        return (0, 0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(budget.seed);
    let mut improvements = 0;
    for _ in 0..budget.iterations {
        let slot = movable[rng.gen_range(0..movable.len())];
        let r = inst.req_of(slot).clone();
        let cur = book.assign[slot as usize];
        if cur == NONE {
            if let Some((m, _)) = best_for(book, reach, gs, slot, NONE) {
                book.put(slot, m);
                improvements += 1;
            }
            continue;
        }
        let list = &reach.by_site[r.site as usize];
        let near = list.len().min(NEAR);
        for _ in 0..TRIES.min(near) {
            let (m, t) = list[rng.gen_range(0..near)];
            if m == cur || r.skills & !inst.members[m as usize].skills != 0 {
                continue;
            }
            let improved = match book.slot_in(m, r.shift) {
                Some(other) => try_swap(book, slot, other),
                None => try_replace(book, slot, m, t as f64),
            };
            if improved {
                improvements += 1;
                break;
            }
        }
    }
    (budget.iterations, improvements)
}

/// `m` (free in the slot's shift) takes `slot` from its member, if that lowers the objective.
fn try_replace(book: &mut Book<'_>, slot: u32, m: u32, t: f64) -> bool {
    let inst = book.inst;
    let r = inst.req_of(slot);
    if book.blocked(m, r.shift, NONE).is_some() {
        return false;
    }
    let cur = book.assign[slot as usize];
    let before = book.held_cost(cur, slot, travel(inst, cur, r.site));
    book.take(slot);
    let after = book.add_cost(m, slot, t);
    if after < before - 1e-6 {
        book.put(slot, m);
        true
    } else {
        book.put(slot, cur);
        false
    }
}

/// The members of two slots of the same shift change places, if both may and the
/// objective falls.
fn try_swap(book: &mut Book<'_>, a: u32, b: u32) -> bool {
    let inst = book.inst;
    let (ra, rb) = (inst.req_of(a), inst.req_of(b));
    if ra.site == rb.site {
        return false;
    }
    let (ma, mb) = (book.assign[a as usize], book.assign[b as usize]);
    let ok =
        |m: u32, r: &super::instance::Req| r.skills & !inst.members[m as usize].skills == 0 && inst.in_reach(m, r.site);
    if !ok(ma, rb) || !ok(mb, ra) {
        return false;
    }
    let before = book.held_cost(ma, a, travel(inst, ma, ra.site)) + book.held_cost(mb, b, travel(inst, mb, rb.site));
    book.take(a);
    book.take(b);
    book.put(a, mb);
    book.put(b, ma);
    let after = book.held_cost(mb, a, travel(inst, mb, ra.site)) + book.held_cost(ma, b, travel(inst, ma, rb.site));
    if after < before - 1e-6 {
        true
    } else {
        book.take(a);
        book.take(b);
        book.put(a, ma);
        book.put(b, mb);
        false
    }
}

fn finish(book: Book<'_>, reach: &Reach, iterations: u64, improvements: u64) -> Solution {
    let shortfall = shortfall(&book, reach);
    Solution { assign: book.assign, shortfall, iterations, improvements }
}

/// Per requirement with empty slots: how many, and the funnel that explains them.
fn shortfall(book: &Book<'_>, reach: &Reach) -> Vec<Shortfall> {
    let inst = book.inst;
    let mut out = Vec::new();
    for (ri, r) in inst.reqs.iter().enumerate() {
        let slots = inst.first_slot[ri]..inst.first_slot[ri + 1];
        let missing = slots.clone().filter(|&s| book.assign[s as usize] == NONE).count() as u32;
        if missing == 0 {
            continue;
        }
        let holders: Vec<u32> = slots.map(|s| book.assign[s as usize]).filter(|&m| m != NONE).collect();
        let (mut in_reach, mut available, mut not_overlapping, mut rested) = (0, 0, 0, 0);
        // Those kept out by rest, hours or days in a row, counted in the same pass.
        let mut counts = [0u32; 3];
        let skilled = inst.members.iter().filter(|m| r.skills & !m.skills == 0).count() as u32;
        // The site's reach list holds exactly the members in reach.
        for &(m, _) in &reach.by_site[r.site as usize] {
            if r.skills & !inst.members[m as usize].skills != 0 {
                continue;
            }
            in_reach += 1;
            match book.blocked(m, r.shift, NONE) {
                Some(Rule::Availability) => {}
                Some(Rule::Overlap) => available += 1,
                Some(rule) => {
                    available += 1;
                    not_overlapping += 1;
                    match rule {
                        Rule::Rest => counts[0] += 1,
                        Rule::Hours => counts[1] += 1,
                        Rule::ConsecutiveDays => counts[2] += 1,
                        _ => {}
                    }
                }
                None => {
                    available += 1;
                    not_overlapping += 1;
                    rested += u32::from(!holders.contains(&m));
                }
            }
        }
        let binding = if skilled == 0 {
            Rule::Skill
        } else if in_reach == 0 {
            Rule::Distance
        } else if available == 0 {
            Rule::Availability
        } else if not_overlapping == 0 {
            Rule::Overlap
        } else {
            // Those left are kept out by rest, hours or days in a row: name the commonest.
            let i = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
            [Rule::Rest, Rule::Hours, Rule::ConsecutiveDays][i]
        };
        out.push(Shortfall { req: ri as u32, missing, binding, skilled, in_reach, available, not_overlapping, rested });
    }
    out
}
