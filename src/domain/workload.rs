//! What a member has carried: difficulty-weighted load (fairness), easy tasks per day (the
//! cap against 秒光), and on-duty time (fatigue). All of it follows from events, so it
//! survives a restart and replays the same.

use serde::{Deserialize, Serialize};

use super::response::Rules;
use super::time::Ts;

const HOUR_MS: f64 = 3_600_000.0;
/// History kept for the daily cap and the fatigue window, whatever the configuration
/// (both windows are read with the rules at the time of asking, not of applying).
const EASY_HISTORY_MS: i64 = 2 * 24 * 3_600_000;
const DUTY_HISTORY_MS: i64 = 7 * 24 * 3_600_000;

/// How a task counts for fairness, fixed when the incident is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskClass {
    Easy,
    Normal,
    Hard,
}

impl TaskClass {
    pub fn of(difficulty: u8, rules: &Rules) -> TaskClass {
        if difficulty <= rules.fairness.easy_max_difficulty {
            TaskClass::Easy
        } else if difficulty >= rules.fairness.hard_min_difficulty {
            TaskClass::Hard
        } else {
            TaskClass::Normal
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Sum of the difficulty of every task accepted.
    pub load: f64,
    /// The part of `load` from hard tasks.
    pub hard_load: f64,
    /// When easy tasks were accepted (the last two days).
    pub easy_accepts: Vec<Ts>,
    /// On duty since (an accepted task not yet closed, or a reported mobilization).
    pub duty_since: Option<Ts>,
    /// Finished duty intervals still inside the fatigue window.
    pub duty_log: Vec<(Ts, Ts)>,
    pub last_duty_end: Option<Ts>,
}

impl Workload {
    pub fn accept(&mut self, difficulty: u8, class: TaskClass, at: Ts) {
        let d = difficulty as f64;
        self.load += d;
        match class {
            TaskClass::Hard => self.hard_load += d,
            TaskClass::Easy => {
                self.easy_accepts.retain(|t| at - t < EASY_HISTORY_MS);
                self.easy_accepts.push(at);
            }
            TaskClass::Normal => {}
        }
    }

    /// Load from a task done outside dispatch (a service order worked): it counts for
    /// fairness, not for the daily cap of easy calls.
    pub fn credit(&mut self, difficulty: u8, class: TaskClass) {
        self.load += difficulty as f64;
        if class == TaskClass::Hard {
            self.hard_load += difficulty as f64;
        }
    }

    pub fn start_duty(&mut self, at: Ts) {
        self.duty_since.get_or_insert(at);
    }

    pub fn end_duty(&mut self, at: Ts) {
        if let Some(since) = self.duty_since.take() {
            self.duty_log.retain(|&(_, end)| at - end < DUTY_HISTORY_MS);
            self.duty_log.push((since, at.max(since)));
            self.last_duty_end = Some(at);
        }
    }

    /// Milliseconds on duty within the fatigue window ending at `now`.
    pub fn worked_ms(&self, now: Ts, rules: &Rules) -> i64 {
        let from = now - (rules.fatigue.window_h * HOUR_MS) as i64;
        let overlap = |s: Ts, e: Ts| (e.min(now) - s.max(from)).max(0);
        self.duty_log.iter().map(|&(s, e)| overlap(s, e)).sum::<i64>() + self.duty_since.map_or(0, |s| overlap(s, now))
    }

    /// At the cap and not yet rested: offered nothing.
    pub fn fatigued(&self, now: Ts, rules: &Rules) -> bool {
        let f = &rules.fatigue;
        if (self.worked_ms(now, rules) as f64) < f.max_duty_h * HOUR_MS {
            return false;
        }
        let rested = self.duty_since.is_none()
            && self.last_duty_end.is_none_or(|end| (now - end) as f64 >= f.min_rest_h * HOUR_MS);
        !rested
    }

    /// Has the member taken as many easy tasks today as the cap allows?
    pub fn easy_capped(&self, now: Ts, rules: &Rules) -> bool {
        let today = rules.day_of(now);
        let n = self.easy_accepts.iter().filter(|&&t| rules.day_of(t) == today).count();
        n as u32 >= rules.fairness.easy_cap_per_day
    }

    /// Ranking adjustment in metres: carry more load, rank later; for a hard task, a
    /// member whose load was all easy ranks earlier. A member with no load at all counts as
    /// one whose load was all easy: otherwise the bonus would pass over the idle and send
    /// hard work to a neighbour who has done one easy task (docs/PERFORMANCE.md, Fairness).
    pub fn score_m(&self, difficulty: u8, rules: &Rules) -> f64 {
        let f = &rules.fairness;
        let mut m = f.load_m * self.load;
        if difficulty >= f.hard_min_difficulty {
            let easy_share = if self.load > 0.0 { 1.0 - self.hard_load / self.load } else { 1.0 };
            m -= f.hard_first_m * easy_share;
        }
        m
    }
}

/// The Gini coefficient of non-negative values: 0 when all are equal, towards 1 when one
/// carries everything.
pub fn gini(values: &[f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n < 2 || total <= 0.0 {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let weighted: f64 = v.iter().enumerate().map(|(i, x)| (i as f64 + 1.0) * x).sum();
    (2.0 * weighted) / (n as f64 * total) - (n as f64 + 1.0) / n as f64
}

/// The distribution of difficulty-weighted load over a set of members.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LoadStats {
    pub members: usize,
    pub total: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub gini: f64,
    /// Members who have carried no task at all.
    pub idle: usize,
}

impl LoadStats {
    pub fn of(values: &[f64]) -> LoadStats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let q = |p: f64| if n == 0 { 0.0 } else { v[((n - 1) as f64 * p).round() as usize] };
        let total: f64 = v.iter().sum();
        LoadStats {
            members: n,
            total,
            mean: if n == 0 { 0.0 } else { total / n as f64 },
            p50: q(0.5),
            p90: q(0.9),
            max: v.last().copied().unwrap_or(0.0),
            gini: (gini(&v) * 1000.0).round() / 1000.0,
            idle: v.iter().filter(|x| **x == 0.0).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn gini_is_zero_for_equal_and_high_for_concentrated_load() {
        assert_eq!(gini(&[3.0, 3.0, 3.0]), 0.0);
        assert_eq!(gini(&[]), 0.0);
        let g = gini(&[0.0, 0.0, 0.0, 10.0]);
        assert!((g - 0.75).abs() < 1e-9, "{g}");
        assert!(gini(&[1.0, 2.0, 3.0]) > 0.0);
    }

    #[test]
    fn easy_tasks_are_capped_per_day_and_the_cap_resets_the_next_day() {
        let rules = Rules::for_tests(); // cap 3, easy <= 2, day starts at UTC+8
        let mut w = Workload::default();
        let t0 = 1_700_000_000_000;
        for i in 0..3 {
            assert!(!w.easy_capped(t0, &rules));
            w.accept(1, TaskClass::of(1, &rules), t0 + i);
        }
        assert!(w.easy_capped(t0 + 10, &rules));
        w.accept(5, TaskClass::of(5, &rules), t0 + 20); // a hard one does not count
        assert_eq!(w.easy_accepts.len(), 3);
        assert!(!w.easy_capped(t0 + 24 * H, &rules));
    }

    #[test]
    fn fatigue_caps_duty_in_the_window_until_rested() {
        let rules = Rules::for_tests(); // 12 h in 24 h, 8 h rest
        let mut w = Workload::default();
        let t0 = 1_700_000_000_000;
        w.start_duty(t0);
        assert!(!w.fatigued(t0 + 11 * H, &rules));
        assert!(w.fatigued(t0 + 12 * H, &rules), "12 h on duty");
        w.end_duty(t0 + 12 * H);
        assert!(w.fatigued(t0 + 15 * H, &rules), "only 3 h of rest");
        assert!(!w.fatigued(t0 + 20 * H, &rules), "8 h of rest");
        // two shorter stints add up within the window
        let mut w = Workload::default();
        w.start_duty(t0);
        w.end_duty(t0 + 7 * H);
        w.start_duty(t0 + 8 * H);
        assert!(w.fatigued(t0 + 13 * H, &rules));
        assert_eq!(w.worked_ms(t0 + 13 * H, &rules), 12 * H);
    }

    #[test]
    fn load_ranks_later_and_easy_only_members_rank_first_for_hard_tasks() {
        let mut rules = Rules::for_tests();
        rules.fairness.load_m = 50.0;
        rules.fairness.hard_first_m = 600.0;
        let mut easy_only = Workload::default();
        easy_only.accept(1, TaskClass::Easy, 0);
        easy_only.accept(1, TaskClass::Easy, 0);
        let mut hard_only = Workload::default();
        hard_only.accept(5, TaskClass::Hard, 0);
        assert_eq!(easy_only.score_m(1, &rules), 100.0);
        assert_eq!(easy_only.score_m(5, &rules), 100.0 - 600.0);
        assert_eq!(hard_only.score_m(5, &rules), 250.0);
        // No load counts as all easy (it used to score 0 here, behind `easy_only`): an idle
        // member gets the whole hard-first bonus, and nothing for an easy task.
        assert_eq!(Workload::default().score_m(5, &rules), -600.0);
        assert_eq!(Workload::default().score_m(1, &rules), 0.0);
    }

    #[test]
    fn an_idle_member_ranks_ahead_of_an_equally_near_one_with_one_easy_task_for_a_hard_task() {
        let mut rules = Rules::for_tests();
        rules.fairness.load_m = 50.0;
        rules.fairness.hard_first_m = 600.0;
        let idle = Workload::default();
        let mut one_easy = Workload::default();
        one_easy.accept(1, TaskClass::Easy, 0);
        let hard = rules.fairness.hard_min_difficulty;
        // equally near: the score is distance + score_m, so lower score_m ranks first
        assert!(
            idle.score_m(hard, &rules) < one_easy.score_m(hard, &rules),
            "hard task: idle {} vs one easy task {}",
            idle.score_m(hard, &rules),
            one_easy.score_m(hard, &rules)
        );
        assert!(idle.score_m(1, &rules) < one_easy.score_m(1, &rules), "easy task: by load alone");
    }
}
