//! Sign-in links and sessions (`access`): issue, redeem once, expiry, revocation, refresh
//! rotation and reuse, who may invite whom, and that a restart (snapshot or replay) keeps
//! the sessions. Expectations come from the fixture city (fixtures.rs), not from `scope`.

use super::access::{Invite, SessionEnd, family_revoked};
use super::dispatcher::{Actor, Command, ErrorKind, Reply};
use super::fixtures::{member, two_districts};
use super::org::Member;
use super::testkit::*;

/// m1 lives in c1 (d1), unit u1; m2 lives in c4 (d2), unit u2; m3 lives in c2 (d1), unit u1.
fn world() -> World {
    let m2 = Member { unit_id: "u2".into(), ..member("m2", "g7") };
    World::with_city(two_districts("access", vec![member("m1", "g1"), m2, member("m3", "g4")]))
}

fn hash(n: u32) -> String {
    format!("{n:064x}")
}

fn fam(n: u32) -> String {
    format!("family-{n:016}")
}

fn invite_one(invitee: Actor, ttl_s: u64, code: u32) -> Command {
    Command::Invite { invitations: vec![Invite { invitee, ttl_s, code_hash: hash(code) }] }
}

fn redeem(code: u32, family: u32, refresh: u32) -> Command {
    Command::Redeem {
        code_hash: hash(code),
        family: fam(family),
        refresh_hash: hash(refresh),
        device: "phone".into(),
        ttl_s: 30 * 86_400,
    }
}

fn refresh(family: u32, presented: u32, new: u32) -> Command {
    Command::Refresh {
        family: fam(family),
        presented_hash: hash(presented),
        refresh_hash: hash(new),
        ttl_s: 30 * 86_400,
    }
}

#[test]
fn an_invitation_is_redeemed_once_and_opens_a_session_for_its_invitee() {
    let mut w = world();
    let out = w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    assert_eq!(kinds(&out), ["invitation_issued"]);
    let inv = &w.state.invitations["inv-000001"];
    assert_eq!((inv.invitee.clone(), inv.issued_by.as_str()), (as_member("m1"), "staff:c1"));
    assert_eq!(inv.expires_at, T0 + 600_000);
    // The log holds the hash only.
    assert!(serde_json::to_string(&w.log).unwrap().contains(&hash(1)));

    w.at(10);
    assert_eq!(kinds(&w.ok(&Actor::System, redeem(1, 1, 100))), ["invitation_redeemed"]);
    let s = &w.state.sessions[&fam(1)];
    assert_eq!((s.subject.clone(), s.device.as_str(), s.created_at), (as_member("m1"), "phone", T0 + 10_000));
    // Once only, with a new family or not.
    let e = w.refuse(&Actor::System, redeem(1, 2, 101));
    assert_err(&e, ErrorKind::Conflict, "invitation_used");
    let e = w.refuse(&Actor::System, redeem(9, 2, 101));
    assert_err(&e, ErrorKind::NotFound, "unknown_invitation");
}

#[test]
fn an_expired_or_revoked_invitation_signs_nobody_in() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 60, 1));
    w.ok(&unit_admin("u1"), invite_one(as_member("m3"), 600, 2));
    w.at(60);
    assert_err(&w.refuse(&Actor::System, redeem(1, 1, 100)), ErrorKind::Conflict, "invitation_expired");
    // Revoked by someone who may invite m3 (staff of c2), not by staff of c1 (404, as unknown).
    let e = w.refuse(&staff("c1"), Command::RevokeInvitation { invitation_id: "inv-000002".into() });
    assert_err(&e, ErrorKind::NotFound, "unknown_invitation");
    let e = w.refuse(&staff("c1"), Command::RevokeInvitation { invitation_id: "inv-000099".into() });
    assert_err(&e, ErrorKind::NotFound, "unknown_invitation");
    assert_eq!(
        kinds(&w.ok(&staff("c2"), Command::RevokeInvitation { invitation_id: "inv-000002".into() })),
        ["invitation_revoked"]
    );
    assert!(w.ok(&staff("c2"), Command::RevokeInvitation { invitation_id: "inv-000002".into() }).events.is_empty());
    assert_err(&w.refuse(&Actor::System, redeem(2, 1, 100)), ErrorKind::Conflict, "invitation_revoked");
}

#[test]
fn refresh_rotates_and_a_rotated_credential_revokes_the_family() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    w.ok(&Actor::System, redeem(1, 1, 100));
    w.at(60);
    assert_eq!(kinds(&w.ok(&Actor::System, refresh(1, 100, 101))), ["session_refreshed"]);
    w.at(120);
    w.ok(&Actor::System, refresh(1, 101, 102));
    assert_eq!(w.state.sessions[&fam(1)].refreshed_at, Some(T0 + 120_000));
    assert!(!family_revoked(&w.state.revoked, &fam(1)));
    // A value never issued: refused, the family stays.
    assert_err(&w.refuse(&Actor::System, refresh(1, 555, 103)), ErrorKind::NotFound, "unknown_session");
    // 100 was rotated past: reuse. The family ends, its tokens are refused.
    let out = w.ok(&Actor::System, refresh(1, 100, 103));
    assert_eq!(out.reply, Some(Reply::RefreshReused(fam(1))));
    assert!(matches!(&out.events[0].body, super::event::EventBody::SessionRevoked { reason: SessionEnd::Reuse, .. }));
    assert!(!w.state.sessions.contains_key(&fam(1)));
    assert!(family_revoked(&w.state.revoked, &fam(1)));
    // The current one is dead too.
    assert_err(&w.refuse(&Actor::System, refresh(1, 102, 104)), ErrorKind::NotFound, "unknown_session");
}

#[test]
fn an_idle_session_expires() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    let Command::Redeem { code_hash, family, refresh_hash, device, .. } = redeem(1, 1, 100) else { unreachable!() };
    w.ok(&Actor::System, Command::Redeem { code_hash, family, refresh_hash, device, ttl_s: 100 });
    w.at(100);
    assert_err(&w.refuse(&Actor::System, refresh(1, 100, 101)), ErrorKind::Conflict, "session_expired");
}

#[test]
fn sign_out_and_revocation_by_the_person_or_whoever_may_invite_them() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 2));
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 3));
    w.ok(&city_command(), invite_one(staff("c1"), 600, 4));
    for (code, f) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        w.ok(&Actor::System, redeem(code, f, 100 + f));
    }
    // Sign-out with the refresh credential, no bearer.
    let e = w.refuse(&Actor::System, Command::SignOut { family: fam(1), refresh_hash: Some(hash(999)) });
    assert_err(&e, ErrorKind::NotFound, "unknown_session");
    w.ok(&Actor::System, Command::SignOut { family: fam(1), refresh_hash: Some(hash(101)) });
    assert!(family_revoked(&w.state.revoked, &fam(1)));
    // Another member, staff of another community, a district command elsewhere: as unknown.
    for a in [as_member("m2"), staff("c2"), district_command("d2"), unit_admin("u2")] {
        let e = w.refuse(&a, Command::RevokeSession { family: fam(2) });
        assert_err(&e, ErrorKind::NotFound, "unknown_session");
    }
    // The person themself: a sign-out; the unit admin (m1 is u1's): an admin revocation.
    w.ok(&as_member("m1"), Command::RevokeSession { family: fam(2) });
    let out = w.ok(&unit_admin("u1"), Command::RevokeSession { family: fam(3) });
    assert!(matches!(&out.events[0].body, super::event::EventBody::SessionRevoked { reason: SessionEnd::Admin, .. }));
    // Staff's own device: district command of d1 may revoke it, staff of c1 their own.
    let e = w.refuse(&staff("c2"), Command::RevokeSession { family: fam(4) });
    assert_err(&e, ErrorKind::NotFound, "unknown_session");
    w.ok(&district_command("d1"), Command::RevokeSession { family: fam(4) });
    assert!(w.state.sessions.is_empty());
}

#[test]
fn revoking_every_token_of_a_person_ends_their_sessions() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    w.ok(&Actor::System, redeem(1, 1, 100));
    w.at(5);
    w.ok(&city_command(), Command::RevokeTokens { subject: "member:m1".into() });
    assert!(w.state.sessions.is_empty());
    assert!(family_revoked(&w.state.revoked, &fam(1)));
    assert_err(&w.refuse(&Actor::System, refresh(1, 100, 101)), ErrorKind::NotFound, "unknown_session");
}

#[test]
fn who_may_invite_whom() {
    let mut w = world();
    // (inviter, invitee, expected code or None for allowed)
    let cases: Vec<(Actor, Actor, Option<&str>)> = vec![
        (city_command(), staff("c4"), None),
        (city_command(), unit_admin("u4"), None),
        (city_command(), as_member("m1"), Some("invitee_not_allowed")),
        (city_command(), city_command(), Some("invitee_not_allowed")),
        (district_command("d1"), staff("c3"), None),
        (district_command("d1"), staff("c4"), Some("unknown_community")),
        // u3's team t3 is paired with c2 (d1); u4's t4 with c4 (d2).
        (district_command("d1"), unit_admin("u3"), None),
        (district_command("d1"), unit_admin("u4"), Some("unknown_unit")),
        (district_command("d2"), unit_admin("u4"), None),
        (staff("c1"), as_member("m1"), None),
        (staff("c1"), as_member("m3"), Some("unknown_member")),
        (staff("c1"), as_member("nobody"), Some("unknown_member")),
        (staff("c1"), staff("c1"), Some("invitee_not_allowed")),
        (unit_admin("u1"), as_member("m3"), None),
        (unit_admin("u1"), as_member("m2"), Some("unknown_member")),
        (unit_admin("u2"), as_member("m2"), None),
        (unit_admin("u1"), unit_admin("u1"), Some("invitee_not_allowed")),
        (Actor::System, city_command(), None),
        (Actor::System, as_member("m2"), None),
    ];
    let mut code = 1;
    for (inviter, invitee, want) in cases {
        code += 1;
        let cmd = invite_one(invitee.clone(), 600, code);
        match want {
            None => {
                w.ok(&inviter, cmd);
            }
            Some(c) => {
                let e = w.refuse(&inviter, cmd);
                assert_eq!(e.code.as_str(), c, "{inviter:?} inviting {invitee:?}: {}", e.detail);
            }
        }
    }
    // A member may not invite at all.
    let e = w.refuse(&as_member("m1"), invite_one(as_member("m1"), 600, 1));
    assert_err(&e, ErrorKind::Forbidden, "role_not_allowed");
}

#[test]
fn a_batch_is_all_or_nothing_with_every_bad_row_named() {
    let mut w = world();
    let batch = |rows: &[(&str, u32)]| Command::Invite {
        invitations: rows
            .iter()
            .map(|(m, c)| Invite { invitee: as_member(m), ttl_s: 600, code_hash: hash(*c) })
            .collect(),
    };
    let e = w.refuse(&unit_admin("u1"), batch(&[("m1", 1), ("m2", 2), ("m3", 3), ("zz", 4)]));
    assert_eq!(e.code.as_str(), "unknown_member");
    assert!(e.detail.contains("row 2:") && e.detail.contains("row 4:") && !e.detail.contains("row 1:"), "{}", e.detail);
    let e = w.refuse(&unit_admin("u1"), batch(&[("m1", 1), ("m1", 2)]));
    assert!(e.detail.contains("row 2:"), "{}", e.detail);
    let out = w.ok(&unit_admin("u1"), batch(&[("m1", 1), ("m3", 3)]));
    assert_eq!(kinds(&out), ["invitation_issued", "invitation_issued"]);
    // A code already issued is refused.
    let e = w.refuse(&unit_admin("u1"), batch(&[("m1", 1)]));
    assert_err(&e, ErrorKind::Invalid, "invalid_invitation");
}

#[test]
fn a_restart_keeps_invitations_and_sessions() {
    let mut w = world();
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 1));
    w.ok(&staff("c1"), invite_one(as_member("m1"), 600, 2));
    w.ok(&unit_admin("u1"), invite_one(as_member("m3"), 600, 3));
    w.ok(&Actor::System, redeem(1, 1, 100));
    w.ok(&Actor::System, redeem(3, 3, 300));
    w.at(30);
    w.ok(&Actor::System, refresh(1, 100, 101));
    w.ok(&Actor::System, Command::SignOut { family: fam(3), refresh_hash: Some(hash(300)) });
    w.ok(&staff("c1"), Command::RevokeInvitation { invitation_id: "inv-000002".into() });

    // A replay and a snapshot give the same state, and it decides alike.
    let (replayed, _) = replay(&w.log);
    assert_eq!(everything(&replayed), everything(&w.state));
    let restored = super::snapshot::decode(&super::snapshot::encode(&w.state)).unwrap();
    assert_eq!(everything(&restored), everything(&w.state));
    assert_eq!(restored.invitation_by_code, w.state.invitation_by_code);
    // The rotated-out credential is remembered across the restart: reuse.
    let mut again = w.beside(restored);
    assert_eq!(again.ok(&Actor::System, refresh(1, 100, 102)).reply, Some(Reply::RefreshReused(fam(1))));
    let mut again = w.beside(super::snapshot::decode(&super::snapshot::encode(&w.state)).unwrap());
    again.ok(&Actor::System, refresh(1, 101, 102));
    assert!(family_revoked(&again.state.revoked, &fam(3)));
    assert_err(&again.refuse(&Actor::System, redeem(1, 9, 900)), ErrorKind::Conflict, "invitation_used");
    assert_restores_at_every_cut(&w.log, &w.rules);
}
