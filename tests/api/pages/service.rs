//! Issue 17: peacetime service in the browser. A member at 360 px takes an order, checks in
//! with the phone's position and out with the one typed when GPS fails, and sees the rating;
//! staff post an order on the console, and rate the work of the member who took it.

use muster::domain::dispatcher::rfc3339;
use muster::engine::now_ms;

use super::*;

/// An open order of `slots` places in `grid`, posted by `staff` through the API; a patrol
/// (easy, no skills): every member of the community may take it.
pub(crate) async fn post_order(app: &TestApp, staff: &str, grid: &str, slots: u32) -> Value {
    let now = now_ms();
    let body = json!({
        "grid_id": grid,
        "category": "patrol",
        "title": "楼栋巡查",
        "note": "3号楼",
        "window_start": rfc3339(now - 60_000),
        "window_end": rfc3339(now + 24 * 3_600_000),
        "slots": slots,
    });
    let resp = app.post(staff, "/v1/orders", body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

/// The order's place.
fn place(order: &Value) -> (f64, f64) {
    (order["location"]["lat"].as_f64().unwrap(), order["location"]["lng"].as_f64().unwrap())
}

/// The one claim of `member` on order `id`, as command reads it.
async fn claim_of(app: &TestApp, id: &str, member: &str) -> Value {
    let o: Value = app.get(&app.command(), &format!("/v1/orders/{id}")).await.json().await.unwrap();
    o["claims"].as_array().unwrap().iter().find(|c| c["member_id"] == member).cloned().unwrap_or(Value::Null)
}

/// Issue 17: a member on a 360 px phone takes an order, checks in with the phone's
/// position (GPS, emulated through the DevTools protocol) and out with the position typed
/// when GPS fails; staff rate the work through the API and the page shows the rating and
/// the points; an exchange beyond the balance is refused in the page's own words.
#[tokio::test]
async fn a_member_takes_an_order_checks_in_and_out_and_sees_the_rating() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let m = app.city.members[0].id.clone();
    let order = post_order(&app, &staff, "c001-g1", 2).await;
    let id = order["id"].as_str().unwrap().to_string();
    let (lat, lng) = place(&order);

    let driver = Driver::start().await;
    let phone = driver.browser("member-service").await;
    phone.goto(&app.url("/m")).await;
    phone.sign_in(&app.member(&m)).await;
    let card = format!("#svc-list li[data-order=\"{id}\"]");
    phone.wait("the open order", &format!("return document.querySelector('{card}')?.dataset.state === 'open'")).await;
    assert!(phone.text(&format!("{card} .title")).await.contains("楼栋巡查"));
    assert!(
        phone
            .js(&format!("return document.querySelector('{card} a.nav').href"))
            .await
            .as_str()
            .unwrap()
            .starts_with("geo:")
    );

    // 接单.
    phone.click(&format!("{card} button.claim")).await;
    phone.wait("taken", &format!("return document.querySelector('{card}').dataset.state === 'claimed'")).await;
    assert_eq!(claim_of(&app, &id, &m).await["assigned"], json!(false));

    // Check in where the phone's GPS says: at the order's place, 20 m north.
    phone.geolocation(Some((lat + 0.00018, lng))).await;
    phone.click(&format!("{card} button.checkin")).await;
    phone.wait("checked in", &format!("return document.querySelector('{card}').dataset.state === 'checked_in'")).await;
    // (the stream's frame may redraw the card before the answer comes: wait for the words)
    phone
        .wait(
            "how it was recorded",
            &format!("return document.querySelector('{card} .msg').textContent === '已按手机定位记录。'"),
        )
        .await;
    let c = claim_of(&app, &id, &m).await;
    assert_eq!(c["checkin"]["flagged"], json!(false), "{c}");
    let d = c["checkin"]["distance_m"].as_f64().unwrap();
    assert!((10.0..40.0).contains(&d), "the GPS position was used: {d} m");

    // GPS fails: the member types the position (55 m east) and checks out with it.
    phone.geolocation(None).await;
    phone.type_into("#lat", &format!("{lat:.6}")).await;
    phone.type_into("#lng", &format!("{:.6}", lng + 0.00058)).await;
    phone.click("#setpos").await;
    phone.click(&format!("{card} button.checkout")).await;
    phone
        .wait("checked out", &format!("return document.querySelector('{card}').dataset.state === 'checked_out'"))
        .await;
    // (the stream's frame may redraw the card before the answer comes: wait for the words)
    phone
        .wait(
            "how it was recorded",
            &format!(
                "return document.querySelector('{card} .msg').textContent === '定位失败，已按手动输入的位置记录。'"
            ),
        )
        .await;
    let c = claim_of(&app, &id, &m).await;
    assert_eq!(c["checkout"]["flagged"], json!(false), "{c}");
    let d = c["checkout"]["distance_m"].as_f64().unwrap();
    assert!((40.0..80.0).contains(&d), "the typed position was used: {d} m");

    // Staff rate the work (一事一评); the page shows it, and the points the record has.
    let resp = app.post(&staff, "/v1/ratings", json!({"order_id": id, "member_id": m, "rating": "very_good"})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    phone.wait("rated", &format!("return document.querySelector('{card}').dataset.state === 'rated'")).await;
    assert!(phone.text(&format!("{card} .status")).await.contains("很好"));
    phone
        .wait("the rating notice", "return document.querySelector('#svc-msg').textContent.startsWith('收到评价：很好')")
        .await;
    let me: Value = app.get(&app.command(), &format!("/v1/members/{m}")).await.json().await.unwrap();
    let points = format!("{:.1}", me["points_balance"].as_f64().unwrap());
    phone
        .wait("the points", &format!("return document.querySelector('#stat-points').textContent === '{points}'"))
        .await;

    // An exchange beyond the balance: refused, in the page's words (not the server's detail).
    let balance = me["points_balance"].as_f64().unwrap();
    phone.type_into("#ex-amount", &format!("{}", balance.floor() + 5.0)).await;
    phone.click("#ex-submit").await;
    phone.wait("the refusal", "return document.querySelector('#ex-msg').dataset.kind === 'error'").await;
    assert_eq!(phone.text("#ex-msg").await, "余额不足。");

    // Live: staff assign the member a second order (社区派单), then cancel it; the page
    // follows the `order.assigned` and `order.cancelled` frames without a reload.
    let second = post_order(&app, &staff, "c001-g2", 1).await;
    let sid = second["id"].as_str().unwrap().to_string();
    let resp = app.post(&staff, &format!("/v1/orders/{sid}/assign"), json!({"member_id": m})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let card2 = format!("#svc-list li[data-order=\"{sid}\"]");
    phone
        .wait(
            "the assigned order",
            &format!(
                "const li = document.querySelector('{card2}'); return !!li && li.dataset.state === 'claimed' \
                 && li.querySelector('.status').textContent === '社区已派给您，到达后请签到。' && !!li.querySelector('button.checkin')"
            ),
        )
        .await;
    let resp = app.post(&staff, &format!("/v1/orders/{sid}/cancel"), json!({"reason": "天气原因"})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    phone
        .wait(
            "the cancelled order",
            &format!(
                "return document.querySelector('{card2}').dataset.state === 'cancelled' \
                 && !document.querySelector('{card2} button') \
                 && document.querySelector('#svc-msg').textContent.includes('天气原因')"
            ),
        )
        .await;

    // A hard order is kept first for the members who have done the least hard work, the
    // nearest first among equals: this one (nobody has done hard work), at whose last
    // reported place (typed above) it stands; the `order.offer` says so.
    let now = now_ms();
    let at: (f64, f64) = (format!("{lat:.6}").parse().unwrap(), format!("{:.6}", lng + 0.00058).parse().unwrap());
    let hard = json!({"location": {"lat": at.0, "lng": at.1}, "category": "patrol", "difficulty": 5, "title": "高空清理",
        "window_start": rfc3339(now - 60_000), "window_end": rfc3339(now + 3_600_000), "slots": 1});
    let resp = app.post(&staff, "/v1/orders", hard).await;
    assert_eq!(resp.status(), 201);
    let hid = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    phone
        .wait(
            "the hard order kept for this member",
            &format!(
                "return document.querySelector('#svc-msg').textContent.startsWith('困难订单「高空清理」优先留给您') \
                 && !!document.querySelector('#svc-list li[data-order=\"{hid}\"] button.claim')"
            ),
        )
        .await;

    phone.fits_360().await;
    // Keyboard: the service controls are tab stops.
    let walk = phone.tab_walk(30).await;
    has_all(&walk, &["#duty", "a.nav", "#ex-from", "#ex-amount", "#ex-submit", "#setpos"], "member");
    phone.accessible("/m after the service flow").await;
    phone.screenshot("member-service").await;
    phone.click("#lang").await;
    phone
        .wait("English", &format!("return document.querySelector('{card} .status').textContent.includes('Very good')"))
        .await;
    // What the page said before the switch is said again in English.
    assert_eq!(phone.text("#ex-msg").await, "Not enough balance.");
    let said = phone.text("#svc-msg").await;
    assert!(said.starts_with("The hard order “高空清理” is kept for you until "), "{said}");
    phone.screenshot("member-service-en").await;
    // The browser logs the refused request itself (a 409); nothing else.
    phone.no_console_errors(&["/exchange - Failed to load resource: the server responded with a status of 409"]).await;
    phone.close().await;
    app.stop().await;
}

/// Issue 17: staff post an order on the console; a member takes it and works it (through
/// the API); the console shows the claim live and staff rate the work there (一事一评).
/// Staff also assign a member, cancel an order with a reason, and whistle a named unit.
#[tokio::test]
async fn staff_post_an_order_on_the_console_and_rate_the_work() {
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let driver = Driver::start().await;
    let console = driver.browser("console-service").await;
    console.goto(&app.url("/console")).await;
    console.sign_in(&staff).await;
    console.wait("the order form", "return document.querySelectorAll('#svc-grid option').length === 3").await;

    // Post: grid 2, a patrol, one place, the default window (now, three hours).
    console.type_into("#svc-title", "独居老人探访").await;
    console.select("#svc-grid", "c001-g2").await;
    console.select("#svc-category", "patrol").await;
    console.type_into("#svc-slots", "1").await;
    console.type_into("#svc-note", "5号楼").await;
    console.click("#svc-submit").await;
    console.wait("posted", "return document.querySelector('#svc-post-msg').dataset.kind === 'ok'").await;
    let orders: Value = app.get(&staff, "/v1/orders").await.json().await.unwrap();
    let order =
        orders.as_array().unwrap().iter().find(|o| o["title"] == "独居老人探访").expect("the order posted").clone();
    assert_eq!((order["grid_id"].as_str(), order["category"].as_str()), (Some("c001-g2"), Some("patrol")));
    assert_eq!((order["slots"].as_u64(), order["note"].as_str()), (Some(1), Some("5号楼")));
    let id = order["id"].as_str().unwrap().to_string();
    let card = format!("#svc-orders li[data-order=\"{id}\"]");
    console
        .wait("the order's card", &format!("return document.querySelector('{card}')?.dataset.status === 'open'"))
        .await;

    // A member takes it and works it from their phone (the API here): the console follows.
    let m = app.city.members[0].id.clone();
    let (lat, lng) = place(&order);
    let member = app.member(&m);
    for (path, body) in [
        ("claim", json!({})),
        ("checkin", json!({"lat": lat, "lng": lng})),
        ("checkout", json!({"lat": lat, "lng": lng})),
    ] {
        let resp = app.post(&member, &format!("/v1/orders/{id}/{path}"), body).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.text().await.unwrap());
    }
    let row = format!("{card} .claims li[data-member=\"{m}\"]");
    console.wait("the claim, ready to rate", &format!("return !!document.querySelector('{row} select.rating')")).await;
    console.select(&format!("{row} select.rating"), "good").await;
    console.click(&format!("{row} button.rate")).await;
    console.wait("rated", &format!("return document.querySelector('{row}')?.dataset.rated === 'good'")).await;
    assert_eq!(claim_of(&app, &id, &m).await["rating"], "good");

    // Assign (社区派单) on a second order, then cancel it with a reason.
    let second = post_order(&app, &staff, "c001-g1", 2).await;
    let sid = second["id"].as_str().unwrap().to_string();
    let card2 = format!("#svc-orders li[data-order=\"{sid}\"]");
    console
        .wait("the second order", &format!("return !!document.querySelector('{card2} select.assign-who option')"))
        .await;
    let who = app.city.members[1].id.clone();
    console.select(&format!("{card2} select.assign-who"), &who).await;
    console.click(&format!("{card2} button.assign")).await;
    console
        .wait("assigned", &format!("return !!document.querySelector('{card2} .claims li[data-member=\"{who}\"]')"))
        .await;
    assert_eq!(claim_of(&app, &sid, &who).await["assigned"], json!(true));
    console.click(&format!("{card2} button.cancel")).await;
    console.wait("the cancel dialog", "return document.querySelector('#ask').open").await;
    console.type_into("#ask-input", "天气原因").await;
    console.click("#ask-ok").await;
    console.wait("cancelled", &format!("return !document.querySelector('{card2}')")).await;
    let o: Value = app.get(&staff, &format!("/v1/orders/{sid}")).await.json().await.unwrap();
    assert_eq!(o["status"], "cancelled");

    // A whistle to one named unit (one that serves the community, first in the list).
    let inc = app
        .raise(&staff, json!({"grid_id": "c001-g2", "category": "flood_control", "level": "II", "headcount": 20}))
        .await;
    let iid = inc["id"].as_str().unwrap().to_string();
    let icard = format!("#incidents li[data-id=\"{iid}\"]");
    let pick = format!("{icard} select.whistle-to optgroup option");
    console.wait("the units to whistle", &format!("return !!document.querySelector('{pick}')")).await;
    let unit = console.js(&format!("return document.querySelector('{pick}').value")).await;
    let unit = unit.as_str().unwrap().strip_prefix("unit:").unwrap().to_string();
    console.select(&format!("{icard} select.whistle-to"), &format!("unit:{unit}")).await;
    console.click(&format!("{icard} button[data-action=\"whistle\"]")).await;
    console.wait("the whistle dialog", "return document.querySelector('#ask').open").await;
    console.click("#ask-ok").await;
    console
        .wait("the whistle on the card", &format!("return !document.querySelector('{icard} .whistle').hidden"))
        .await;
    let units: Vec<String> = app.incident(&iid).await["whistles"][0]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(units, vec![unit]);

    console.fits_360().await;
    let walk = console.tab_walk(90).await;
    has_all(
        &walk,
        &[
            "#whistle-to-",
            "#svc-title",
            "#svc-grid",
            "#svc-category",
            "#svc-slots",
            "#svc-difficulty",
            "#svc-start",
            "#svc-end",
            "#svc-note",
            "#svc-submit",
            "#svc-show-closed",
        ],
        "console",
    );
    console.accessible("/console after the service flow").await;
    console.screenshot("console-service").await;
    console.no_console_errors(&[]).await;
    console.close().await;
    app.stop().await;
}
