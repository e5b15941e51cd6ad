//! Campaign commands through the dispatcher: the lifecycle, replay and snapshot, scope,
//! and refusals that change nothing.

use crate::demo::{SKILLS, demo_city};
use crate::domain::command::{Command, Reply};
use crate::domain::errors::Code;
use crate::domain::response::{Rules, Skill};
use crate::domain::snapshot;
use crate::domain::testkit::{T0, World, as_member, city_command, district_command, durable, kinds, replay, staff};

use super::model::*;
use crate::domain::state::Deadline;

const HOUR: i64 = 3_600_000;

fn world() -> World {
    let mut rules = Rules::for_tests();
    rules.skills = SKILLS.iter().map(|(id, name)| Skill { id: id.to_string(), name: name.to_string() }).collect();
    World::with_city_and_rules(demo_city(600, 7), rules)
}

fn cmd(action: CampaignCommand) -> Command {
    Command::Campaign { action: Box::new(action) }
}

fn rules() -> CampaignRules {
    CampaignRules { max_hours_in_24h: 12.0, min_rest_h: 6.0, max_consecutive_days: 3, max_distance_m: 8_000.0 }
}

/// A campaign of district d01 (or the city) with 3 sites in its first communities, 4
/// shared shifts of 6 h, and 3 + 1 people per site and shift.
fn campaign(w: &mut World, district: Option<&str>) -> String {
    let actor = district.map_or_else(city_command, district_command);
    let out = w.ok(
        &actor,
        cmd(CampaignCommand::Create {
            name: "核酸检测".into(),
            district_id: district.map(Into::into),
            start: T0,
            end: T0 + 24 * HOUR,
            rules: rules(),
        }),
    );
    let Some(Reply::Campaign(id)) = out.reply else { panic!("{:?}", out.reply) };
    let city = w.state.city.city().unwrap().clone();
    let grids: Vec<String> = city
        .communities
        .iter()
        .filter(|c| city.streets.iter().any(|s| s.id == c.street_id && s.district_id == "d01"))
        .take(3)
        .map(|c| c.grids[0].id.clone())
        .collect();
    for (k, g) in grids.iter().enumerate() {
        let site =
            SiteSpec { id: format!("s{k}"), name: format!("site {k}"), location: None, grid_id: Some(g.clone()) };
        w.ok(&actor, cmd(CampaignCommand::SetSite { campaign_id: id.clone(), site }));
    }
    for k in 0..4 {
        let shift =
            Shift { id: format!("h{k}"), start: T0 + k * 6 * HOUR, end: T0 + (k + 1) * 6 * HOUR, site_id: None };
        w.ok(&actor, cmd(CampaignCommand::SetShift { campaign_id: id.clone(), shift }));
    }
    for s in 0..grids.len() {
        for k in 0..4 {
            for (role, n) in [("queue_order", 3), ("registration", 1)] {
                let requirement = Requirement {
                    site_id: format!("s{s}"),
                    shift_id: format!("h{k}"),
                    role: role.into(),
                    headcount: n,
                    skills: vec![],
                };
                w.ok(&actor, cmd(CampaignCommand::SetRequirement { campaign_id: id.clone(), requirement }));
            }
        }
    }
    id
}

fn members_in(c: &Campaign, shift: &str) -> Vec<String> {
    let p = c.roster.as_ref().unwrap();
    c.requirements
        .iter()
        .zip(&p.slots)
        .filter(|(r, _)| r.shift_id == shift)
        .flat_map(|(_, ms)| ms.iter().map(|&m| p.members[m as usize].clone()))
        .collect()
}

#[test]
fn a_campaign_is_rostered_a_no_show_replaced_and_replay_and_snapshot_agree() {
    let mut w = world();
    let id = campaign(&mut w, Some("d01"));
    let out =
        w.ok(&city_command(), cmd(CampaignCommand::Roster { campaign_id: id.clone(), seed: 3, iterations: 2_000 }));
    assert_eq!(kinds(&out), ["campaign"]);
    let c = w.state.campaigns[&id].clone();
    let p = c.roster.clone().unwrap();
    assert_eq!(p.version, 1);
    let wanted: u32 = c.requirements.iter().map(|r| r.headcount).sum();
    let filled: usize = p.slots.iter().map(Vec::len).sum();
    let short: u32 = p.shortfall.iter().map(|s| s.1).sum();
    assert_eq!(filled as u32 + short, wanted);
    assert!(filled > 0);
    // Nobody twice in one shift.
    for k in 0..4 {
        let mut ms = members_in(&c, &format!("h{k}"));
        let n = ms.len();
        ms.sort();
        ms.dedup();
        assert_eq!(ms.len(), n);
    }
    // Two members of the first shift do not come.
    let gone: Vec<String> = members_in(&c, "h0").into_iter().take(2).collect();
    w.at(60);
    let out = w.ok(
        &district_command("d01"),
        cmd(CampaignCommand::NoShow { campaign_id: id.clone(), shift_id: "h0".into(), members: gone.clone() }),
    );
    assert_eq!(kinds(&out), ["campaign", "campaign"]);
    let c2 = w.state.campaigns[&id].clone();
    let p2 = c2.roster.as_ref().unwrap();
    assert_eq!(p2.version, 2);
    assert!(gone.iter().all(|g| !members_in(&c2, "h0").contains(g)));
    assert!(p2.changed as usize <= 2 * gone.len(), "{} changes for {} no-shows", p2.changed, gone.len());
    // Replay gives the same state; a snapshot keeps the campaigns.
    let (replayed, _) = replay(&w.log);
    assert_eq!(durable(&replayed), durable(&w.state));
    let back = snapshot::decode(&snapshot::encode(&w.state)).unwrap();
    assert_eq!(back.campaigns, w.state.campaigns);
    assert_eq!(back.campaigns_created, 1);
}

#[test]
fn campaigns_are_in_scope_of_city_command_and_their_districts_command_only() {
    let mut w = world();
    let id = campaign(&mut w, Some("d01"));
    let close = || cmd(CampaignCommand::Close { campaign_id: "cmp-1".into() });
    assert_eq!(w.refuse(&district_command("d02"), close()).code, Code::UnknownCampaign);
    assert_eq!(w.refuse(&staff("c001"), close()).code, Code::RoleNotAllowed);
    let create = CampaignCommand::Create {
        name: "x".into(),
        district_id: Some("d02".into()),
        start: T0,
        end: T0 + HOUR,
        rules: rules(),
    };
    assert_eq!(w.refuse(&district_command("d01"), cmd(create.clone())).code, Code::OutsideScope);
    let CampaignCommand::Create { name, start, end, rules, .. } = create else { unreachable!() };
    let city_wide = CampaignCommand::Create { name, district_id: None, start, end, rules };
    assert_eq!(w.refuse(&district_command("d01"), cmd(city_wide)).code, Code::OutsideScope);
    // A member marks their own time, not another's; only a member of the campaign's
    // people may (d01's): to one of another district the campaign is unknown.
    let c = w.state.campaigns.get(&id).unwrap().clone();
    let n = w.state.city.members().len() as u32;
    let of = |yes: bool| {
        let i = (0..n).find(|&i| super::handle::eligible(&w.state, i, &c) == yes).unwrap();
        w.state.city.members()[i as usize].id.clone()
    };
    let (m, foreign) = (of(true), of(false));
    let other = w.state.city.members().iter().map(|x| x.id.clone()).find(|x| *x != m).unwrap();
    let mark = |who: &str| {
        cmd(CampaignCommand::Unavailable { campaign_id: id.clone(), member_id: who.into(), start: T0, end: T0 + HOUR })
    };
    w.ok(&as_member(&m), mark(&m));
    assert_eq!(w.refuse(&as_member(&m), mark(&other)).code, Code::OutsideScope);
    assert_eq!(w.refuse(&as_member(&foreign), mark(&foreign)).code, Code::UnknownCampaign);
    assert_eq!(w.refuse(&district_command("d01"), mark(&foreign)).code, Code::UnknownMember);
    w.ok(&district_command("d01"), close());
    assert_eq!(w.refuse(&city_command(), close()).code, Code::CampaignClosed);
}

#[test]
fn bad_campaign_input_is_refused_with_its_code() {
    let mut w = world();
    let id = campaign(&mut w, None);
    let c = city_command();
    let bad_rules = CampaignRules { max_hours_in_24h: 30.0, ..rules() };
    let create =
        |rules| cmd(CampaignCommand::Create { name: "x".into(), district_id: None, start: T0, end: T0 + HOUR, rules });
    assert_eq!(w.refuse(&c, create(bad_rules)).code, Code::InvalidCampaign);
    let backwards =
        cmd(CampaignCommand::Create { name: "x".into(), district_id: None, start: T0, end: T0, rules: rules() });
    assert_eq!(w.refuse(&c, backwards).code, Code::InvalidCampaign);
    let shift = |start, end| {
        cmd(CampaignCommand::SetShift {
            campaign_id: id.clone(),
            shift: Shift { id: "late".into(), start, end, site_id: None },
        })
    };
    assert_eq!(w.refuse(&c, shift(T0 + 2 * HOUR, T0 + HOUR)).code, Code::InvalidShift);
    assert_eq!(w.refuse(&c, shift(T0 + 20 * HOUR, T0 + 30 * HOUR)).code, Code::InvalidShift);
    let req = |role: &str, site: &str, skills: Vec<String>| {
        cmd(CampaignCommand::SetRequirement {
            campaign_id: id.clone(),
            requirement: Requirement {
                site_id: site.into(),
                shift_id: "h0".into(),
                role: role.into(),
                headcount: 2,
                skills,
            },
        })
    };
    assert_eq!(w.refuse(&c, req("juggler", "s0", vec![])).code, Code::UnknownRole);
    assert_eq!(w.refuse(&c, req("logistics", "nowhere", vec![])).code, Code::UnknownSite);
    assert_eq!(w.refuse(&c, req("logistics", "s0", vec!["flying".into()])).code, Code::UnknownSkill);
    let site = |location, grid_id| {
        cmd(CampaignCommand::SetSite {
            campaign_id: id.clone(),
            site: SiteSpec { id: "z".into(), name: "z".into(), location, grid_id },
        })
    };
    assert_eq!(w.refuse(&c, site(None, None)).code, Code::GridOrLocation);
    assert_eq!(w.refuse(&c, site(None, Some("no-such-grid".into()))).code, Code::UnknownGrid);
    let roster = cmd(CampaignCommand::Roster { campaign_id: id.clone(), seed: 1, iterations: u64::MAX });
    assert_eq!(w.refuse(&c, roster).code, Code::InvalidCampaign);
    let no_show =
        cmd(CampaignCommand::NoShow { campaign_id: id.clone(), shift_id: "h0".into(), members: vec!["m00001".into()] });
    assert_eq!(w.refuse(&c, no_show).code, Code::InvalidShift, "no roster yet");
    // The wire form: tagged by op inside the command.
    let json = serde_json::to_value(cmd(CampaignCommand::Close { campaign_id: id })).unwrap();
    assert_eq!(json["type"], "campaign");
    assert_eq!(json["action"]["op"], "close");
}

#[test]
fn a_roster_computed_apart_is_published_only_at_its_basis_and_an_import_is_all_or_nothing() {
    let mut w = world();
    let id = campaign(&mut w, Some("d01"));
    let budget = super::Budget { iterations: 500, seed: 1 };
    let prepared = super::plan::prepare(&w.state, &w.rules, &w.state.campaigns[&id], T0);
    let basis = prepared.basis;
    let roster = Box::new(prepared.run(budget));
    // The campaign changes meanwhile: the roster is stale.
    let requirement = Requirement {
        site_id: "s0".into(),
        shift_id: "h0".into(),
        role: "logistics".into(),
        headcount: 1,
        skills: vec![],
    };
    w.ok(&city_command(), cmd(CampaignCommand::SetRequirement { campaign_id: id.clone(), requirement }));
    let stale = CampaignCommand::Publish { campaign_id: id.clone(), basis, roster: roster.clone() };
    assert_eq!(w.refuse(&city_command(), cmd(stale)).code, Code::RosterStale);
    // Computed again at the present revision, it is published, once.
    let prepared = super::plan::prepare(&w.state, &w.rules, &w.state.campaigns[&id], T0);
    let basis = prepared.basis;
    let roster = Box::new(prepared.run(budget));
    let publish = CampaignCommand::Publish { campaign_id: id.clone(), basis, roster: roster.clone() };
    w.ok(&city_command(), cmd(publish.clone()));
    assert_eq!(w.state.campaigns[&id].roster.as_ref(), Some(&*roster));
    assert_eq!(w.refuse(&city_command(), cmd(publish)).code, Code::RosterStale);
    // Every shift has its no-show deadline, and each member who got a shift heard it.
    let deadlines = w.state.deadlines.iter().filter(|(_, d)| matches!(d, Deadline::CampaignShift(..))).count();
    assert_eq!(deadlines, 4);
    let heard: std::collections::BTreeSet<&str> =
        w.frames.iter().filter(|f| f.kind == "campaign.shift").map(|f| f.stream.as_str()).collect();
    assert_eq!(heard.len(), roster.members.len());

    // An import with one bad requirement changes nothing, and names it.
    let sites = vec![SiteSpec { id: "n1".into(), name: "new".into(), location: None, grid_id: None }];
    let (_, errors) = super::handle::import(&w.state, &w.rules, &w.state.campaigns[&id], sites.clone(), vec![]);
    assert_eq!(errors.len(), 1);
    let bad = Requirement {
        site_id: "s0".into(),
        shift_id: "h9".into(),
        role: "logistics".into(),
        headcount: 1,
        skills: vec![],
    };
    let import = CampaignCommand::Import { campaign_id: id.clone(), sites: vec![], requirements: vec![bad] };
    assert_eq!(w.refuse(&city_command(), cmd(import)).code, Code::UnknownShift);
}
