//! Issue 17, Unit admin: a unit admin signs in from an invitation link and lands on /unit,
//! imports a CSV of members (one bad row: the row is shown and nobody is imported; fixed:
//! all are), sees the registration rate follow, and registers the unit with a paired
//! community; a whistle to the unit and a mobilization of its team show on the page
//! live.

use super::*;

fn rate_of(reg: &Value, unit: &str) -> Value {
    reg["units"].as_array().unwrap().iter().find(|u| u["id"] == unit).unwrap_or_else(|| panic!("{reg}")).clone()
}

/// Waits until the page's rate line shows the registration row's `registered/members`.
async fn rate_shown(b: &Browser, what: &str, row: &Value) {
    let script = format!(
        "return document.querySelector('#unit-rate').textContent.includes('{}/{}')",
        row["registered"], row["members"]
    );
    b.wait(what, &script).await;
}

#[tokio::test]
async fn a_unit_admin_signs_in_from_a_link_imports_members_row_by_row_and_sees_the_rate() {
    let app = spawn_app().await;
    let unit = app.city.units[0].id.clone();
    let team = app.city.teams.iter().find(|t| t.unit_id == unit).expect("the unit has a team").id.clone();
    let unit_members = |v: &Value| v.as_array().unwrap().len();

    // The starting state: command's link for the unit's admin.
    let resp = app.post(&app.command(), "/v1/invitations", json!({"role": "unit_admin", "unit_id": unit})).await;
    assert_eq!(resp.status(), 201);
    let inv: Value = resp.json().await.unwrap();
    let link = inv["link"].as_str().unwrap().to_string();
    let admin = app.token(muster::gateway::auth::Role::UnitAdmin, Some(&unit));
    let before: Value = app.get(&admin, &format!("/v1/members?unit_id={unit}")).await.json().await.unwrap();

    let driver = Driver::start().await;
    let b = driver.browser("unit").await;
    b.goto(&link).await;
    b.wait(
        "the unit page, signed in",
        "return location.pathname === '/unit' && document.querySelector('#conn').dataset.state === 'connected' \
         && document.querySelector('#signin').hidden",
    )
    .await;
    let reg: Value = app.get(&admin, "/v1/registration").await.json().await.unwrap();
    let row = rate_of(&reg, &unit);
    rate_shown(&b, "the rate", &row).await;
    b.wait(
        "the members with their figures",
        &format!("return document.querySelectorAll('#unit-members tbody tr').length === {}", unit_members(&before)),
    )
    .await;
    // The year so far against the yearly target of service hours, as the report says.
    let year = format!("{}-01-01T00:00:00+08:00", (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y"));
    let rep: Value = app
        .get(&admin, &format!("/v1/reports/units/{unit}?from={}", year.replace('+', "%2B")))
        .await
        .json()
        .await
        .unwrap();
    let below = rep["total"]["members_below_target"].as_u64().expect("a target for a period with a from");
    b.wait(
        "the target line",
        &format!(
            "return document.querySelector('#umem-target').textContent.includes('按每人每年 20 小时')              && document.querySelector('#umem-target').textContent.includes('中 {below} 人未达标')"
        ),
    )
    .await;
    b.accessible("the unit page").await;
    b.fits_360().await;
    let walk = b.tab_walk(40).await;
    has_all(
        &walk,
        &[
            "#lang",
            "#signout",
            "#ureg-community",
            "#ureg-submit",
            "#uadd-id",
            "#uadd-team",
            "#uadd-grid",
            "#uadd-submit",
            "#uimp-file",
            "#uimp-text",
            "#uimp-submit",
            "#unit-csv",
            "#invite-who",
        ],
        "unit",
    );

    // A CSV with a bad second row (an unknown grid): that row is shown, nobody imported.
    let header = "id,name,team_id,residence_grid_id,skills,lat,lng,on_call";
    let bad = format!("{header}\nm90001,张伟,{team},c001-g1,driving,,,false\nm90002,李娜,{team},nope-g9,,,,false");
    b.type_into("#uimp-text", &bad).await;
    b.click("#uimp-submit").await;
    b.wait(
        "the refused row",
        "const li = document.querySelector('#uimp-rows li[data-line=\"3\"]'); \
         return !!li && li.textContent.includes('第 3 行') && li.textContent.includes('nope-g9') \
         && document.querySelector('#uimp-msg').dataset.kind === 'error'",
    )
    .await;
    let text = b.text("#uimp-rows li").await;
    assert!(!text.contains("line 3"), "the refusal is shown in English: {text}");
    let still: Value = app.get(&admin, &format!("/v1/members?unit_id={unit}")).await.json().await.unwrap();
    assert_eq!(unit_members(&still), unit_members(&before), "a refused import registered someone");
    b.accessible("an import refused").await;
    b.screenshot("unit-import-refused").await;

    // Fixed: both imported, the table and the rate follow.
    let good = bad.replace("nope-g9", "c001-g2");
    b.type_into("#uimp-text", &good).await;
    b.click("#uimp-submit").await;
    b.wait(
        "imported",
        "return document.querySelector('#uimp-msg').dataset.kind === 'ok' \
        && document.querySelectorAll('#uimp-rows li').length === 0",
    )
    .await;
    let after: Value = app.get(&admin, &format!("/v1/members?unit_id={unit}")).await.json().await.unwrap();
    assert_eq!(unit_members(&after), unit_members(&before) + 2);
    b.wait(
        "the new members listed",
        "return !!document.querySelector('#unit-members tr[data-member=\"m90001\"]') \
         && !!document.querySelector('#unit-members tr[data-member=\"m90002\"]')",
    )
    .await;
    let reg: Value = app.get(&admin, "/v1/registration").await.json().await.unwrap();
    let row = rate_of(&reg, &unit);
    assert_eq!(row["members"].as_u64().unwrap() as usize, unit_members(&after), "{row}");
    rate_shown(&b, "the rate after the import", &row).await;

    // The unit report downloads as CSV with the new members in it (the blob the page
    // hands the browser, read back).
    b.js("window.__csv = null; const make = URL.createObjectURL; \
          URL.createObjectURL = (blob) => { blob.text().then(t => { window.__csv = t; }); return make(blob); }; return 1")
        .await;
    b.click("#unit-csv").await;
    b.wait("the CSV", "return typeof window.__csv === 'string' && window.__csv.includes('m90002')").await;
    let csv = b.js("return window.__csv").await;
    let csv = csv.as_str().unwrap();
    // (the BOM is the server's, checked in service.rs: Blob.text() decodes it away)
    assert!(csv.trim_start_matches('\u{feff}').starts_with("编号,名称,"), "Chinese headers: {csv:.80}");
    assert!(csv.contains("未达标人数"), "the target columns");

    // One more by the form, with a refusal first (an unknown grid), shown in Chinese.
    b.type_into("#uadd-id", "m90003").await;
    b.type_into("#uadd-name", "王芳").await;
    b.type_into("#uadd-grid", "nope-g9").await;
    b.select("#uadd-team", &team).await;
    b.click("#uadd-submit").await;
    b.wait(
        "the refusal",
        "const m = document.querySelector('#uadd-msg'); return m.dataset.kind === 'error' && m.textContent.includes('网格')",
    )
    .await;
    let none = app.get(&admin, "/v1/members/m90003").await.status();
    assert_eq!(none, 404, "a refused registration registered m90003");
    b.type_into("#uadd-grid", "c001-g1").await;
    b.click("#uadd-submit").await;
    b.wait("registered", "return !!document.querySelector('#unit-members tr[data-member=\"m90003\"]')").await;

    // The unit reports (单位报到) to a paired community.
    let community = row["paired_communities"][0].as_str().expect("a paired community").to_string();
    b.select("#ureg-community", &community).await;
    b.click("#ureg-submit").await;
    b.wait("registered with the community", "return document.querySelector('#ureg-msg').dataset.kind === 'ok'").await;
    let reg: Value = app.get(&admin, "/v1/registration").await.json().await.unwrap();
    let row = rate_of(&reg, &unit);
    assert!(row["registered_communities"].as_array().unwrap().iter().any(|c| c == community.as_str()), "{row}");
    b.wait(
        "the rate line counts the community",
        &format!(
            "return document.querySelector('#unit-rate').textContent.includes('{}/{}')",
            row["registered_communities"].as_array().unwrap().len(),
            row["paired_communities"].as_array().unwrap().len()
        ),
    )
    .await;
    // A whistle naming the unit reaches the page live, through the unit's stream.
    let id = crate::unit_stream::whistle_unit(&app, &unit).await;
    b.wait(
        "the whistle on the unit page",
        &format!(
            "const li = document.querySelector('#unit-live li[data-type=\"unit.whistled\"]'); \
             return !!li && li.textContent.includes('{id}') && li.textContent.includes('吹哨报到')"
        ),
    )
    .await;
    // Sign-in links for the new members in a batch: a row naming nobody of the unit is
    // refused by its number, in Chinese, and no link is made.
    b.type_into("#invite-batch", "m90001\nm99999").await;
    b.click("#invite-batch-submit").await;
    b.wait(
        "the batch refused by row",
        "const m = document.querySelector('#invite-msg'); \
         return m.dataset.kind === 'error' && m.textContent.includes('有误的行：2')",
    )
    .await;
    assert_eq!(b.js("return document.querySelectorAll('#invite-out li').length").await, json!(0));
    b.type_into("#invite-batch", "m90001\nm90002").await;
    b.click("#invite-batch-submit").await;
    b.wait("two links", "return document.querySelectorAll('#invite-out li.invite-card').length === 2").await;

    // So does a mobilization of one of its teams.
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team], "note": "集结"})).await;
    assert_eq!(resp.status(), 201);
    let mob: Value = resp.json().await.unwrap();
    let mob = mob["id"].as_str().unwrap();
    b.wait(
        "the mobilization on the unit page",
        &format!(
            "const li = document.querySelector('#unit-live li[data-type=\"unit.mobilized\"]'); \
             return !!li && li.textContent.includes('{mob}') && li.textContent.includes('{team}')"
        ),
    )
    .await;
    b.accessible("the unit's news").await;
    b.click("#lang").await;
    b.wait("English", "return document.documentElement.lang === 'en'").await;
    b.wait("the rate in English", "return document.querySelector('#unit-rate').textContent.includes('registered')")
        .await;
    b.accessible("the unit page in English").await;
    b.screenshot("unit-imported").await;
    b.no_console_errors(&["/v1/members", "/v1/invitations/batch"]).await;
    b.close().await;
    app.stop().await;
}

/// Issue 17, Staff: the console shows the community's registration rate and, by name, the
/// members living there who have not registered.
#[tokio::test]
async fn the_console_shows_the_communitys_registration_and_who_is_missing() {
    let mut app = spawn_app().await;
    // One member living in c001 has not registered (报到) there.
    let mut city = app.city.clone();
    let absent = city.members.iter_mut().find(|m| m.residence_grid_id.starts_with("c001-")).expect("a c001 resident");
    absent.registered = false;
    let absent = absent.id.clone();
    let resp = app.put_city(&app.command(), &city).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    app.city = city;
    let staff = app.staff("c001");
    let reg: Value = app.get(&staff, "/v1/registration").await.json().await.unwrap();
    let row = reg["communities"].as_array().unwrap().iter().find(|c| c["id"] == "c001").unwrap().clone();
    assert!(row["registered"].as_u64() < row["residents"].as_u64(), "{row}");

    let driver = Driver::start().await;
    let b = driver.browser("console-registration").await;
    b.goto(&app.url("/console")).await;
    b.sign_in(&staff).await;
    b.wait(
        "the rate and who is missing",
        &format!(
            "return document.querySelector('#reg-rate').textContent.includes('{}/{}') \
             && document.querySelectorAll('#reg-missing li').length === 1 \
             && !!document.querySelector('#reg-missing li[data-member=\"{absent}\"]')",
            row["registered"], row["residents"]
        ),
    )
    .await;
    b.fits_360().await;
    b.accessible("the community's registration").await;
    b.click("#lang").await;
    b.wait("English", "return document.querySelector('#reg-rate').textContent.includes('registered')").await;
    b.screenshot("console-registration").await;
    b.no_console_errors(&[]).await;
    b.close().await;
    app.stop().await;
}
