//! Webhook endpoints over the fixture city (fixtures.rs): d1 holds c1–c3 (g1–g6), d2 holds
//! c4 (g7). Who manages an endpoint, and which events each one is sent.

use super::dispatcher::{Code, Command, Reply};
use super::event::{EventBody, Mode};
use super::fixtures::{member, two_districts};
use super::response::Level;
use super::snapshot;
use super::testkit::*;
use super::webhooks;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn register(url: &str, types: &[&str], district: Option<&str>) -> Command {
    Command::RegisterWebhook {
        url: url.into(),
        types: types.iter().map(|t| t.to_string()).collect(),
        district_id: district.map(String::from),
        secret: SECRET.into(),
    }
}

fn made(out: &super::command::Outcome) -> String {
    let Some(Reply::Webhook(id)) = &out.reply else { panic!("no webhook: {:?}", out.reply) };
    id.clone()
}

#[test]
fn command_registers_within_its_scope_and_bad_input_changes_nothing() {
    let mut w = World::with_city(two_districts("hooks", vec![member("a", "g1")]));
    let city = made(&w.ok(&city_command(), register("https://x.example/h", &["incident.raised"], Some("d2"))));
    let d1 = made(&w.ok(&district_command("d1"), register("https://x.example/d", &["incident.raised"], None)));
    assert_eq!(w.state.webhooks[&d1].district_id.as_deref(), Some("d1"), "a district's own, always");
    let seq = w.state.last_seq;
    for (actor, cmd, code) in [
        (
            district_command("d1"),
            register("https://x.example", &["incident.raised"], Some("d2")),
            Code::UnknownDistrict,
        ),
        (city_command(), register("https://x.example", &["incident.raised"], Some("d9")), Code::UnknownDistrict),
        (city_command(), register("ftp://x.example", &["incident.raised"], None), Code::InvalidWebhook),
        (city_command(), register("https://x.example", &["offer_sent"], None), Code::UnknownEventType),
        (city_command(), register("https://x.example", &[], None), Code::UnknownEventType),
        (staff("c1"), register("https://x.example", &["incident.raised"], None), Code::RoleNotAllowed),
        (
            city_command(),
            Command::RegisterWebhook {
                url: "https://x".into(),
                types: vec!["mode.switched".into()],
                district_id: None,
                secret: "plain".into(),
            },
            Code::InvalidWebhook,
        ),
        // Another district's endpoint is unknown to d1's command.
        (district_command("d1"), Command::DeleteWebhook { webhook_id: city.clone() }, Code::UnknownWebhook),
        (
            district_command("d2"),
            Command::SetWebhook { webhook_id: d1.clone(), active: false, reason: None },
            Code::UnknownWebhook,
        ),
    ] {
        assert_eq!(w.refuse(&actor, cmd).code, code);
    }
    assert_eq!(w.state.last_seq, seq, "nothing logged");
    let e = w.refuse(&district_command("d2"), Command::DeleteWebhook { webhook_id: d1.clone() });
    let u = w.refuse(&district_command("d2"), Command::DeleteWebhook { webhook_id: "wh-99".into() });
    assert_eq!((e.code, e.detail.replace(&d1, "X")), (u.code, u.detail.replace("wh-99", "X")), "foreign as unknown");
}

#[test]
fn a_district_endpoint_is_sent_its_district_and_the_city_wide_switches_only() {
    let mut w = World::with_city(two_districts("hooks", vec![member("a", "g1"), member("z", "g7")]));
    let (before, _) = w.raise(&staff("c1"), rescue("g1", Level::IV, 1));
    let city =
        made(&w.ok(&city_command(), register("https://x.example/c", &["incident.raised", "mode.switched"], None)));
    let d1 = made(
        &w.ok(&city_command(), register("https://x.example/1", &["incident.raised", "mode.switched"], Some("d1"))),
    );
    let (in_d1, _) = w.raise(&staff("c2"), rescue("g4", Level::IV, 1));
    let (in_d2, _) = w.raise(&staff("c4"), rescue("g7", Level::IV, 1));
    w.ok(
        &city_command(),
        Command::SwitchMode { district_id: Some("d2".into()), mode: Mode::Wartime, reason: "flood".into() },
    );
    w.ok(&city_command(), Command::SwitchMode { district_id: None, mode: Mode::Wartime, reason: "storm".into() });
    let sent = |id: &str| -> Vec<String> {
        let ep = &w.state.webhooks[id];
        w.log[..]
            .iter()
            .filter_map(|e| webhooks::message_for(&w.state, ep, e.seq, &e.actor, &e.body))
            .map(|(t, data)| {
                format!("{t} {}", data["incident_id"].as_str().or(data["district_id"].as_str()).unwrap_or("city"))
            })
            .collect()
    };
    assert_eq!(
        sent(&city),
        [
            format!("incident.raised {in_d1}"),
            format!("incident.raised {in_d2}"),
            "mode.switched d2".into(),
            "mode.switched city".into()
        ]
    );
    assert_eq!(sent(&d1), [format!("incident.raised {in_d1}"), "mode.switched city".to_string()]);
    assert!(!sent(&city).iter().any(|s| s.contains(&before)), "nothing from before its registration");
}

#[test]
fn changes_are_framed_to_command_audited_without_the_secret_and_kept_by_snapshots() {
    let mut w = World::with_city(two_districts("hooks", vec![member("a", "g1")]));
    let id = made(&w.ok(&city_command(), register("https://x.example/1?token=t", &["incident.filled"], Some("d1"))));
    let out = w.ok(&city_command(), Command::SetWebhook { webhook_id: id.clone(), active: false, reason: None });
    assert_eq!(kinds(&out), ["webhook_disabled"]);
    let streams: Vec<&str> = out.frames.iter().map(|f| f.stream.as_str()).collect();
    assert_eq!(streams, ["district:d1", "city"]);
    assert_eq!(out.frames[0].data["change"], "disabled");
    assert_eq!(w.state.webhooks[&id].disabled_reason.as_deref(), Some("manual"));
    // Disabled again: nothing to log.
    assert!(
        w.ok(&city_command(), Command::SetWebhook { webhook_id: id.clone(), active: false, reason: None })
            .events
            .is_empty()
    );
    let restored = snapshot::decode(&snapshot::encode(&w.state)).unwrap();
    assert_eq!(restored.webhooks, w.state.webhooks);
    assert_eq!(restored.webhooks_registered, 1);
    for e in &w.log {
        if let EventBody::WebhookRegistered { .. } | EventBody::WebhookDisabled { .. } = e.body {
            let shown = format!("{} {}", super::audit::data(&e.body), super::audit::summary(&e.body));
            assert!(!shown.contains("whsec_") && !shown.contains("token=t"), "{shown}");
        }
    }
    w.ok(&city_command(), Command::DeleteWebhook { webhook_id: id.clone() });
    assert!(w.state.webhooks.is_empty());
}
