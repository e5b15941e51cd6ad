//! Scope: every "who may see or do what", in one place.
//!
//! Two questions, asked in this order by every handler, view, list, report, export and
//! the frame router:
//!
//! 1. **May this role ever do this?** `permits(actor, Action)`: a table of roles. No → 403
//!    (`role_not_allowed`), whatever the object.
//! 2. **Is this object in the caller's scope?** One predicate per kind of object below.
//!    No → the same 404 as for an object that does not exist, decided before any other
//!    check, so an answer never tells a foreign id from an unknown one. Lists, reports and
//!    views keep only the rows in scope.
//!
//! The places that make a scope, from the token's claims: city command (everything), a
//! district's command, a community's staff, a unit's admin, a member (themself). The
//! meanings, each written once (docs/PROTOCOL.md, "Scope", has the same table):
//!
//! - a **community** is in scope of its staff, its district's command and city command;
//! - a **member's record** (`member`): the member, their unit's admin, staff of their
//!   *residence* community, command of its district (the contract's rule);
//! - a **member's work** (`member_work`: reports, ratings): the record's scope, plus staff
//!   and command of the community (district) where the member's *team* serves;
//! - a **write to a member** (`manages_member`) checks where the member is *now*: their
//!   unit's admin, staff of their present residence, command of its district;
//! - a **unit** is in scope of its admin, of its members, of staff and command where one of
//!   its teams serves; a **team** likewise (its unit's admin, its members, where it serves);
//! - an **incident** and its offers: staff of its community, command of its district;
//! - a **mobilization**: command of a district it reports into (that district's part only:
//!   `mobilization_part`); closing it needs all of it (`closes_mobilization`);
//! - a **service order**: staff and command of its community, the members it fits and those
//!   who took it; a **claim** on it: the claimant, and whoever sees the order but members;
//! - a **stream**: each actor reads exactly one (`stream_of`), and the frames of an incident
//!   go to the streams of those who see it (`incident_streams`; a test checks the two agree);
//!   a unit's stream (its admin's) carries only what involves the unit: a whistle naming it
//!   (`unit.whistled`: the incident's place, level and category, not its offers) and a
//!   mobilization ordering its teams (`unit.mobilized`: its own teams and where they report);
//! - an **audit entry** (a decision in the log, `audit::place`): city command sees all; a
//!   district's command, those about a place in its district (its mode switch, a
//!   mobilization reporting into it, a whistle, rating, registration, exchange, transfer,
//!   invitation or revocation about one of its communities) and the city-wide switches
//!   (`audit_entry`);
//! - **inviting** someone to sign in (`invites_role`, then `invites`): command invites staff
//!   and unit admins (a district's, in its district), staff the members living in their
//!   community, a unit admin their unit's members; a **sign-in link** (`invitation`) is
//!   seen and revoked by whoever may invite its invitee; a **signed-in device**
//!   (`session`) by its person and whoever may invite them. Redeeming a link and
//!   refreshing a session need no role: the code or the refresh credential is the proof.
//!
//! - an outbound **webhook** endpoint (`webhook`): city command manages every one and may
//!   scope one to the city or to any district; a district's command manages (and
//!   registers) only endpoints scoped to its own district, which are sent only the events
//!   about that district (`webhooks::wants`).
//!
//! Tokens fail closed: a claim naming a place or person the city does not hold is refused
//! (`known`), never widened.

use super::access::{Invitation, Session};
use super::audit;
use super::command::Actor;
use super::errors::{Code, DomainError, err};
use super::event::stream;
use super::incident::Incident;
use super::mobilization::{MemberOrder, Mobilization};
use super::service_data::ServiceOrder;
use super::state::State;

/// What a caller asks to do, for the role table (`permits`). Reads of objects that every
/// role may ask for (a member's record, an order) are not here: scope alone decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace the city: `PUT /v1/city`, `POST /v1/city/geojson` (its dry run too: a
    /// report tells the whole city's geography, so it is city command's alone).
    ImportCity,
    /// `GET /v1/city/geojson`: the whole city with its roster, every district's included;
    /// city command only, since a district's command would see the other districts' people.
    ExportCity,
    RevokeTokens,
    /// Raise, read, escalate, resolve, cancel, whistle.
    Incidents,
    SwitchMode,
    Mobilize,
    ReadMobilizations,
    ReadBalance,
    ApplyTransfer,
    ReadFairness,
    RegisterMembers,
    ImportMembers,
    RegisterUnit,
    ReadRegistration,
    PostOrder,
    ReadOrders,
    ClaimOrder,
    AssignOrder,
    CancelOrder,
    StampOrder,
    Rate,
    Exchange,
    UnitReport,
    CommunityReport,
    /// Answer an offer or an order over the websocket, report position and duty.
    AnswerAsMember,
    /// Issue, list and revoke sign-in links (whom: `invites_role`, `invites`).
    Invite,
    /// Read the audit of decisions (`GET /v1/audit`; which entries: `audit_entry`).
    ReadAudit,
    /// Register, list, enable, disable, delete outbound webhooks and replay their dead
    /// letters (which endpoints: `webhook`).
    Webhooks,
    /// Create a campaign, set its sites, shifts and requirements, compute and publish its
    /// roster, mark no-shows, close it (which campaigns: `campaign`).
    ManageCampaigns,
    /// Mark a time one cannot serve in a campaign: a member for themself, command (of the
    /// campaign, `campaign`) for a member; either way only in a campaign whose people the
    /// member is among (`campaign::handle::eligible`: a city campaign, one of the district
    /// they live in or their team serves, or one whose roster names them); another
    /// campaign is unknown to the member, another member unknown to command.
    MarkUnavailable,
    /// Read campaigns: command (theirs, `campaign`), staff (their community's sites only,
    /// `campaign_site`). A member reads their own shifts (`GET /v1/campaigns/mine`).
    ReadCampaigns,
    /// A member's own shifts: read them, acknowledge, check in and out (which campaigns:
    /// those the member is rostered in, `campaign::serve::my_shift`).
    ServeCampaign,
    /// Web Push: read the server's key, subscribe a browser, list and remove one's own
    /// subscriptions (which ones: `push_subscription`).
    Push,
    /// Place a request, confirm and rate its service (residents: their own, `request`).
    PlaceRequest,
    /// Read requests: a resident their own, staff and command their communities'.
    ReadRequests,
    /// Turn a request into an order, merge it into one, or decline it (社区派单).
    DispatchRequest,
    /// Propose a service (创单): members.
    Propose,
    /// Read proposals: a member their own, staff and command their communities'.
    ReadProposals,
    /// Approve or decline a proposal.
    DecideProposal,
}

/// The role table: may this kind of actor ever take this action?
pub fn permits(actor: &Actor, action: Action) -> bool {
    use Action::*;
    let city = matches!(actor, Actor::Command { district: None } | Actor::System);
    let command = matches!(actor, Actor::Command { .. } | Actor::System);
    let staff = matches!(actor, Actor::Staff { .. });
    let unit = matches!(actor, Actor::UnitAdmin { .. });
    let member = matches!(actor, Actor::Member { .. });
    let resident = matches!(actor, Actor::Resident { .. });
    match action {
        ImportCity | ExportCity | RevokeTokens => city,
        Incidents | PostOrder | AssignOrder | CancelOrder | Rate | CommunityReport | ReadBalance => command || staff,
        SwitchMode | Mobilize | ReadMobilizations | ApplyTransfer | ReadAudit | Webhooks => command,
        ReadFairness | ReadRegistration => command || staff || unit,
        RegisterMembers => command || staff || unit,
        ImportMembers | RegisterUnit | UnitReport => command || unit,
        ReadOrders => command || staff || member,
        ClaimOrder | StampOrder | AnswerAsMember => member,
        Exchange => command || member,
        Invite => command || staff || unit,
        ManageCampaigns => command,
        MarkUnavailable => command || member,
        ReadCampaigns => command || staff,
        ServeCampaign => member,
        Push => member,
        PlaceRequest => resident,
        ReadRequests => command || staff || resident,
        DispatchRequest | DecideProposal => command || staff,
        Propose => member,
        ReadProposals => command || staff || member,
    }
}

/// A **campaign** (issue #19) is in scope of city command (all of them) and of the command
/// of its district (a district's campaigns); a city-wide campaign only of city command.
/// A member sees the campaigns they may serve in (`campaign_member`).
pub fn campaign(actor: &Actor, district_id: Option<&str>) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => district_id == Some(d.as_str()),
        _ => false,
    }
}

/// A campaign's **site** is in scope of the campaign's command (`campaign`) and of the
/// staff of the community the site lies in.
pub fn campaign_site(actor: &Actor, c: &super::campaign::Campaign, site: &super::campaign::Site) -> bool {
    match actor {
        Actor::Staff { community } => site.community_id.as_deref() == Some(community.as_str()),
        _ => campaign(actor, c.district_id.as_deref()),
    }
}

/// A campaign is **seen** by its command, and by staff of a community one of its sites
/// lies in (who see those sites only: `campaign_site`).
pub fn campaign_seen(actor: &Actor, c: &super::campaign::Campaign) -> bool {
    match actor {
        Actor::Staff { .. } => c.sites.iter().any(|s| campaign_site(actor, c, s)),
        _ => campaign(actor, c.district_id.as_deref()),
    }
}

/// `permits`, as the refusal every caller gets: 403 `city_command_only` for what only city
/// command does, else 403 `role_not_allowed`.
pub fn require(actor: &Actor, action: Action) -> Result<(), DomainError> {
    if permits(actor, action) {
        return Ok(());
    }
    let city_only = matches!(action, Action::ImportCity | Action::ExportCity | Action::RevokeTokens);
    if city_only && matches!(actor, Actor::Command { .. }) {
        return Err(err(Code::CityCommandOnly, "only city-wide command may do this"));
    }
    Err(err(Code::RoleNotAllowed, format!("{} is not for your role", action.describe())))
}

impl Action {
    /// What the refusal says the action is.
    pub fn describe(self) -> &'static str {
        use Action::*;
        match self {
            ImportCity => "importing the city",
            ExportCity => "exporting the city",
            ManageCampaigns => "managing campaigns",
            MarkUnavailable => "marking unavailability in a campaign",
            ReadCampaigns => "reading campaigns",
            ServeCampaign => "a member's own shifts",
            RevokeTokens => "revoking tokens",
            Incidents => "raising, reading and acting on incidents",
            SwitchMode => "switching modes",
            Mobilize => "mobilizing",
            ReadMobilizations => "reading mobilizations",
            ReadBalance => "the balance",
            ApplyTransfer => "applying a transfer",
            ReadFairness => "the fairness figures",
            RegisterMembers => "registering members",
            ImportMembers => "importing members",
            RegisterUnit => "registering a unit",
            ReadRegistration => "the registration figures",
            PostOrder => "posting service orders",
            ReadOrders => "service orders",
            ClaimOrder => "claiming an order",
            AssignOrder => "assigning an order",
            CancelOrder => "cancelling an order",
            StampOrder => "checking in and out",
            Rate => "rating work",
            Exchange => "exchanging points and hours",
            UnitReport => "unit reports",
            CommunityReport => "community reports",
            AnswerAsMember => "answering as a member",
            Invite => "inviting people to sign in",
            ReadAudit => "the audit",
            Webhooks => "webhooks",
            Push => "push notifications",
            PlaceRequest => "placing and confirming requests",
            ReadRequests => "residents' requests",
            DispatchRequest => "answering residents' requests",
            Propose => "proposing a service",
            ReadProposals => "proposals",
            DecideProposal => "deciding on proposals",
        }
    }
}

/// Does the token's scope name something the city holds? (An empty claim never gets
/// here: the token is refused when it is parsed.)
pub fn known(state: &State, actor: &Actor) -> bool {
    let c = &state.city;
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => c.district_by_id.contains_key(d),
        Actor::Staff { community } => c.community_by_id.contains_key(community),
        Actor::UnitAdmin { unit } => c.unit_by_id.contains_key(unit),
        Actor::Member { member } => c.member_by_id.contains_key(member),
        Actor::Resident { resident } => {
            state.residents.residents.get(resident).is_some_and(|r| c.community_by_id.contains_key(&r.community_id))
        }
    }
}

/// City-wide command (or the system): the whole city is its scope.
pub fn city_wide(actor: &Actor) -> bool {
    matches!(actor, Actor::Command { district: None } | Actor::System)
}

/// A district's own business (its mode switch): its command and city command.
pub fn district(actor: &Actor, district_id: &str) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => d == district_id,
        _ => false,
    }
}

/// A community's business (its incidents, orders, balance, registration and report): its
/// staff, its district's command, city command.
pub fn community(state: &State, actor: &Actor, c: u32) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => state.city.district_id_of_community(c) == d,
        Actor::Staff { community } => state.city.community_by_id.get(community) == Some(&c),
        Actor::UnitAdmin { .. } | Actor::Member { .. } | Actor::Resident { .. } => false,
    }
}

/// A member's record: the member, their unit's admin, staff of their residence community,
/// command of its district or of the city.
pub fn member(state: &State, actor: &Actor, m: u32) -> bool {
    match actor {
        Actor::Resident { .. } => false,
        Actor::UnitAdmin { unit } => &state.city.members()[m as usize].unit_id == unit,
        Actor::Member { member } => &state.city.members()[m as usize].id == member,
        _ => community(state, actor, state.city.residence_community(m)),
    }
}

/// Where a member's work is assessed (reports, ratings): where their record is, and the
/// community (and district) their team serves.
pub fn member_work(state: &State, actor: &Actor, m: u32) -> bool {
    member(state, actor, m)
        || state.city.member_paired_community[m as usize].is_some_and(|c| community(state, actor, c))
}

/// A write to a member who exists (a new registration, a move): decided by where the
/// member is now (unit, residence), not by what the body asks.
pub fn manages_member(state: &State, actor: &Actor, m: u32) -> bool {
    !matches!(actor, Actor::Member { .. } | Actor::Resident { .. }) && member(state, actor, m)
}

/// Where a registration puts a member (new, or moved): a unit admin registers into their
/// unit (anywhere they live); staff and command, residents of their area.
pub fn places_member(state: &State, actor: &Actor, unit_id: &str, residence: u32) -> bool {
    match actor {
        Actor::UnitAdmin { unit } => unit == unit_id,
        _ => community(state, actor, residence),
    }
}

/// A unit: its admin, its members, and staff and command where one of its teams serves.
pub fn unit(state: &State, actor: &Actor, u: u32) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::UnitAdmin { unit } => state.city.unit_by_id.get(unit) == Some(&u),
        Actor::Member { member } => {
            state.city.member_by_id.get(member).is_some_and(|&m| state.city.member_unit[m as usize] == u)
        }
        Actor::Resident { .. } => false,
        Actor::Command { .. } | Actor::Staff { .. } => {
            let Some(city) = state.city.city() else { return false };
            let unit_id = &city.units[u as usize].id;
            city.teams
                .iter()
                .enumerate()
                .any(|(t, team)| &team.unit_id == unit_id && community(state, actor, state.city.team_community[t]))
        }
    }
}

/// A team: its unit's admin, its members, staff and command where it serves (is paired).
pub fn team(state: &State, actor: &Actor, t: u32) -> bool {
    match actor {
        Actor::Resident { .. } => false,
        Actor::UnitAdmin { .. } => {
            let city = state.city.city().expect("a team implies a city");
            unit(state, actor, state.city.unit_by_id[&city.teams[t as usize].unit_id])
        }
        Actor::Member { member } => {
            state.city.member_by_id.get(member).is_some_and(|&m| state.city.member_team[m as usize] == Some(t))
        }
        _ => community(state, actor, state.city.team_community[t as usize]),
    }
}

/// An incident, its offers, timeline and frames: staff of its community, command of its
/// district or of the city.
pub fn incident(actor: &Actor, inc: &Incident) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => &inc.district_id == d,
        Actor::Staff { community } => &inc.community_id == community,
        Actor::UnitAdmin { .. } | Actor::Member { .. } | Actor::Resident { .. } => false,
    }
}

/// The streams that carry an incident's frames: exactly those of the actors who see it.
pub fn incident_streams(inc: &Incident) -> [String; 3] {
    [stream::community(&inc.community_id), stream::district(&inc.district_id), stream::CITY.to_string()]
}

/// The one stream an actor's socket reads.
pub fn stream_of(actor: &Actor) -> String {
    match actor {
        Actor::Member { member } => stream::member(member),
        Actor::Staff { community } => stream::community(community),
        Actor::Command { district: Some(d) } => stream::district(d),
        Actor::Command { district: None } | Actor::System => stream::CITY.to_string(),
        Actor::UnitAdmin { unit } => stream::unit(unit),
        Actor::Resident { resident } => stream::resident(resident),
    }
}

/// A mobilization: city command, and the command of every district it reports into (which
/// sees its own part of it: `mobilization_part`).
pub fn mobilization(actor: &Actor, m: &Mobilization) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => m.districts.contains(d),
        _ => false,
    }
}

/// One member's order within a mobilization the actor sees: a district's command sees the
/// orders that report into its district (to one of its communities, or to a site in it).
pub fn mobilization_part(state: &State, actor: &Actor, m: &Mobilization, o: &MemberOrder) -> bool {
    match (actor, o.community) {
        (Actor::Command { district: Some(_) }, Some(c)) => community(state, actor, c),
        (Actor::Command { district: Some(d) }, None) => m.districts.contains(d),
        _ => mobilization(actor, m),
    }
}

/// Closing a mobilization takes all of it: city command, or the district it lies wholly in.
pub fn closes_mobilization(actor: &Actor, m: &Mobilization) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => !m.districts.is_empty() && m.districts.iter().all(|x| x == d),
        _ => false,
    }
}

/// A service order: staff and command of its community; a member it fits (of its
/// community, with its skills) or who took it.
pub fn order(state: &State, actor: &Actor, o: &ServiceOrder) -> bool {
    match actor {
        Actor::Member { member } => {
            state.city.member_by_id.get(member).is_some_and(|&m| fits(state, m, o) || o.claim_of(m).is_some())
        }
        _ => community(state, actor, o.community),
    }
}

/// One claim on an order the actor sees: a member sees only their own.
pub fn claim(actor: &Actor, claimant_id: &str) -> bool {
    match actor {
        Actor::Member { member } => member == claimant_id,
        _ => true,
    }
}

/// Does the member belong to the community for service: living there (or transferred
/// there), or in a team paired with it?
pub fn of_community(state: &State, member: u32, community: u32) -> bool {
    state.roster.home(member) == community || state.city.member_paired_community[member as usize] == Some(community)
}

pub(super) fn fits(state: &State, member: u32, order: &ServiceOrder) -> bool {
    let have = &state.city.members()[member as usize].skills;
    of_community(state, member, order.community) && order.skills.iter().all(|s| have.contains(s))
}

/// The roles an actor may invite (403 `invitee_not_allowed` otherwise): command invites
/// staff and unit admins; staff and unit admins invite members; the system (the demo
/// loader) anyone but itself.
pub fn invites_role(actor: &Actor, invitee: &Actor) -> bool {
    match (actor, invitee) {
        (_, Actor::System | Actor::Resident { .. }) => false,
        (Actor::System, _) => true,
        (Actor::Command { .. }, Actor::Staff { .. } | Actor::UnitAdmin { .. }) => true,
        (Actor::Staff { .. } | Actor::UnitAdmin { .. }, Actor::Member { .. }) => true,
        _ => false,
    }
}

/// May the actor invite this person (role and scope)? City command: staff and unit admins
/// anywhere; a district's command: staff of its communities and admins of units serving
/// it (a team paired in the district); staff: members living in their community; a unit
/// admin: members of their unit. A scope the city does not hold: nobody.
pub fn invites(state: &State, actor: &Actor, invitee: &Actor) -> bool {
    if !invites_role(actor, invitee) || !known(state, invitee) {
        return false;
    }
    let c = &state.city;
    match invitee {
        Actor::Command { .. } => city_wide(actor),
        Actor::Staff { community: id } => community(state, actor, c.community_by_id[id]),
        Actor::UnitAdmin { unit: id } => unit(state, actor, c.unit_by_id[id]),
        Actor::Member { member: id } => member(state, actor, c.member_by_id[id]),
        Actor::System | Actor::Resident { .. } => false,
    }
}

/// A sign-in link, its state and its revocation: whoever may invite its invitee now.
pub fn invitation(state: &State, actor: &Actor, inv: &Invitation) -> bool {
    invites(state, actor, &inv.invitee)
}

/// A signed-in device (a session family): the person it signed in, and whoever may invite
/// them (who may list and revoke it).
pub fn session(state: &State, actor: &Actor, s: &Session) -> bool {
    *actor == s.subject || invites(state, actor, &s.subject)
}

/// An audit entry (a logged decision, `audit::KINDS`): city command sees every one; a
/// district's command, those about its district or one of its communities (the place is
/// read from the present state: `audit::place`) and the city-wide mode switches; nobody
/// else (the role table already refuses them: `Action::ReadAudit`).
pub fn audit_entry(state: &State, actor: &Actor, body: &super::event::EventBody) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => {
            let place = audit::place(state, body);
            place.city_wide || place.districts.contains(d)
        }
        Actor::Staff { .. } | Actor::UnitAdmin { .. } | Actor::Member { .. } | Actor::Resident { .. } => false,
    }
}

/// An outbound webhook endpoint: city command every one; a district's command those scoped
/// to its district (a city-wide one is not its to see).
pub fn webhook(actor: &Actor, ep: &super::webhooks::Endpoint) -> bool {
    match actor {
        Actor::Command { district: None } | Actor::System => true,
        Actor::Command { district: Some(d) } => ep.district_id.as_deref() == Some(d.as_str()),
        Actor::Staff { .. } | Actor::UnitAdmin { .. } | Actor::Member { .. } | Actor::Resident { .. } => false,
    }
}

/// A resident's **request** (issue #20): the resident who placed it; staff and command of
/// its community. Nobody else (a resident sees nothing of anyone else's).
pub fn request(state: &State, actor: &Actor, r: &super::residents_data::Request) -> bool {
    match actor {
        Actor::Resident { resident } => &r.resident_id == resident,
        Actor::UnitAdmin { .. } | Actor::Member { .. } => false,
        _ => state.city.community_by_id.get(&r.community_id).is_some_and(|&c| community(state, actor, c)),
    }
}

/// A member's **proposal** (创单): the member; staff and command of its community.
pub fn proposal(state: &State, actor: &Actor, p: &super::residents_data::Proposal) -> bool {
    match actor {
        Actor::Member { member } => &p.member_id == member,
        Actor::UnitAdmin { .. } | Actor::Resident { .. } => false,
        _ => state.city.community_by_id.get(&p.community_id).is_some_and(|&c| community(state, actor, c)),
    }
}

/// A Web Push **subscription** is its member's alone (and the system's, which removes one
/// its push service said is gone); another member's looks like none.
pub fn push_subscription(actor: &Actor, sub: &super::push::Subscription) -> bool {
    match actor {
        Actor::Member { member } => *member == sub.member_id,
        Actor::System => true,
        _ => false,
    }
}
