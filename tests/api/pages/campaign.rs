//! Issue 19 in the browser: command creates a campaign on the dashboard with a site (a
//! point picked on the map fills the coordinates; the site itself at a grid's centre), a
//! shift and a requirement, sees a CSV import refused row by row, and rosters it; the member
//! rostered, on a 360 px /m, sees the shift, acknowledges it, is refused outside the
//! geofence in the page's own words (with the distance) and checks in at the site; the
//! dashboard's site × shift × role table shows acknowledged and present change live.

use super::*;
use crate::campaign::district_of;

/// The cell's figure in the dashboard's table (`required`, `planned`, `acknowledged`, ..).
fn cell(col: &str) -> String {
    format!(
        "const td = document.querySelector('#cmp-cells tr[data-site=\"s1\"][data-shift=\"shift1\"][data-role=\"queue_order\"] td[data-col=\"{col}\"]'); \
         return td ? td.textContent : null;"
    )
}

async fn cell_is(dash: &Browser, col: &str, want: u32) {
    let script = cell(col);
    dash.wait(
        &format!("{col} = {want} in the table"),
        &format!("{{ const f = () => {{ {script} }}; return f() === '{want}'; }}"),
    )
    .await;
}

#[tokio::test]
async fn command_rosters_a_campaign_on_the_dashboard_and_a_member_acknowledges_and_checks_in() {
    let app = spawn_app().await;
    let district = district_of(&app, "c001");
    let driver = Driver::start().await;
    let dash = driver.browser("dashboard-campaign").await;
    dash.goto(&app.url("/dashboard")).await;
    dash.sign_in(&app.command()).await;
    dash.wait(
        "the campaign panel",
        "return !document.querySelector('#campaigns').hidden && !!document.querySelector('#cmp-create')",
    )
    .await;

    // Create: the district, a name (Enter submits), the default times and rules.
    dash.select("#cmp-scope", &district).await;
    dash.type_into("#cmp-name", "全区核酸采样").await;
    dash.press(Key::Enter).await;
    dash.wait(
        "the campaign open",
        "const d = document.querySelector('#cmp-detail'); return !d.hidden && !!d.dataset.campaign",
    )
    .await;
    let id =
        dash.js("return document.querySelector('#cmp-detail').dataset.campaign").await.as_str().unwrap().to_string();
    dash.wait("listed", &format!("return !!document.querySelector('#cmp-list tr[data-campaign=\"{id}\"]')")).await;

    // A point picked on the city map fills the site's coordinates.
    dash.fits_360().await;
    dash.click("#cmp-site-pick").await;
    assert_eq!(dash.js("return document.querySelector('#cmp-site-pick').getAttribute('aria-pressed')").await, "true");
    dash.click("#citymap").await;
    dash.wait(
        "the picked point",
        "return document.querySelector('#cmp-site-kind').value === 'point' && document.querySelector('#cmp-site-lat').value !== ''",
    )
    .await;
    let lat: f64 =
        dash.js("return document.querySelector('#cmp-site-lat').value").await.as_str().unwrap().parse().unwrap();
    assert!((-90.0..=90.0).contains(&lat) && lat != 0.0, "{lat}");

    // The site itself at a grid's centre, in the campaign's district.
    dash.select("#cmp-site-kind", "grid").await;
    dash.type_into("#cmp-site-id", "s1").await;
    dash.type_into("#cmp-site-name", "学校门口").await;
    dash.select("#cmp-site-grid", "c001-g1").await;
    dash.click("#cmp-site-save").await;
    dash.wait("the site", "return !!document.querySelector('#cmp-sites tr[data-site=\"s1\"]')").await;

    // A shift (the default times: from the next full hour, 6 h), shared by every site.
    dash.type_into("#cmp-shift-id", "shift1").await;
    dash.click("#cmp-shift-save").await;
    dash.wait("the shift", "return !!document.querySelector('#cmp-shifts tr[data-shift=\"shift1\"]')").await;

    // One person in queue order.
    dash.select("#cmp-req-site", "s1").await;
    dash.select("#cmp-req-shift", "shift1").await;
    dash.select("#cmp-req-role", "queue_order").await;
    dash.type_into("#cmp-req-n", "1").await;
    dash.click("#cmp-req-save").await;
    cell_is(&dash, "required", 1).await;
    cell_is(&dash, "gap", 1).await;

    // A CSV with a role that is not configured: refused, every row said, nothing changed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sites.csv");
    std::fs::write(
        &file,
        "site_id,site_name,lat,lng,grid_id,shift_id,role,headcount,skills\ns1,学校门口,,,c001-g1,shift1,juggler,1,\n",
    )
    .unwrap();
    let input = dash.client.find(Locator::Css("#cmp-import-file")).await.unwrap();
    input.send_keys(file.to_str().unwrap()).await.unwrap();
    dash.click("#cmp-import-submit").await;
    dash.wait(
        "the refused row",
        "const li = document.querySelector('#cmp-import-errors li[data-line=\"2\"]'); \
         return !!li && li.dataset.code === 'unknown_role' && li.textContent.includes('第 2 行')",
    )
    .await;
    assert!(dash.text("#cmp-import-msg").await.contains("未导入"));

    // The roster.
    dash.click("#cmp-roster").await;
    dash.wait("published", "return document.querySelector('#cmp-open-msg').dataset.kind === 'ok'").await;
    cell_is(&dash, "planned", 1).await;
    let view: Value = app.get(&app.command(), &format!("/v1/campaigns/{id}")).await.json().await.unwrap();
    let member = view["cells"][0]["members"][0].as_str().expect("one member rostered").to_string();
    let site = &view["sites"][0]["location"];
    let (slat, slng) = (site["lat"].as_f64().unwrap(), site["lng"].as_f64().unwrap());
    dash.accessible("a campaign rostered").await;

    // The member's phone: the shift, acknowledged.
    let phone = driver.browser("member-campaign").await;
    phone.goto(&app.url("/m")).await;
    phone.sign_in(&app.member(&member)).await;
    let card = format!("#shifts li[data-campaign=\"{id}\"][data-shift=\"shift1\"]");
    phone.wait("the shift", &format!("return document.querySelector('{card}')?.dataset.state === 'assigned'")).await;
    assert!(phone.text(&format!("{card} .where")).await.contains("学校门口"));
    assert!(phone.text(&format!("{card} .title")).await.contains("全区核酸采样"));
    assert!(phone.text(&format!("{card} .chip")).await.contains("秩序维护"));
    phone.accessible("my shifts").await;
    phone.fits_360().await;
    let walk = phone.tab_walk(30).await;
    has_all(&walk, &["button.primary.ack", "button.checkin", "#unavail-campaign", "#unavail-submit"], "member");
    phone.click(&format!("{card} button.ack")).await;
    phone
        .wait("acknowledged", &format!("return document.querySelector('{card}').dataset.state === 'acknowledged'"))
        .await;
    cell_is(&dash, "acknowledged", 1).await;

    // About 1.1 km away: refused, and the page says how far.
    phone.geolocation(Some((slat + 0.01, slng))).await;
    phone.click(&format!("{card} button.checkin")).await;
    phone
        .wait(
            "the geofence refusal",
            &format!(
                "const m = document.querySelector('{card} .msg'); return m.dataset.kind === 'error' && m.textContent.startsWith('您距离地点约') && /1[.,]1\\s*km|11\\d\\d\\s*m/.test(m.textContent)"
            ),
        )
        .await;
    assert_eq!(phone.js(&format!("return document.querySelector('{card}').dataset.state")).await, "acknowledged");

    // At the site: checked in, and the dashboard counts them present.
    phone.geolocation(Some((slat + 0.0001, slng))).await;
    phone.click(&format!("{card} button.checkin")).await;
    phone.wait("checked in", &format!("return document.querySelector('{card}').dataset.state === 'checked_in'")).await;
    cell_is(&dash, "present", 1).await;
    let view: Value = app.get(&app.command(), &format!("/v1/campaigns/{id}")).await.json().await.unwrap();
    assert_eq!((view["cells"][0]["acknowledged"].as_u64(), view["cells"][0]["present"].as_u64()), (Some(1), Some(1)));

    // A time the member cannot serve, marked from the phone (the day after the shift).
    phone
        .js("const at = (h) => { const d = new Date(Date.now() + h * 3600000); d.setSeconds(0, 0); \
             return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }; \
             document.querySelector('#unavail-start').value = at(30); document.querySelector('#unavail-end').value = at(34); return true;")
        .await;
    phone.click("#unavail-submit").await;
    phone.wait("marked", "return document.querySelector('#unavail-msg').dataset.kind === 'ok'").await;

    // In English: the phone's card and the dashboard's panel.
    phone.click("#lang").await;
    phone.wait("English", "return document.querySelector('#shifts-h').textContent === 'My shifts'").await;
    assert_eq!(phone.text(&format!("{card} button.checkout")).await, "Check out");
    assert!(phone.text(&format!("{card} .chip")).await.contains("queue order"));
    phone.accessible("my shifts in English").await;
    phone.screenshot("member-campaign").await;
    dash.click("#lang").await;
    dash.wait("English", "return document.querySelector('#cmp-h').textContent === 'Campaign rosters'").await;
    assert!(dash.text("#cmp-cells thead").await.contains("Acknowledged"));
    dash.accessible("the campaign panel in English").await;
    dash.fits_360().await;
    dash.screenshot("dashboard-campaign").await;

    phone.no_console_errors(&["/v1/campaigns"]).await;
    dash.no_console_errors(&["/v1/campaigns"]).await;
    phone.close().await;
    dash.close().await;
    app.stop().await;
}
