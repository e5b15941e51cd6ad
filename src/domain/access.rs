//! Sign-in without pasted tokens: invitations (one-time, expiring, revocable links that
//! name a role and its scope) and the sessions they open (a family of refresh credentials,
//! rotated on every use).
//!
//! The domain never sees a secret: commands carry the SHA-256 of an invitation's code and
//! of each refresh credential, and the ids the gateway drew at random (the family). The
//! gateway makes the random values and signs the short-lived access tokens (JWTs with the
//! family as `sid`); here are only the decisions, so they are in the log and replay:
//!
//! - who may invite whom (`scope::invites`): command invites staff and unit admins, staff
//!   and unit admins invite members, each within their own scope;
//! - an invitation is redeemed once, before it expires, unless revoked;
//! - a refresh presents the family's current hash and gets a new one; presenting one the
//!   family has already rotated past (a copied cookie used after its owner, or the other
//!   way round) revokes the whole family (`SessionEnd::Reuse`): both holders sign in again;
//! - a family ends by sign-out, by an admin (or the person) revoking the device, by reuse,
//!   or when every token of its subject is revoked (`POST /v1/tokens/revoke`).
//!
//! An ended family is removed from `State::sessions` and its id is added to
//! `State::revoked` as `sid:<family>`, so the access tokens it issued are refused at once
//! from the same lock-free copy the gateway already reads for revoked subjects
//! (`EngineHandle::is_revoked`), without the state's lock.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::command::{Actor, Reply, Tx};
use super::errors::{Code, DomainError, ErrorKind, err, err_as};
use super::event::{Event, EventBody, Ts};
use super::scope;
use super::state::{State, is_revoked};

/// Longest lifetime of an invitation the domain takes (the gateway's configured limit is
/// usually shorter).
pub const MAX_INVITATION_TTL_S: u64 = 366 * 24 * 3600;
/// Most invitations in one command (a batch from a CSV).
pub const MAX_BATCH: usize = 5000;
/// Rotated-out refresh hashes a family remembers for reuse detection. One older than that
/// is only unknown (401, the family stays): a stolen credential left unused through this
/// many rotations is also past any sensible refresh lifetime.
pub const REMEMBERED_HASHES: usize = 16;
/// Longest device label kept.
pub const MAX_DEVICE_CHARS: usize = 200;

/// How a session family ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The person signed out (or revoked their own device).
    Signout,
    /// Someone who may invite the person revoked the device, or every token of the person.
    Admin,
    /// An already-rotated refresh credential was presented.
    Reuse,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Signout => "signout",
            SessionEnd::Admin => "admin",
            SessionEnd::Reuse => "reuse",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    Open,
    Redeemed,
    Revoked,
}

/// One invitation: whom it signs in (an `Actor`: role and scope), until when, and the hash
/// of its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    /// `inv-000001`…, in order of issue.
    pub id: String,
    pub invitee: Actor,
    /// The issuer's actor label (`staff:c001`).
    pub issued_by: String,
    pub issued_at: Ts,
    pub expires_at: Ts,
    /// SHA-256 of the code, hex. The code itself is never logged.
    pub code_hash: String,
    pub state: InvitationState,
    /// When it was redeemed or revoked.
    pub closed_at: Option<Ts>,
    /// The session family it opened.
    pub family: Option<String>,
}

/// A session family: one device's sign-in, from the invitation to sign-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Random, drawn by the gateway; the access tokens' `sid`.
    pub family: String,
    pub subject: Actor,
    pub invitation_id: String,
    pub device: String,
    pub created_at: Ts,
    pub refreshed_at: Option<Ts>,
    /// The refresh credential is refused from then on (idle lifetime, renewed by a refresh).
    pub expires_at: Ts,
    /// SHA-256 of the current refresh credential, hex.
    pub refresh_hash: String,
    /// The hashes rotated out, newest last (at most `REMEMBERED_HASHES`).
    pub rotated: Vec<String>,
}

/// One invitation to issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub invitee: Actor,
    pub ttl_s: u64,
    pub code_hash: String,
}

/// A hex SHA-256, as the gateway sends it.
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A random id from the gateway: 16 to 64 characters of [A-Za-z0-9_-].
fn is_family(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Issues invitations, all or none: every refusal is listed by row (1-based), the first
/// one's code answers.
pub(super) fn invite(tx: &mut Tx<'_>, actor: &Actor, invites: Vec<Invite>) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::Invite)?;
    if tx.state.city.city().is_none() {
        return Err(err(Code::NoCity, "no city has been imported yet (PUT /v1/city)"));
    }
    if invites.is_empty() || invites.len() > MAX_BATCH {
        return Err(err(Code::InvalidInvitation, format!("invite 1 to {MAX_BATCH} people at a time")));
    }
    let mut refusals: Vec<(usize, DomainError)> = Vec::new();
    let mut hashes = BTreeSet::new();
    let mut invitees = BTreeSet::new();
    for (i, inv) in invites.iter().enumerate() {
        let checked = check_invite(tx.state, actor, inv).and_then(|()| {
            if !hashes.insert(inv.code_hash.as_str()) {
                return Err(err(Code::InvalidInvitation, "the same code twice"));
            }
            if !invitees.insert(inv.invitee.label()) {
                return Err(err(Code::InvalidInvitation, format!("{} is listed twice", inv.invitee.label())));
            }
            Ok(())
        });
        if let Err(e) = checked {
            refusals.push((i + 1, e));
        }
    }
    if let Some((_, first)) = refusals.first() {
        if invites.len() == 1 {
            return Err(first.clone());
        }
        let detail = refusals.iter().map(|(row, e)| format!("row {row}: {}", e.detail)).collect::<Vec<_>>().join("; ");
        return Err(err_as(first.kind, first.code, detail));
    }
    for inv in invites {
        let n = tx.state.invitations_issued + 1;
        tx.emit(EventBody::InvitationIssued {
            invitation_id: format!("inv-{n:06}"),
            invitee: inv.invitee,
            expires_at: tx.now + (inv.ttl_s as i64) * 1000,
            code_hash: inv.code_hash,
            issued_by: tx.actor.clone(),
        });
    }
    Ok(Reply::Done)
}

fn check_invite(state: &State, actor: &Actor, inv: &Invite) -> Result<(), DomainError> {
    if !is_hash(&inv.code_hash) || state.invitation_by_code.contains_key(&inv.code_hash) {
        return Err(err(Code::InvalidInvitation, "the code must be a new SHA-256 in hex"));
    }
    if inv.ttl_s == 0 || inv.ttl_s > MAX_INVITATION_TTL_S {
        return Err(err(Code::InvalidInvitation, format!("ttl_s must be 1 to {MAX_INVITATION_TTL_S}")));
    }
    if !scope::invites_role(actor, &inv.invitee) {
        return Err(err(
            Code::InviteeNotAllowed,
            "command invites staff and unit admins; staff and unit admins invite members",
        ));
    }
    if !scope::invites(state, actor, &inv.invitee) {
        let (code, what, id) = match &inv.invitee {
            Actor::Staff { community } => (Code::UnknownCommunity, "community", community.as_str()),
            Actor::UnitAdmin { unit } => (Code::UnknownUnit, "unit", unit.as_str()),
            Actor::Member { member } => (Code::UnknownMember, "member", member.as_str()),
            Actor::Command { district } => (Code::UnknownDistrict, "district", district.as_deref().unwrap_or("")),
            Actor::System | Actor::Resident { .. } => (Code::InviteeNotAllowed, "invitee", "system"),
        };
        return Err(err_as(ErrorKind::Invalid, code, format!("no {what} '{id}' in your scope")));
    }
    Ok(())
}

/// Revokes an open invitation (a revoked one again: done, nothing changes).
pub(super) fn revoke_invitation(tx: &mut Tx<'_>, actor: &Actor, id: &str) -> Result<Reply, DomainError> {
    scope::require(actor, scope::Action::Invite)?;
    let inv = visible_invitation(tx.state, actor, id)?;
    match inv.state {
        InvitationState::Revoked => Ok(Reply::Done),
        InvitationState::Redeemed => Err(err(
            Code::InvitationUsed,
            format!("invitation {id} was already used; revoke the device it signed in instead"),
        )),
        InvitationState::Open => {
            tx.emit(EventBody::InvitationRevoked { invitation_id: id.to_string() });
            Ok(Reply::Done)
        }
    }
}

/// The invitation, if the actor may see it (whoever may invite its invitee); else the same
/// 404 as for one that does not exist.
pub fn visible_invitation<'a>(state: &'a State, actor: &Actor, id: &str) -> Result<&'a Invitation, DomainError> {
    state
        .invitations
        .get(id)
        .filter(|i| scope::invitation(state, actor, i))
        .ok_or_else(|| err(Code::UnknownInvitation, format!("no invitation '{id}' in your scope")))
}

/// Redeems an invitation by its code's hash: opens the session `family`. The code is the
/// proof: anyone holding it may (the gateway submits as `Actor::System`).
pub(super) fn redeem(
    tx: &mut Tx<'_>,
    code_hash: &str,
    family: &str,
    refresh_hash: &str,
    device: &str,
    ttl_s: u64,
) -> Result<Reply, DomainError> {
    let unknown = || err(Code::UnknownInvitation, "this sign-in link is not known; ask for a new one");
    let id = tx.state.invitation_by_code.get(code_hash).ok_or_else(unknown)?;
    let inv = &tx.state.invitations[id];
    match inv.state {
        InvitationState::Redeemed => {
            return Err(err(Code::InvitationUsed, "this sign-in link was already used; ask for a new one"));
        }
        InvitationState::Revoked => {
            return Err(err(Code::InvitationRevoked, "this sign-in link was revoked; ask for a new one"));
        }
        InvitationState::Open if tx.now >= inv.expires_at => {
            return Err(err(Code::InvitationExpired, "this sign-in link has expired; ask for a new one"));
        }
        InvitationState::Open => {}
    }
    // The person (or place) it names may have left the city since.
    if !scope::known(tx.state, &inv.invitee) {
        return Err(unknown());
    }
    check_new_family(tx.state, family, refresh_hash, ttl_s)?;
    if device.chars().count() > MAX_DEVICE_CHARS {
        return Err(err(Code::TextTooLong, format!("a device label is at most {MAX_DEVICE_CHARS} characters")));
    }
    let invitation_id = inv.id.clone();
    tx.emit(EventBody::InvitationRedeemed {
        invitation_id,
        family: family.to_string(),
        device: device.to_string(),
        refresh_hash: refresh_hash.to_string(),
        expires_at: tx.now + (ttl_s as i64) * 1000,
    });
    Ok(Reply::Done)
}

pub(super) fn check_new_family(state: &State, family: &str, refresh_hash: &str, ttl_s: u64) -> Result<(), DomainError> {
    let taken = state.sessions.contains_key(family) || state.revoked.contains_key(&sid_key(family));
    if !is_family(family) || taken {
        return Err(err(Code::InvalidInvitation, "the session id must be new: 16 to 64 of [A-Za-z0-9_-]"));
    }
    if !is_hash(refresh_hash) || ttl_s == 0 {
        return Err(err(Code::InvalidInvitation, "the refresh credential must be a SHA-256 in hex, with a lifetime"));
    }
    Ok(())
}

/// Rotates a family's refresh credential. The current hash: a new one replaces it. One the
/// family rotated past: the family is revoked (`Reply::RefreshReused`, which the gateway
/// answers 401). Anything else, or a family that ended: `unknown_session`.
pub(super) fn refresh(
    tx: &mut Tx<'_>,
    family: &str,
    presented: &str,
    refresh_hash: &str,
    ttl_s: u64,
) -> Result<Reply, DomainError> {
    let s = tx.state.sessions.get(family).ok_or_else(unknown_session)?;
    if s.rotated.iter().any(|h| h == presented) {
        tx.emit(EventBody::SessionRevoked { family: family.to_string(), reason: SessionEnd::Reuse });
        return Ok(Reply::RefreshReused(family.to_string()));
    }
    if s.refresh_hash != presented {
        return Err(unknown_session());
    }
    if tx.now >= s.expires_at {
        return Err(err(Code::SessionExpired, "this sign-in has expired; open a new sign-in link"));
    }
    if !is_hash(refresh_hash)
        || ttl_s == 0
        || s.refresh_hash == refresh_hash
        || s.rotated.iter().any(|h| h == refresh_hash)
    {
        return Err(err(Code::InvalidInvitation, "the new refresh credential must be a new SHA-256 in hex"));
    }
    tx.emit(EventBody::SessionRefreshed {
        family: family.to_string(),
        refresh_hash: refresh_hash.to_string(),
        expires_at: tx.now + (ttl_s as i64) * 1000,
    });
    Ok(Reply::Done)
}

fn unknown_session() -> DomainError {
    err(Code::UnknownSession, "this sign-in has ended; open a new sign-in link")
}

/// Signs a device out: proven by its refresh credential (current or rotated), or asked by
/// the person it signed in (an access token of theirs).
pub(super) fn sign_out(
    tx: &mut Tx<'_>,
    actor: &Actor,
    family: &str,
    refresh_hash: Option<&str>,
) -> Result<Reply, DomainError> {
    let s = tx.state.sessions.get(family).ok_or_else(unknown_session)?;
    let by_credential = refresh_hash.is_some_and(|h| s.refresh_hash == h || s.rotated.iter().any(|r| r == h));
    if !(by_credential || s.subject == *actor) {
        return Err(unknown_session());
    }
    tx.emit(EventBody::SessionRevoked { family: family.to_string(), reason: SessionEnd::Signout });
    Ok(Reply::Done)
}

/// Revokes a device: the person themself (a sign-out), or whoever may invite them.
pub(super) fn revoke_session(tx: &mut Tx<'_>, actor: &Actor, family: &str) -> Result<Reply, DomainError> {
    let s = visible_session(tx.state, actor, family)?;
    let reason = if s.subject == *actor { SessionEnd::Signout } else { SessionEnd::Admin };
    tx.emit(EventBody::SessionRevoked { family: family.to_string(), reason });
    Ok(Reply::Done)
}

/// The session, if the actor may see it; else the same 404 as for one that does not exist.
pub fn visible_session<'a>(state: &'a State, actor: &Actor, family: &str) -> Result<&'a Session, DomainError> {
    state
        .sessions
        .get(family)
        .filter(|s| scope::session(state, actor, s))
        .ok_or_else(|| err(Code::UnknownSession, format!("no session '{family}' in your scope")))
}

/// The key of a revoked family in `State::revoked`.
pub fn sid_key(family: &str) -> String {
    format!("sid:{family}")
}

/// Is an access token of this family refused? (`State::revoked` or the gateway's copy.)
pub fn family_revoked(revoked: &std::collections::HashMap<String, u64>, family: &str) -> bool {
    is_revoked(revoked, &sid_key(family), 0)
}

pub(super) fn apply(state: &mut State, event: &Event) {
    match &event.body {
        EventBody::InvitationIssued { invitation_id, invitee, expires_at, code_hash, issued_by } => {
            state.invitations_issued += 1;
            state.invitation_by_code.insert(code_hash.clone(), invitation_id.clone());
            state.invitations.insert(
                invitation_id.clone(),
                Invitation {
                    id: invitation_id.clone(),
                    invitee: invitee.clone(),
                    issued_by: issued_by.clone(),
                    issued_at: event.at,
                    expires_at: *expires_at,
                    code_hash: code_hash.clone(),
                    state: InvitationState::Open,
                    closed_at: None,
                    family: None,
                },
            );
        }
        EventBody::InvitationRevoked { invitation_id } => {
            if let Some(inv) = state.invitations.get_mut(invitation_id) {
                inv.state = InvitationState::Revoked;
                inv.closed_at = Some(event.at);
            }
        }
        EventBody::InvitationRedeemed { invitation_id, family, device, refresh_hash, expires_at } => {
            let Some(inv) = state.invitations.get_mut(invitation_id) else { return };
            inv.state = InvitationState::Redeemed;
            inv.closed_at = Some(event.at);
            inv.family = Some(family.clone());
            let session = Session {
                family: family.clone(),
                subject: inv.invitee.clone(),
                invitation_id: invitation_id.clone(),
                device: device.clone(),
                created_at: event.at,
                refreshed_at: None,
                expires_at: *expires_at,
                refresh_hash: refresh_hash.clone(),
                rotated: Vec::new(),
            };
            state.sessions.insert(family.clone(), session);
        }
        EventBody::SessionRefreshed { family, refresh_hash, expires_at } => {
            if let Some(s) = state.sessions.get_mut(family) {
                let old = std::mem::replace(&mut s.refresh_hash, refresh_hash.clone());
                s.rotated.push(old);
                if s.rotated.len() > REMEMBERED_HASHES {
                    s.rotated.remove(0);
                }
                s.refreshed_at = Some(event.at);
                s.expires_at = *expires_at;
            }
        }
        EventBody::SessionRevoked { family, .. } => end_family(state, family),
        _ => {}
    }
}

fn end_family(state: &mut State, family: &str) {
    state.sessions.remove(family);
    Arc::make_mut(&mut state.revoked).insert(sid_key(family), u64::MAX);
}

/// `TokensRevoked`: every family of the subject opened at or before `before_s` ends with
/// its tokens (a later refresh would otherwise mint new ones).
pub(super) fn tokens_revoked(state: &mut State, subject: &str, before_s: u64) {
    let ended: Vec<String> = state
        .sessions
        .values()
        .filter(|s| s.subject.label() == subject && (s.created_at / 1000).max(0) as u64 <= before_s)
        .map(|s| s.family.clone())
        .collect();
    for f in ended {
        end_family(state, &f);
    }
}
