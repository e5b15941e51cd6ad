//! Campaigns (issue #19): a multi-day surge staffed as sites × shifts × roles, rostered by
//! an optimizer and repaired when people do not come.
//!
//! - `model`: the campaign, its sites, shifts, requirements, unavailability and published
//!   roster, with the checks of their input.
//! - `instance`: the rostering problem by compact index, and the H3 reach index.
//! - `book`: the solver's accounting and its hard-rule test; `roster`: construction, local
//!   search, the nearest-first baseline, the travel bound, the shortfall, re-rostering.
//! - `check`: the independent checker of a roster.
//! - `handle`: commands, events and `apply` for the dispatcher; `plan`: a roster's inputs
//!   read from the state (`prepare`) and solved apart from it (`run`), so that the solver
//!   can run outside the engine's writer.
//!
//! docs/ARCHITECTURE.md ("Campaigns") gives the objective, its weights and the bound.

pub mod book;
pub mod check;
pub mod frames;
pub mod handle;
pub mod instance;
pub mod model;
pub mod plan;
pub mod roster;
pub mod serve;
pub mod view;

pub use book::Rule;
pub use check::{Verdict, check};
pub use instance::{
    HardRules, Instance, NONE, PoolMember, Reach, Req, SitePlace, Span, Weights, metres, pool_from_city, skills_mask,
};
pub use model::{
    Attendance, Campaign, CampaignCommand, CampaignEvent, CampaignRules, Published, Requirement, Shift, Site, SiteSpec,
};
pub use roster::{Budget, Shortfall, Solution, changes, greedy_nearest, reroster, solve, travel_bound};

#[cfg(test)]
mod handle_tests;
#[cfg(test)]
mod tests;
