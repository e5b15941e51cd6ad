//! The flows of the pages in Chromium: raising, accepting and arriving, the restart, wartime,
//! reports, and signing in with a link.

use super::*;

#[tokio::test]
async fn pages_are_static_with_a_strict_csp_and_the_maps_are_geojson() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console", "text/html"),
        ("/m", "text/html"),
        ("/dashboard", "text/html"),
        ("/reports", "text/html"),
        ("/unit", "text/html"),
        ("/web/live.js", "text/javascript"),
        ("/web/i18n.js", "text/javascript"),
        ("/web/style.css", "text/css"),
    ] {
        let resp = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}: {:?}", h["content-type"]);
        let csp = h["content-security-policy"].to_str().unwrap();
        for d in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self' ws: wss:",
            "img-src 'self' data:",
        ] {
            assert!(csp.contains(d), "{path}: CSP {csp} lacks {d}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff");
        let etag = h["etag"].clone();
        let again = http.get(app.url(path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}: a matching ETag answers 304");
    }
    // No inline script or style anywhere: every page passes the CSP above.
    for page in ["/", "/console", "/m", "/dashboard", "/reports", "/unit"] {
        let html = http.get(app.url(page)).send().await.unwrap().text().await.unwrap();
        assert!(!html.contains("style="), "{page} has an inline style");
        assert!(!html.contains("<style"), "{page} has a style element");
        for script in html.split("<script").skip(1) {
            assert!(script.contains("src=\"/web/"), "{page} has an inline script");
        }
    }
    let odd = ["/web/nope.js", "/web/..%2Fgateway%2Fmod.rs", "/web/.hidden.js", "/web/console.rs"];
    // The layout and the pages' bodies are not pages: they are served only put together.
    for bad in odd.into_iter().chain(["/web/layout.html", "/web/console.html"]) {
        let resp = http.get(app.url(bad)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{bad}");
    }

    // The GeoJSON: any role, [lng, lat], cells as hexagons.
    assert_eq!(app.get("", "/v1/geo/city").await.status(), 401);
    let member = app.member(&app.city.members[0].id);
    let resp = app.get(&member, "/v1/geo/city").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let city: Value = resp.json().await.unwrap();
    assert_eq!(city["type"], "FeatureCollection");
    let features = city["features"].as_array().unwrap();
    assert_eq!(features.len(), app.city.communities.len());
    let c001 = features.iter().find(|f| f["id"] == "c001").unwrap();
    assert_eq!(c001["properties"]["name"], app.city.communities[0].name);
    assert_eq!(c001["properties"]["community_id"], "c001");
    assert!(c001["properties"]["district_id"].is_string());
    assert_eq!(c001["geometry"]["type"], "MultiPolygon");
    let cells: usize = app.city.communities[0].grids.iter().map(|g| g.cells.len()).sum();
    assert_eq!(c001["geometry"]["coordinates"].as_array().unwrap().len(), cells);

    let staff = app.staff("c001");
    let grids: Value = app.get(&staff, "/v1/geo/communities/c001").await.json().await.unwrap();
    let features = grids["features"].as_array().unwrap();
    assert_eq!(features.len(), app.city.communities[0].grids.len());
    let g1 = &features[0];
    assert_eq!(g1["properties"]["grid_id"], "c001-g1");
    assert_eq!(g1["properties"]["community_id"], "c001");
    let ring = &g1["geometry"]["coordinates"][0][0];
    assert_eq!(ring.as_array().unwrap().len(), 7, "a hexagon, closed");
    assert_eq!(ring[0], ring[6]);
    let centre = app.city.communities[0].grids[0].cells[0].center();
    let (lng, lat) = (ring[0][0].as_f64().unwrap(), ring[0][1].as_f64().unwrap());
    assert!((lng - centre.lng).abs() < 0.01 && (lat - centre.lat).abs() < 0.01, "[lng, lat] order: {ring}");
    let bbox = grids["bbox"].as_array().unwrap();
    assert!(bbox[0].as_f64().unwrap() <= lng && lng <= bbox[2].as_f64().unwrap());
    assert_eq!(app.get(&staff, "/v1/geo/communities/nope").await.status(), 404);

    let doc: Value = http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/geo/city"]["get"].is_object());
    assert!(doc["paths"]["/v1/geo/communities/{id}"]["get"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn staff_raise_a_member_accepts_and_every_page_shows_it_live() {
    // Loopback allowed for webhooks: the dashboard registers one (nothing listens there).
    let app = spawn_app_with(&[("MUSTER_WEBHOOKS__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#)]).await;
    let driver = Driver::start().await;
    let base = app.url("");
    let (console, dash) = tokio::join!(driver.browser("console"), driver.browser("dashboard"));

    // The console: the community's three grids on the map.
    console.goto(&format!("{base}/console")).await;
    console.sign_in(&app.staff("c001")).await;
    console.wait("the grid map", "return document.querySelectorAll('#map path.area').length === 3").await;
    console.fits_360().await;

    // The dashboard: every community on the city map, coloured by the balance.
    dash.goto(&format!("{base}/dashboard")).await;
    dash.sign_in(&app.command()).await;
    dash.wait(
        "the city map and counters",
        &format!(
            "return document.querySelectorAll('#citymap path.area').length === {} \
             && document.querySelector('#count-open').textContent === '0' \
             && /b-s\\d/.test(document.querySelector('#citymap path.area[data-id=\"c001\"]').getAttribute('class'))",
            app.city.communities.len()
        ),
    )
    .await;
    dash.wait("the modes table", "return document.querySelectorAll('#modes tr').length > 1").await;

    // Raise from the console: pick grid 1 on the map with the keyboard, level Ⅲ, one person.
    console.js("document.querySelector('#map path.area[data-id=\"c001-g1\"]').focus(); return true").await;
    console.press(Key::Enter).await;
    console
        .wait(
            "grid 1 to be picked",
            "return document.querySelector('#grid').value === 'c001-g1' \
             && document.querySelector('#map path.area[data-id=\"c001-g1\"]').classList.contains('selected') \
             && document.activeElement.id === 'category'",
        )
        .await;
    console.client.find(Locator::Css("#category")).await.unwrap().select_by_value("patrol").await.unwrap();
    console.click("label.lvl-III span").await;
    console.type_into("#headcount", "1").await;
    console.type_into("#note", "3号楼 巡查").await;
    console.click("#raise-submit").await;
    console
        .wait(
            "the incident in the list",
            "return document.querySelector('#incidents li[data-status=\"open\"]') !== null",
        )
        .await;
    let id =
        console.js("return document.querySelector('#incidents li').dataset.id").await.as_str().unwrap().to_string();
    let inc = app.incident(&id).await;
    assert_eq!(
        (inc["level"].as_str(), inc["headcount"].as_u64(), inc["grid_id"].as_str()),
        (Some("III"), Some(1), Some("c001-g1"))
    );
    assert_eq!(inc["note"], "3号楼 巡查");
    console.wait("the raise confirmation", "return document.querySelector('#raise-msg').dataset.kind === 'ok'").await;
    dash.wait("the open counter", "return document.querySelector('#count-open').textContent === '1'").await;

    // One of the offered members opens the app: the open offer is there on connect.
    let offered = app.offered(&id, "offered").await;
    assert_eq!(offered.len(), 2, "level Ⅲ, headcount 1: two offers");
    let (member_id, offer_id) = offered[0].clone();
    let member = driver.browser("member").await;
    member.goto(&format!("{base}/m")).await;
    member.sign_in(&app.member(&member_id)).await;
    let card = format!("#offers li[data-offer=\"{offer_id}\"]");
    member
        .wait(
            "the offer",
            &format!(
                "const li = document.querySelector('{card}'); return !!li && li.dataset.state === 'offered' \
                 && /\\d/.test(li.querySelector('.distance').textContent) && /\\d/.test(li.querySelector('.countdown').textContent)"
            ),
        )
        .await;
    member.wait("the member's stats", "return document.querySelector('#stat-duties').textContent !== '—'").await;
    assert!(member.text(&format!("{card} .note")).await.contains("3号楼"));
    member.fits_360().await;
    member.screenshot("member-offer").await;

    // Accept: the console and the dashboard show it filled, without a reload.
    member.click(&format!("{card} button.accept")).await;
    member
        .wait(
            "the assignment",
            &format!("const li = document.querySelector('{card}'); return li.dataset.state === 'accepted' && !!li.querySelector('button.arrive')"),
        )
        .await;
    console
        .wait(
            "the incident filled in the console",
            &format!(
                "const li = document.querySelector('#incidents li[data-id=\"{id}\"]'); return li.dataset.status === 'filled' \
                 && li.querySelector('.n-accepted').textContent === '1' && li.querySelector('.n-offered').textContent === '0'"
            ),
        )
        .await;
    dash.wait(
        "the dashboard counters",
        &format!(
            "return document.querySelector('#count-open').textContent === '0' \
             && document.querySelector('#count-accepted').textContent === '1' \
             && document.querySelector('#count-offered').textContent === '0' \
             && /\\d/.test(document.querySelector('#median-fill').textContent) \
             && document.querySelector('#incidents li[data-id=\"{id}\"]').dataset.status === 'filled'"
        ),
    )
    .await;
    assert_eq!(app.incident(&id).await["status"], "filled");

    // Arrive: refused outside the geofence (the detail is shown), then counted.
    let (lat, lng) = (inc["location"]["lat"].as_f64().unwrap(), inc["location"]["lng"].as_f64().unwrap());
    member.type_into("#lat", &format!("{:.6}", lat + 0.05)).await;
    member.type_into("#lng", &format!("{lng:.6}")).await;
    member.click("#setpos").await;
    member.wait("the position sent", "return document.querySelector('#pos-msg').dataset.kind === 'ok'").await;
    member.click(&format!("{card} button.arrive")).await;
    member
        .wait(
            "the geofence refusal",
            &format!("const m = document.querySelector('{card} .msg'); return m.dataset.kind === 'error' && /\\d/.test(m.textContent)"),
        )
        .await;
    member.type_into("#lat", &format!("{lat:.6}")).await;
    member.click("#setpos").await;
    member.click(&format!("{card} button.arrive")).await;
    member.wait("the arrival", &format!("return document.querySelector('{card}').dataset.state === 'arrived'")).await;
    dash.wait("the arrival on the dashboard", "return document.querySelector('#count-arrived').textContent === '1'")
        .await;

    // The console's timeline of the incident.
    console.click(&format!("#incidents li[data-id=\"{id}\"] button[data-action=\"timeline\"]")).await;
    console
        .wait(
            "the timeline",
            &format!(
                "const tl = document.querySelector('#incidents li[data-id=\"{id}\"] ol.timeline'); \
                 const types = [...tl.children].map(li => li.dataset.type); \
                 return ['incident_raised', 'offer_sent', 'offer_accepted', 'incident_filled', 'member_arrived'].every(t => types.includes(t))"
            ),
        )
        .await;

    // The dashboard registers an outbound webhook through its form: the secret is shown
    // once, and the endpoint is listed, active.
    dash.type_into("#hook-url", "http://127.0.0.1:9/muster-hooks").await;
    dash.click("#hook-types input[value=\"mode.switched\"]").await;
    dash.click("#hook-add").await;
    dash.wait(
        "the secret, shown once",
        "return !document.querySelector('#hook-secret').hidden \
         && document.querySelector('#hook-secret-value').value.startsWith('whsec_')",
    )
    .await;
    dash.wait(
        "the endpoint listed",
        "const row = document.querySelector('#hook-table tbody tr[data-id=\"wh-1\"]'); \
         return !!row && row.textContent.includes('http://127.0.0.1:9/muster-hooks') && row.textContent.includes('启用')",
    )
    .await;
    let listed = app.get(&app.command(), "/v1/webhooks").await.json::<Value>().await.unwrap();
    assert_eq!(listed["webhooks"][0]["types"], json!(["mode.switched"]), "{listed}");

    // Keyboard: Tab walks through the main controls of each page.
    let walk = console.tab_walk(65).await;
    has_all(
        &walk,
        &[
            "#lang",
            "#signout",
            "[id=c001-g1]",
            "#grid",
            "#category",
            "#headcount",
            "#level-",
            "#note",
            "#raise-submit",
            "#show-closed",
            "[action=resolve]",
            "[action=timeline]",
            "#invite-who",
            "#invite-submit",
            "#invite-batch",
            "#invitations-show",
            "#devices-show",
        ],
        "console",
    );
    let walk = member.tab_walk(20).await;
    has_all(&walk, &["#lang", "#signout", "#duty", "#share", "#lat", "#lng", "#setpos"], "member");
    // (each datetime-local input of the audit panel is several tab stops)
    let walk = dash.tab_walk(90).await;
    has_all(
        &walk,
        &[
            "#lang",
            "#signout",
            "#zoom-in",
            "#zoom-out",
            "#pan-n",
            "#zoom-reset",
            "[district=city]",
            "[district=d01]",
            "#mobo-who",
            "#mobo-teams",
            "#mobo-dest",
            "#mobo-deadline",
            "#mobo-note",
            "#mobo-submit",
            "#audit-kind",
            "#audit-actor",
            "#audit-from",
            "#audit-to",
            "#audit-csv",
            "#geo-file",
            "#geo-export",
            "#invite-role",
            "#invite-submit",
            "#invitations-show",
            "#revoke-sub",
            "#revoke-submit",
        ],
        "dashboard",
    );

    // Every page at 360 px, in Chinese; the dashboard also in English.
    for b in [&console, &member, &dash] {
        b.fits_360().await;
        b.screenshot(b.name).await;
        // As the flow left them: a timeline open, an arrival, live counters.
        b.accessible("after raise, accept and arrive").await;
    }
    assert_eq!(dash.text("h1").await, "指挥大屏");
    dash.click("#lang").await;
    dash.wait("English", "return document.documentElement.lang === 'en'").await;
    assert_eq!(dash.text("h1").await, "Command dashboard");
    assert_eq!(dash.text("#conn").await, "Connected");
    dash.fits_360().await;
    dash.screenshot("dashboard-en").await;
    for (b, selector, english) in [(&console, "#raise-h", "Raise an incident"), (&member, "#offers-h", "Offers")] {
        b.click("#lang").await;
        b.wait("English", "return document.documentElement.lang === 'en'").await;
        assert_eq!(b.text(selector).await, english, "{}", b.name);
        b.fits_360().await;
    }
    assert!(member.text("#pos-text").await.starts_with("Position: "));

    for b in [&console, &member, &dash] {
        b.no_console_errors(&[]).await;
    }
    for b in [console, member, dash] {
        b.close().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_member_page_reconnects_and_resumes_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut settings = test_settings(dir.path(), &[]);
    settings.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let start =
        |s: muster::settings::Settings| async move { app::build(s, Options::default()).await.expect("app starts") };
    let mut t = TestApp {
        app: Some(start(settings.clone()).await),
        addr: format!("127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        keys: TokenKeys::new(SECRET),
        city: test_city(),
        _dir: None,
    };
    assert_eq!(t.put_city(&t.command(), &t.city).await.status(), 200);
    let staff = t.staff("c001");
    let raise = json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1});

    // An offer reaches the member's page; then it is cancelled.
    let a = t.raise(&staff, raise.clone()).await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let (member_id, a_offer) = t.offered(&a_id, "offered").await[0].clone();
    let driver = Driver::start().await;
    let member = driver.browser("member-restart").await;
    member.goto(&t.url("/m")).await;
    member.sign_in(&t.member(&member_id)).await;
    member.wait("offer A", &format!("return !!document.querySelector('#offers li[data-offer=\"{a_offer}\"]')")).await;
    let cancelled: Value =
        t.post(&staff, &format!("/v1/incidents/{a_id}/cancel"), json!({})).await.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    member
        .wait(
            "offer A withdrawn",
            "return document.querySelectorAll('#offers li').length === 0 && !document.querySelector('#notice').hidden",
        )
        .await;
    let seq_key = format!("muster.seq.m.member:{member_id}");
    let seq_before = member.js(&format!("return Number(sessionStorage.getItem('{seq_key}'))")).await.as_u64().unwrap();
    assert!(seq_before >= 2, "the page keeps the last seq it saw: {seq_before}");

    // The server stops; the page notices and keeps trying.
    t.app.take().unwrap().stop().await.unwrap();
    member.wait("the page to notice", "return document.querySelector('#conn').dataset.state !== 'connected'").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The same data and port again: the page reconnects by itself (after_seq) and gets a
    // new offer, once.
    t.app = Some(start(settings).await);
    member.wait("the page to reconnect", "return document.querySelector('#conn').dataset.state === 'connected'").await;
    let b = t.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 3})).await;
    let b_id = b["id"].as_str().unwrap().to_string();
    let b_offers = t.offered(&b_id, "offered").await;
    let (_, b_offer) = b_offers
        .iter()
        .find(|(m, _)| *m == member_id)
        .unwrap_or_else(|| panic!("{member_id} is among the nearest and free again: {b_offers:?}"))
        .clone();
    member
        .wait(
            "offer B after the restart",
            &format!(
                "const lis = document.querySelectorAll('#offers li'); \
                 return lis.length === 1 && lis[0].dataset.offer === '{b_offer}' && lis[0].dataset.incident === '{b_id}'"
            ),
        )
        .await;
    let seq_after = member.js(&format!("return Number(sessionStorage.getItem('{seq_key}'))")).await.as_u64().unwrap();
    assert!(seq_after > seq_before, "the seq moved on: {seq_before} -> {seq_after}");
    // Nothing was handled twice: still one card, and A did not come back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(member.js("return document.querySelectorAll('#offers li').length").await, json!(1));
    member.fits_360().await;
    member.screenshot("member-after-restart").await;
    // While the server was down the browser logged the refused connections; nothing else.
    member.no_console_errors(&["WebSocket connection to", "ERR_CONNECTION_REFUSED"]).await;
    member.close().await;
    t.stop().await;
}

#[tokio::test]
async fn wartime_modes_mobilizations_and_whistles_on_the_pages() {
    let app = spawn_app().await;
    let driver = Driver::start().await;
    let base = app.url("");
    let city = &app.city;
    let street = &city.communities[0].street_id;
    let district = city.streets.iter().find(|s| &s.id == street).unwrap().district_id.clone();
    // A member of an assault team, and where the team reports.
    let (member_id, team_id, paired) = city
        .members
        .iter()
        .find_map(|m| {
            let t = city.teams.iter().find(|t| Some(&t.id) == m.team_id.as_ref())?;
            (t.kind == muster::domain::org::TeamKind::Assault)
                .then(|| (m.id.clone(), t.id.clone(), t.community_id.clone()))
        })
        .expect("the test city has assault team members");
    let communities: Value = app.get(&app.command(), "/v1/communities").await.json().await.unwrap();
    let centre = communities.as_array().unwrap().iter().find(|c| c["id"] == paired.as_str()).unwrap()["center"].clone();

    let (dash, console, member) = tokio::join!(
        driver.browser("dashboard-wartime"),
        driver.browser("console-whistle"),
        driver.browser("member-order")
    );
    dash.goto(&format!("{base}/dashboard")).await;
    dash.sign_in(&app.command()).await;
    member.goto(&format!("{base}/m")).await;
    member.sign_in(&app.member(&member_id)).await;
    console.goto(&format!("{base}/console")).await;
    console.sign_in(&app.staff("c001")).await;

    // 平战转换 from the dashboard: the switch asks for a reason in a dialog.
    let switch = format!("#modes button[data-district=\"{district}\"]");
    dash.wait("the modes", &format!("return !!document.querySelector('{switch}')")).await;
    dash.click(&switch).await;
    dash.wait(
        "the reason dialog",
        "return document.querySelector('#ask').open && document.activeElement.id === 'ask-input'",
    )
    .await;
    dash.type_into("#ask-input", "演练").await;
    dash.press(Key::Enter).await;
    dash.wait(
        "the district in wartime",
        &format!("return document.querySelector('#modes tr[data-district=\"{district}\"]').dataset.mode === 'wartime'"),
    )
    .await;
    let modes: Value = app.get(&app.command(), "/v1/modes").await.json().await.unwrap();
    let d = modes["districts"].as_array().unwrap().iter().find(|d| d["id"] == district.as_str()).unwrap();
    assert_eq!(d["mode"], "wartime");

    // A mobilization: the member's page gets the order; ack and report move the dashboard.
    let resp = app.post(&app.command(), "/v1/mobilizations", json!({"teams": [team_id], "note": "集结"})).await;
    assert_eq!(resp.status(), 201);
    let mob: Value = resp.json().await.unwrap();
    let mob_id = mob["id"].as_str().unwrap();
    let order = format!("#orders li[data-mobilization=\"{mob_id}\"]");
    member
        .wait(
            "the order",
            &format!("return !!document.querySelector('{order}') && !document.querySelector('#orders-card').hidden"),
        )
        .await;
    let panel = format!("#mobs article[data-mobilization=\"{mob_id}\"]");
    dash.wait("the mobilization panel", &format!("return !!document.querySelector('{panel} details')")).await;
    member.click(&format!("{order} button.ack")).await;
    member
        .wait("acknowledged", &format!("return document.querySelector('{order}').dataset.state === 'acknowledged'"))
        .await;
    dash.wait(
        "the acknowledgement",
        &format!("return /确认 1/.test(document.querySelector('{panel} .counts').textContent)"),
    )
    .await;
    member.type_into("#lat", &format!("{:.6}", centre["lat"].as_f64().unwrap())).await;
    member.type_into("#lng", &format!("{:.6}", centre["lng"].as_f64().unwrap())).await;
    member.click("#setpos").await;
    member.click(&format!("{order} button.report")).await;
    member.wait("reported", &format!("return document.querySelector('{order}').dataset.state === 'reported'")).await;
    dash.wait("the report", &format!("return /报到 1/.test(document.querySelector('{panel} .counts').textContent)"))
        .await;
    member.fits_360().await;
    member.screenshot("member-order").await;

    // A whistle from the console (confirmed in its dialog) waits on the dashboard until
    // the incident is cancelled.
    let staff = app.staff("c001");
    let inc = app
        .raise(&staff, json!({"grid_id": "c001-g2", "category": "flood_control", "level": "II", "headcount": 50}))
        .await;
    let id = inc["id"].as_str().unwrap();
    let card = format!("#incidents li[data-id=\"{id}\"]");
    console.wait("the incident", &format!("return document.querySelector('{card}')?.dataset.status === 'open'")).await;
    console.click(&format!("{card} button[data-action=\"whistle\"]")).await;
    console
        .wait(
            "the whistle dialog",
            "return document.querySelector('#ask').open && document.activeElement.id === 'ask-ok'",
        )
        .await;
    console.press(Key::Enter).await;
    console.wait("the whistle on the card", &format!("return !document.querySelector('{card} .whistle').hidden")).await;
    dash.wait("the whistle awaiting", &format!("return !!document.querySelector('#whistles li[data-id=\"{id}\"]')"))
        .await;
    console.fits_360().await;
    dash.fits_360().await;
    console.screenshot("console-whistle").await;
    dash.screenshot("dashboard-wartime").await;
    // Wartime, a mobilization order and a whistle on the pages: still accessible.
    for b in [&dash, &console, &member] {
        b.accessible("in wartime with a mobilization and a whistle").await;
    }
    console.click(&format!("{card} button[data-action=\"cancel\"]")).await;
    console.wait("the cancel dialog", "return document.querySelector('#ask').open").await;
    console.type_into("#ask-input", "误报").await;
    console.click("#ask-ok").await;
    console.wait("the incident cancelled", &format!("return !document.querySelector('{card}')")).await;
    dash.wait("no whistle waiting", "return document.querySelectorAll('#whistles li').length === 0").await;
    assert_eq!(app.incident(id).await["status"], "cancelled");

    for b in [&dash, &console, &member] {
        b.no_console_errors(&[]).await;
    }
    for b in [dash, console, member] {
        b.close().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_reports_page_shows_a_community_report_and_an_offer_says_why_you() {
    let app = spawn_app().await;
    let driver = Driver::start().await;

    // Staff open the reports page: it starts on their own community, total first.
    let reports = driver.browser("reports").await;
    reports.goto(&app.url("/reports")).await;
    reports.sign_in(&app.staff("c001")).await;
    reports.wait("the report table", "return document.querySelectorAll('#rep-table tbody tr').length >= 2").await;
    let first = reports.js("return document.querySelector('#rep-table tbody tr td').textContent").await;
    assert_eq!(first, json!("c001"));
    reports.fits_360().await;
    reports.screenshot("reports").await;
    reports.no_console_errors(&[]).await;
    reports.close().await;

    // A member's offer card says why they were chosen.
    let inc = app
        .raise(&app.staff("c001"), json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": 1}))
        .await;
    let id = inc["id"].as_str().unwrap();
    let (member_id, offer_id) = app.offered(id, "offered").await[0].clone();
    // The reasons the offer carries, and the line the page must make of them (the Chinese
    // strings of src/web/i18n.js, joined with 、).
    let mut ws = app.ws(&app.member(&member_id), None).await;
    let offer = ws.expect("offer").await;
    assert_eq!(offer["data"]["offer_id"], offer_id.as_str());
    let codes: Vec<&str> = offer["data"]["why"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(!codes.is_empty(), "a c001 member offered a c001 patrol has reasons: {offer}");
    let zh = |code: &str| match code {
        "near" => "离事发地近",
        "skills" => "具备所需技能",
        "lives_here" => "住在本网格",
        "team_paired" => "所在队伍对口本社区",
        "reliable" => "响应可靠",
        "less_hard_work" => "承担的困难任务较少",
        "rested" => "近期未值守",
        "whistle" => "所在单位被吹哨",
        other => panic!("a reason the test does not know: {other}"),
    };
    let expected = format!("为什么是您：{}", codes.iter().map(|c| zh(c)).collect::<Vec<_>>().join("、"));
    let member = driver.browser("member-why").await;
    member.goto(&app.url("/m")).await;
    member.sign_in(&app.member(&member_id)).await;
    let line = format!("#offers li[data-offer=\"{offer_id}\"] .why");
    let why =
        format!("const p = document.querySelector('{line}'); return !!p && !p.hidden && p.textContent.length > 0");
    member.wait("the why-you line", &why).await;
    assert_eq!(member.text(&line).await, expected);
    member.screenshot("member-why").await;
    member.no_console_errors(&[]).await;
    member.close().await;
    app.stop().await;
}

/// Issue 17: a member opens their sign-in link on a 360 px phone and lands on /m signed in;
/// the short-lived access token is refreshed underneath a half-filled form without losing
/// a character; when the device is revoked the sign-in card comes back, and signing in
/// again puts the typed text back. Staff make a link (and its QR code) on the console.
#[tokio::test]
async fn a_member_signs_in_with_a_link_and_a_refresh_keeps_what_they_typed() {
    let app = spawn_app_with(&[("MUSTER_AUTH__ACCESS_TTL_S", "4")]).await;
    let staff = app.staff("c001");
    let m = app.city.members[0].id.clone();
    let driver = Driver::start().await;
    let (phone, console) = tokio::join!(driver.browser("member-join"), driver.browser("console-invite"));

    // Staff make the link on the console: one card with its QR code.
    console.goto(&app.url("/console")).await;
    console.sign_in(&staff).await;
    console.wait("the invite panel", "return !document.querySelector('#invite').hidden").await;
    console.type_into("#invite-who", &m).await;
    console.click("#invite-submit").await;
    console
        .wait(
            "a link and its QR code",
            "const li = document.querySelector('#invite-out li.invite-card'); \
             return !!li && li.querySelector('img.qr').naturalWidth > 0 \
             && /\\/join#[a-z2-7]{26}$/.test(li.querySelector('input.invite-link').value)",
        )
        .await;
    let link = console.js("return document.querySelector('#invite-out input.invite-link').value").await;
    let link = link.as_str().unwrap().to_string();
    assert!(link.starts_with(&app.url("/join#")), "{link}");
    console.screenshot("console-invite").await;
    console.no_console_errors(&[]).await;

    // The phone opens it: /m, signed in, the code gone from the address.
    phone.goto(&link).await;
    phone
        .wait(
            "the member page, signed in",
            "return location.pathname === '/m' && document.querySelector('#conn').dataset.state === 'connected' \
             && document.querySelector('#signin').hidden",
        )
        .await;
    assert_eq!(phone.js("return location.hash").await, json!(""));
    phone.fits_360().await;
    phone.wait("the member's record", "return document.querySelector('#me-name').textContent.trim() !== ''").await;
    phone
        .wait(
            "my devices: this one",
            "const li = document.querySelectorAll('#devices-card li'); return li.length === 1 && !!li[0].querySelector('button.revoke')",
        )
        .await;

    // Half a form typed; the 4 s access token is renewed twice underneath it.
    phone.type_into("#lat", "30.612345").await;
    const TOKEN: &str = "return sessionStorage.getItem('muster.access')";
    let first = phone.js(TOKEN).await;
    for round in 0..2 {
        let before = phone.js(TOKEN).await;
        phone
            .wait(&format!("refresh {round}"), &format!("return sessionStorage.getItem('muster.access') !== {before}"))
            .await;
    }
    let now = phone.js(TOKEN).await;
    assert_ne!(now, first);
    // Past the first token's life: the socket came back with a fresh one, the text stayed.
    phone
        .wait(
            "connected again with the text kept",
            "return document.querySelector('#conn').dataset.state === 'connected' \
             && document.querySelector('#lat').value === '30.612345' && document.querySelector('#signin').hidden",
        )
        .await;
    assert_eq!(app.get(now.as_str().unwrap(), &format!("/v1/members/{m}")).await.status(), 200);
    assert_eq!(app.get(first.as_str().unwrap(), &format!("/v1/members/{m}")).await.status(), 401, "expired");

    // Staff revoke the device: the next refresh is refused, the sign-in card comes back and
    // the typed text is still there.
    let devices: Value = app.get(&staff, &format!("/v1/sessions?member_id={m}")).await.json().await.unwrap();
    let family = devices[0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.post(&staff, &format!("/v1/sessions/{family}/revoke"), json!({})).await.status(), 204);
    phone
        .wait(
            "the sign-in card",
            "return !document.querySelector('#signin').hidden && document.querySelector('#lat').value === '30.612345'",
        )
        .await;
    phone.screenshot("member-signed-out-keeps-text").await;
    // Signing in again (a pasted token this time) reloads the page: the text comes back.
    phone.sign_in(&app.member(&m)).await;
    phone.wait("the typed text back", "return document.querySelector('#lat').value === '30.612345'").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(phone.js("return document.querySelector('#lat').value").await, json!("30.612345"));
    phone.no_console_errors(&["401", "WebSocket connection to"]).await;
    phone.close().await;
    console.close().await;
    app.stop().await;
}
