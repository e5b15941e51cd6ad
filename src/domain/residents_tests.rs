//! Residents and 创单 domain tests (issue #20): sign-in by a one-time code (its attempts,
//! its expiry, one resident per phone and community), requests placed, dispatched, merged,
//! declined, followed and confirmed with a rating that rates the members' work, proposals
//! approved into an order with the proposer as first claimant, scope (a resident sees
//! nothing of anyone else), and a replay of the whole log giving the same state.
//!
//! The city is the service tests' (`fixtures::two_districts`): c1 has grids g1..g3, c2 g4
//! and g5 (both in district d1), c4 g7 (d2). Categories `patrol` (1) and `rescue` (5).

use super::dispatcher::{Actor, Command, ErrorKind, Reply};
use super::event::EventBody;
use super::fixtures::member;
use super::residents::{self, DispatchOrder, RequestState, ResidentCommand, ResidentEvent};
use super::service_data::Rating;
use crate::domain::testkit::*;

const PHONE: &str = "13800138000";

fn hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn res(action: ResidentCommand) -> Command {
    Command::Residents { action: Box::new(action) }
}

fn world() -> World {
    World::with_city(super::fixtures::two_districts(
        "residents",
        vec![member("a", "g1"), member("b", "g2"), member("x", "g4")],
    ))
}

impl World {
    /// Sends a code for `phone` in `community` as challenge `ch` (the gateway's part).
    fn send_code(&mut self, ch: &str, community: &str, phone: &str, code: &str) {
        let cmd = res(ResidentCommand::Challenge {
            challenge_id: ch.into(),
            community_id: community.into(),
            phone: phone.into(),
            code_hash: hash(&format!("{ch}:{code}")),
            ttl_s: 300,
        });
        self.ok(&Actor::System, cmd);
    }

    fn verify(&mut self, ch: &str, code: &str, family: &str) -> Vec<&'static str> {
        let cmd = res(ResidentCommand::Verify {
            challenge_id: ch.into(),
            code_hash: hash(&format!("{ch}:{code}")),
            family: family.into(),
            refresh_hash: hash(family),
            device: "phone".into(),
            ttl_s: 86_400,
        });
        let out = self.ok(&Actor::System, cmd);
        kinds(&out)
    }

    /// Signs a resident in and answers their actor.
    fn sign_in_resident(&mut self, ch: &str, community: &str, phone: &str) -> Actor {
        self.send_code(ch, community, phone, "123456");
        let family = format!("family-of-{ch}");
        assert_eq!(self.verify(ch, "123456", &family), ["resident_verified"]);
        self.state.sessions[&family].subject.clone()
    }

    fn place_request(&mut self, who: &Actor, grid: &str, text: &str) -> String {
        let cmd = res(ResidentCommand::Place {
            category: "patrol".into(),
            description: text.into(),
            grid_id: grid.into(),
            preferred_start: self.now,
            preferred_end: self.now + DAY * 1000,
        });
        match self.ok(who, cmd).reply {
            Some(Reply::Request(id)) => id,
            other => panic!("expected a request, got {other:?}"),
        }
    }
}

fn dispatch(request_id: &str, slots: u32) -> Command {
    res(ResidentCommand::Dispatch {
        request_id: request_id.into(),
        order: DispatchOrder {
            title: None,
            difficulty: None,
            window_start: T0,
            window_end: T0 + 2 * DAY * 1000,
            slots,
            skills: vec![],
            note: None,
        },
    })
}

#[test]
fn a_code_is_right_once_before_it_expires_and_within_five_attempts() {
    let mut w = world();
    w.send_code("challenge-aaaaaaaaaa", "c1", PHONE, "111111");
    for _ in 0..4 {
        assert_eq!(w.verify("challenge-aaaaaaaaaa", "999999", "family-wrong-0000"), ["resident_code_failed"]);
    }
    // The fifth wrong code drops the challenge: even the right one is unknown now.
    assert_eq!(w.verify("challenge-aaaaaaaaaa", "999999", "family-wrong-0000"), ["resident_code_failed"]);
    let e = w.refuse(
        &Actor::System,
        res(ResidentCommand::Verify {
            challenge_id: "challenge-aaaaaaaaaa".into(),
            code_hash: hash("challenge-aaaaaaaaaa:111111"),
            family: "family-right-00000".into(),
            refresh_hash: hash("x"),
            device: String::new(),
            ttl_s: 60,
        }),
    );
    assert_err(&e, ErrorKind::NotFound, "unknown_challenge");

    // Expired.
    w.send_code("challenge-bbbbbbbbbb", "c1", PHONE, "222222");
    w.at(301);
    let e = w.refuse(
        &Actor::System,
        res(ResidentCommand::Verify {
            challenge_id: "challenge-bbbbbbbbbb".into(),
            code_hash: hash("challenge-bbbbbbbbbb:222222"),
            family: "family-late-000000".into(),
            refresh_hash: hash("y"),
            device: String::new(),
            ttl_s: 60,
        }),
    );
    assert_err(&e, ErrorKind::NotFound, "unknown_challenge");

    // The same phone in the same community is the same resident; in another, another.
    let r1 = w.sign_in_resident("challenge-cccccccccc", "c1", PHONE);
    let again = w.sign_in_resident("challenge-dddddddddd", "c1", PHONE);
    let other = w.sign_in_resident("challenge-eeeeeeeeee", "c2", PHONE);
    assert_eq!(r1, Actor::Resident { resident: "r-1".into() });
    assert_eq!(again, r1);
    assert_eq!(other, Actor::Resident { resident: "r-2".into() });

    // A used challenge is gone.
    let e = w.refuse(
        &Actor::System,
        res(ResidentCommand::Verify {
            challenge_id: "challenge-cccccccccc".into(),
            code_hash: hash("challenge-cccccccccc:123456"),
            family: "family-reuse-00000".into(),
            refresh_hash: hash("z"),
            device: String::new(),
            ttl_s: 60,
        }),
    );
    assert_err(&e, ErrorKind::NotFound, "unknown_challenge");

    // Bad input: a phone that is not one, a community that does not exist, not the system.
    for (community, phone) in [("c1", "12345"), ("c1", "1380013800a"), ("nowhere", PHONE)] {
        let e = w.refuse(
            &Actor::System,
            res(ResidentCommand::Challenge {
                challenge_id: "challenge-ffffffffff".into(),
                community_id: community.into(),
                phone: phone.into(),
                code_hash: hash("c"),
                ttl_s: 300,
            }),
        );
        assert_eq!(e.kind, ErrorKind::Invalid, "{community} {phone}");
    }
    assert!(residents::is_phone("+8613800138000") && !residents::is_phone("+86"));
    // The phone is in no frame.
    assert!(w.frames.iter().all(|f| !f.data.to_string().contains(PHONE)));
}

#[test]
fn a_request_is_dispatched_followed_served_confirmed_and_its_rating_rates_the_work() {
    let mut w = world();
    let me = w.sign_in_resident("challenge-aaaaaaaaaa", "c1", PHONE);
    // Only a grid of the resident's community.
    let e = w.refuse(
        &me,
        res(ResidentCommand::Place {
            category: "patrol".into(),
            description: "x".into(),
            grid_id: "g4".into(),
            preferred_start: T0,
            preferred_end: T0 + 1000,
        }),
    );
    assert_err(&e, ErrorKind::Invalid, "unknown_grid");
    let req = w.place_request(&me, "g2", "楼道灯坏了");
    assert_eq!(frames_of(&w.frames, "resident:r-1", "request.updated").len(), 1);
    assert_eq!(frames_of(&w.frames, "community:c1", "request.placed").len(), 1);

    // Staff of another community, a unit admin, a member: as if it did not exist.
    for who in [staff("c2"), district_command("d2")] {
        let e = w.refuse(&who, dispatch(&req, 1));
        assert_err(&e, ErrorKind::NotFound, "unknown_request");
    }
    assert_err(&w.refuse(&as_member("a"), dispatch(&req, 1)), ErrorKind::Forbidden, "role_not_allowed");
    // Confirming before it is served.
    let confirm = |r: Rating| {
        res(ResidentCommand::Confirm { request_id: req.clone(), rating: r, comment: Some("谢谢".into()) })
    };
    assert_err(&w.refuse(&me, confirm(Rating::Good)), ErrorKind::Conflict, "request_not_served");

    let out = w.ok(&staff("c1"), dispatch(&req, 1));
    assert_eq!(kinds(&out), ["order_posted", "request_dispatched"]);
    let Some(Reply::Order(order)) = out.reply else { panic!("an order") };
    assert_eq!(residents::status(&w.state, &w.state.residents.requests[&req]), "dispatched");
    // Answered once.
    assert_err(&w.refuse(&staff("c1"), dispatch(&req, 1)), ErrorKind::Conflict, "request_closed");

    w.ok(&as_member("a"), Command::ClaimOrder { order_id: order.clone(), assign_to: None });
    let here = w.state.orders[&order].location;
    w.at(60).ok(&as_member("a"), Command::CheckIn { order_id: order.clone(), position: here });
    w.at(60 + 2 * H).ok(&as_member("a"), Command::CheckOut { order_id: order.clone(), position: here });
    let statuses: Vec<String> = frames_of(&w.frames, "resident:r-1", "request.updated")
        .iter()
        .map(|f| f.data["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["submitted", "dispatched", "claimed", "in_service", "served"]);

    let out = w.ok(&me, confirm(Rating::VeryGood));
    assert_eq!(kinds(&out), ["request_confirmed", "rated"]);
    match &out.events[1].body {
        EventBody::Rated { member_id, rating, points, .. } => {
            assert_eq!((member_id.as_str(), *rating), ("a", Rating::VeryGood));
            assert!((points - 2.0 * 1.0 * 1.2).abs() < 1e-9, "{points}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.state.residents.requests[&req].state, RequestState::Confirmed);
    assert_err(&w.refuse(&me, confirm(Rating::Fair)), ErrorKind::Conflict, "already_rated");
    // Staff cannot rate it again either.
    let rate = Command::Rate {
        task: super::service_data::TaskRef::Order(order.clone()),
        member_id: "a".into(),
        rating: Rating::Fair,
    };
    assert_err(&w.refuse(&staff("c1"), rate), ErrorKind::Conflict, "already_rated");

    // Another resident of the same community sees nothing of it.
    let neighbour = w.sign_in_resident("challenge-bbbbbbbbbb", "c1", "13900139000");
    let e = w.refuse(&neighbour, confirm(Rating::Good));
    assert_err(&e, ErrorKind::NotFound, "unknown_request");
    assert!(frames_of(&w.frames, "resident:r-2", "request.updated").is_empty());

    let (replayed, _) = replay(&w.log);
    assert_eq!(durable(&replayed), durable(&w.state));
    w.assert_streams_count_from_one();
}

#[test]
fn a_request_is_merged_into_an_order_or_declined_with_a_reason_the_resident_sees() {
    let mut w = world();
    let me = w.sign_in_resident("challenge-aaaaaaaaaa", "c1", PHONE);
    let first = w.place_request(&me, "g1", "first");
    let second = w.place_request(&me, "g1", "second");
    let Some(Reply::Order(order)) = w.ok(&staff("c1"), dispatch(&first, 2)).reply else { panic!() };
    // An order of another community is not one to merge into.
    let other = match w
        .ok(
            &staff("c2"),
            Command::PostOrder(super::service_data::PostOrder {
                grid_id: Some("g4".into()),
                location: None,
                category: "patrol".into(),
                difficulty: None,
                title: "t".into(),
                note: None,
                window_start: T0,
                window_end: T0 + DAY * 1000,
                slots: 1,
                skills: vec![],
            }),
        )
        .reply
    {
        Some(Reply::Order(id)) => id,
        other => panic!("{other:?}"),
    };
    let merge = |o: &str| res(ResidentCommand::Merge { request_id: second.clone(), order_id: o.into() });
    assert_err(&w.refuse(&city_command(), merge(&other)), ErrorKind::Invalid, "unknown_order");
    let out = w.ok(&staff("c1"), merge(&order));
    assert_eq!(kinds(&out), ["request_dispatched"]);
    assert_eq!(w.state.residents.order_requests[&order], [first.clone(), second.clone()]);

    let third = w.place_request(&me, "g3", "third");
    let decline = |reason: &str| res(ResidentCommand::Decline { request_id: third.clone(), reason: reason.into() });
    assert_err(&w.refuse(&staff("c1"), decline("  ")), ErrorKind::Invalid, "reason_required");
    w.ok(&staff("c1"), decline("不在服务范围"));
    let last = frames_of(&w.frames, "resident:r-1", "request.updated").last().copied().unwrap();
    assert_eq!(last.data["status"], "declined");
    assert_eq!(last.data["reason"], "不在服务范围");
}

#[test]
fn a_proposal_approved_is_an_order_with_its_member_as_first_claimant_and_counts_as_created() {
    let mut w = world();
    let propose = |grid: &str| {
        res(ResidentCommand::Propose {
            category: "patrol".into(),
            title: "教老人用手机".into(),
            description: Some("每周六".into()),
            grid_id: grid.into(),
            for_whom: "3栋老人".into(),
            window_start: T0,
            window_end: T0 + DAY * 1000,
            slots: Some(2),
        })
    };
    // Not a community the member serves; not a member.
    assert_err(&w.refuse(&as_member("a"), propose("g4")), ErrorKind::Invalid, "unknown_grid");
    assert_err(&w.refuse(&staff("c1"), propose("g1")), ErrorKind::Forbidden, "role_not_allowed");
    let Some(Reply::Proposal(p)) = w.ok(&as_member("a"), propose("g1")).reply else { panic!() };
    let Some(Reply::Proposal(p2)) = w.ok(&as_member("a"), propose("g2")).reply else { panic!() };
    let approve = |id: &str| res(ResidentCommand::Approve { proposal_id: id.into() });
    assert_err(&w.refuse(&staff("c2"), approve(&p)), ErrorKind::NotFound, "unknown_proposal");
    let out = w.ok(&staff("c1"), approve(&p));
    assert_eq!(kinds(&out), ["order_posted", "order_claimed", "proposal_approved"]);
    let Some(Reply::Order(order)) = out.reply else { panic!() };
    assert_eq!(w.state.orders[&order].claims[0].member_id, "a");
    assert_err(&w.refuse(&staff("c1"), approve(&p)), ErrorKind::Conflict, "proposal_closed");
    w.ok(&staff("c1"), res(ResidentCommand::DeclineProposal { proposal_id: p2.clone(), reason: "重复".into() }));
    assert_eq!(frames_of(&w.frames, "member:a", "proposal.updated").len(), 4);

    // b takes it too, both work it: created for a, taken for b.
    w.ok(&as_member("b"), Command::ClaimOrder { order_id: order.clone(), assign_to: None });
    let here = w.state.orders[&order].location;
    for m in ["a", "b"] {
        w.ok(&as_member(m), Command::CheckIn { order_id: order.clone(), position: here });
        w.ok(&as_member(m), Command::CheckOut { order_id: order.clone(), position: here });
    }
    let f = |m: &str| super::service::figures(&w.state, w.idx(m), i64::MIN, i64::MAX);
    assert_eq!((f("a").orders_created, f("a").orders_taken), (1, 0));
    assert_eq!((f("b").orders_created, f("b").orders_taken), (0, 1));
    let (replayed, _) = replay(&w.log);
    assert_eq!(durable(&replayed), durable(&w.state));
    assert!(w.log.iter().any(|e| matches!(&e.body, EventBody::Residents { event } if matches!(**event, ResidentEvent::ProposalDeclined { .. }))));
}
