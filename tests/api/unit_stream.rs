//! Issue 17: the unit's stream (its admin's socket) carries what involves the unit: a
//! whistle naming it (`unit.whistled`) and a mobilization ordering its teams
//! (`unit.mobilized`, its own teams only); another unit's admin hears neither.

use std::time::Duration;

use muster::domain::org::TeamKind;
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

/// Command whistles `unit` to a new level II call in c001; answers the incident's id.
pub(crate) async fn whistle_unit(app: &TestApp, unit: &str) -> String {
    let inc = app
        .raise(
            &app.staff("c001"),
            json!({"grid_id": "c001-g1", "category": "flood_control", "level": "II", "headcount": 30}),
        )
        .await;
    let id = inc["id"].as_str().unwrap().to_string();
    let resp = app.post(&app.command(), &format!("/v1/incidents/{id}/whistle"), json!({"to": [unit]})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    id
}

#[tokio::test]
async fn a_unit_hears_whistles_to_it_and_mobilizations_of_its_teams_and_no_other_unit_does() {
    let app = spawn_app().await;
    let city = &app.city;
    // A unit with an assault team that has members, and another unit.
    let unit = city
        .teams
        .iter()
        .find(|t| t.kind == TeamKind::Assault && city.members.iter().any(|m| m.team_id.as_deref() == Some(&t.id)))
        .expect("an assault team with members")
        .unit_id
        .clone();
    let other = city.units.iter().find(|u| u.id != unit).expect("a second unit").id.clone();
    let mut mine = app.ws(&app.token(Role::UnitAdmin, Some(&unit)), None).await;
    let mut theirs = app.ws(&app.token(Role::UnitAdmin, Some(&other)), None).await;

    // A whistle naming the unit.
    let id = whistle_unit(&app, &unit).await;
    let id = id.as_str();
    let f = mine.expect("unit.whistled").await;
    assert_eq!(f["data"]["incident_id"], id, "{f}");
    assert_eq!(f["data"]["community_id"], "c001", "{f}");
    assert_eq!(f["data"]["level"], "II", "{f}");
    assert!(f["data"]["whistle_id"].is_string() && f["data"]["deadline"].is_string(), "{f}");
    assert!(f["data"].get("offers").is_none(), "the unit's frame carries no offers: {f}");

    // A mobilization of the unit's assault teams: the unit hears its own teams.
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"unit_id": unit, "note": "集结"})).await;
    assert_eq!(resp.status(), 201);
    let mob: Value = resp.json().await.unwrap();
    let f = mine.expect("unit.mobilized").await;
    assert_eq!(f["data"]["mobilization_id"], mob["id"], "{f}");
    assert_eq!(f["data"]["unit_id"], unit.as_str(), "{f}");
    assert_eq!(f["data"]["note"], "集结", "{f}");
    let mut teams: Vec<String> =
        f["data"]["teams"].as_array().unwrap().iter().map(|t| t["team_id"].as_str().unwrap().to_string()).collect();
    teams.sort();
    let mut want: Vec<String> = city
        .teams
        .iter()
        .filter(|t| t.unit_id == unit && t.kind == TeamKind::Assault)
        .filter(|t| city.members.iter().any(|m| m.team_id.as_deref() == Some(&t.id)))
        .map(|t| t.id.clone())
        .collect();
    want.sort();
    assert!(want.iter().all(|t| teams.contains(t)), "the unit's teams {want:?} in {f}");
    assert!(
        teams.iter().all(|t| city.teams.iter().any(|x| &x.id == t && x.unit_id == unit)),
        "only the unit's own teams: {f}"
    );

    // The other unit heard nothing of either.
    assert!(theirs.quiet_for(Duration::from_millis(300)).await, "another unit's stream carried a frame");

    // Its admin resumes after the whistle and gets the mobilization again (the stream is durable).
    let mut again = app.ws(&app.token(Role::UnitAdmin, Some(&unit)), Some(1)).await;
    let f = again.expect("unit.mobilized").await;
    assert_eq!(f["data"]["mobilization_id"], mob["id"], "{f}");
    app.stop().await;
}
