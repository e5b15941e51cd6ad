//! `GET /v1/audit` (issue 17) through the real server: every decision of a small scenario
//! for city command, the filters, paging, a district command's share of it (and nothing of
//! another district's), the roles refused, and the CSV.

use std::collections::BTreeSet;

use muster::domain::org::{City, TeamKind};
use muster::gateway::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn district_of(city: &City, community: &str) -> String {
    let c = city.communities.iter().find(|c| c.id == community).unwrap();
    city.streets.iter().find(|s| s.id == c.street_id).unwrap().district_id.clone()
}

/// An assault team with members paired with a community of this district.
fn team_in(city: &City, district: &str) -> String {
    city.teams
        .iter()
        .filter(|t| t.kind == TeamKind::Assault && district_of(city, &t.community_id) == district)
        .find(|t| city.members.iter().any(|m| m.team_id.as_deref() == Some(&t.id)))
        .map(|t| t.id.clone())
        .unwrap()
}

async fn put(app: &TestApp, path: &str, body: Value) {
    let resp = app.http.put(app.url(path)).bearer_auth(app.command()).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn audit(app: &TestApp, token: &str, query: &str) -> Value {
    json_of(app.get(token, &format!("/v1/audit{query}")).await, 200).await
}

fn kinds(page: &Value) -> Vec<String> {
    page["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn command_reads_every_decision_and_a_district_only_its_own() {
    let app = spawn_app().await;
    let cmd = app.command();
    let d = district_of(&app.city, "c001");
    let other = app.city.districts.iter().find(|x| x.id != d).unwrap().id.clone();
    let foreign_community =
        app.city.communities.iter().find(|c| district_of(&app.city, &c.id) == other).unwrap().id.clone();

    // the scenario: each step one decision
    put(&app, &format!("/v1/districts/{d}/mode"), json!({"mode": "wartime", "reason": "演练"})).await;
    put(&app, &format!("/v1/districts/{other}/mode"), json!({"mode": "wartime", "reason": "演练"})).await;
    let mob = json_of(app.post(&cmd, "/v1/mobilizations", json!({"teams": [team_in(&app.city, &d)]})).await, 201).await;
    let mob_id = mob["id"].as_str().unwrap().to_string();
    let theirs =
        json_of(app.post(&cmd, "/v1/mobilizations", json!({"teams": [team_in(&app.city, &other)]})).await, 201).await;
    let their_mob = theirs["id"].as_str().unwrap().to_string();
    json_of(app.post(&cmd, &format!("/v1/mobilizations/{mob_id}/close"), json!({"reason": "完成"})).await, 200).await;
    let staff = app.staff("c001");
    let inc =
        app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "IV", "headcount": 1})).await;
    let inc_id = inc["id"].as_str().unwrap();
    json_of(app.post(&staff, &format!("/v1/incidents/{inc_id}/whistle"), json!({"to": "paired_units"})).await, 200)
        .await;
    let reg = json!({"id": "audit-1", "name": "审计", "unit_id": "u001", "residence_grid_id": "c001-g2"});
    json_of(app.post(&cmd, "/v1/members", reg).await, 201).await;
    let resp = app.post(&cmd, "/v1/tokens/revoke", json!({"subject": "staff:c001"})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let resp = app.post(&cmd, "/v1/tokens/revoke", json!({"subject": format!("staff:{foreign_community}")})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    put(&app, "/v1/city/mode", json!({"mode": "wartime", "reason": "全市"})).await;

    // city command: all of them, in order
    let all = audit(&app, &cmd, "").await;
    assert_eq!(
        kinds(&all),
        [
            "mode_switched",
            "mode_switched",
            "mobilization_ordered",
            "mobilization_ordered",
            "mobilization_closed",
            "units_whistled",
            "members_registered",
            "tokens_revoked",
            "tokens_revoked",
            "mode_switched"
        ],
        "{all}"
    );
    assert_eq!(all["next"], Value::Null);
    let e = &all["entries"][0];
    assert_eq!((&e["actor"], &e["place"]["district_id"]), (&json!("command"), &json!(d)), "{e}");
    assert!(e["summary"].as_str().unwrap().contains("wartime"), "{e}");
    assert_eq!(all["entries"][9]["place"]["city_wide"], true);
    assert_eq!(all["entries"][5]["place"]["community_id"], "c001");
    let all_seqs = seqs(&all);

    // filters
    assert_eq!(kinds(&audit(&app, &cmd, "?kind=mode_switched").await), ["mode_switched"; 3]);
    let two = audit(&app, &cmd, "?kind=mobilization_ordered,mobilization_closed").await;
    assert_eq!(two["entries"].as_array().unwrap().len(), 3);
    assert_eq!(seqs(&audit(&app, &cmd, "?actor=staff:c001").await), [all_seqs[5]]);
    let here = audit(&app, &cmd, "?community_id=c001").await;
    for i in [5, 6, 7] {
        assert!(seqs(&here).contains(&all_seqs[i]), "{here}");
    }
    for e in here["entries"].as_array().unwrap() {
        assert!(e["place"]["community_ids"].as_array().unwrap().contains(&json!("c001")), "{e}");
    }
    let mid = all["entries"][5]["at"].as_str().unwrap();
    let enc = |s: &str| s.replace(':', "%3A").replace('+', "%2B");
    let after = seqs(&audit(&app, &cmd, &format!("?from={}", enc(mid))).await);
    let before = seqs(&audit(&app, &cmd, &format!("?to={}", enc(mid))).await);
    assert!(after.contains(&all_seqs[5]) && !before.contains(&all_seqs[5]));
    assert_eq!([before.clone(), after].concat(), all_seqs, "from and to split the log at one time");

    // paging: every entry once
    let mut paged = Vec::new();
    let mut cursor = 0;
    loop {
        let page = audit(&app, &cmd, &format!("?limit=3&after={cursor}")).await;
        paged.extend(seqs(&page));
        match page["next"].as_u64() {
            Some(n) => cursor = n,
            None => break,
        }
    }
    assert_eq!(paged, all_seqs);

    // a district's command: its district's entries and the city-wide switch, nothing else
    let own = audit(&app, &app.token(Role::Command, Some(&d)), "").await;
    let want: Vec<u64> = [0, 2, 4, 5, 6, 7, 9].iter().map(|&i| all_seqs[i]).collect();
    assert_eq!(seqs(&own), want, "{own}");
    let text = own.to_string();
    for id in [&other, &their_mob, &foreign_community] {
        assert!(!text.contains(&format!("\"{id}\"")) && !text.contains(&format!("{id} ")), "{id} in {text}");
    }
    let theirs = audit(&app, &app.token(Role::Command, Some(&other)), "").await;
    let want: Vec<u64> = [1, 3, 8, 9].iter().map(|&i| all_seqs[i]).collect();
    assert_eq!(seqs(&theirs), want, "{theirs}");
    assert!(!theirs.to_string().contains(&mob_id), "{theirs}");
    // naming another district's place finds nothing
    let none = audit(&app, &app.token(Role::Command, Some(&d)), &format!("?district_id={other}")).await;
    assert_eq!(none["entries"], json!([]));

    // other roles (staff of a community whose tokens were not revoked)
    let untouched = app.city.communities.iter().find(|c| c.id != "c001" && c.id != foreign_community).unwrap();
    for token in [app.staff(&untouched.id), app.token(Role::UnitAdmin, Some("u001")), app.member("m00001")] {
        assert_problem(app.get(&token, "/v1/audit").await, 403, Some("role_not_allowed")).await;
    }
    // bad filters
    for q in [
        "?kind=offer_sent",
        "?kind=nope",
        "?limit=0",
        "?limit=501",
        "?after=x",
        "?from=yesterday",
        "?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        "?format=xml",
        "?lang=fr",
        "?actor=",
        "?sort=seq",
    ] {
        assert_problem(app.get(&cmd, &format!("/v1/audit{q}")).await, 400, Some("invalid_query")).await;
    }

    // CSV: a BOM, the Chinese header by default, one row per entry
    let resp = app.get(&cmd, "/v1/audit?format=csv").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    assert_eq!(text.lines().next().unwrap(), "序号,时间,类型,操作人,区,社区,摘要,数据");
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let csv_seqs: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(csv_seqs, all_seqs);
    let en = app.get(&cmd, "/v1/audit?format=csv&lang=en&kind=mode_switched").await.text().await.unwrap();
    assert_eq!(
        en.trim_start_matches('\u{feff}').lines().next().unwrap(),
        "seq,at,kind,actor,district_id,community_id,summary,data"
    );
    let seen: BTreeSet<&str> = rows.iter().map(|r| r.get(2).unwrap()).collect();
    assert!(seen.contains("units_whistled"));
    app.stop().await;
}
