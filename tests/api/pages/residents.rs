//! Issue #20 in the browser: a resident opens the community's link (from the QR code staff
//! print on /console) on a 360 px phone, signs in with the code the SMS gateway on loopback
//! received, and asks for help; staff see the request arrive in the console's inbox, open
//! it and dispatch it; a member takes the order on /m and checks in and out where it is
//! (geofenced, the phone's GPS emulated); the resident sees each step live, then confirms
//! and rates. Then 创单: the member proposes a service on /m, staff approve it on the
//! console and the member sees it approved (an order they hold). Every page: no serious or
//! critical axe-core violation, the new controls reachable by Tab, in Chinese and English.

use super::*;
use crate::residents::spawn_with_sms;

/// `#sel` text is `want` (read again until it is, since frames redraw).
fn text_is(sel: &str, want: &str) -> String {
    format!("return document.querySelector({sel:?})?.textContent.trim() === {want:?}")
}

fn status_is(sel: &str, status: &str) -> String {
    format!("return document.querySelector({sel:?})?.dataset.status === {status:?}")
}

#[tokio::test]
async fn a_resident_asks_staff_dispatch_a_member_serves_and_the_resident_rates_and_a_proposal_is_approved() {
    let (app, mut sms) = spawn_with_sms(&[]).await;
    let staff = app.staff("c001");
    let m = app.city.members[0].id.clone();
    let driver = Driver::start().await;

    // Staff: the inbox is empty; the community's QR code, with its link under it, printable.
    let desk = driver.browser("console-requests").await;
    desk.goto(&app.url("/console")).await;
    desk.sign_in(&staff).await;
    desk.wait("the inbox", "return document.querySelector('#req-list')?.dataset.loaded === 'true'").await;
    assert!(!desk.js("return document.querySelector('#req-none').hidden").await.as_bool().unwrap());
    desk.click("#req-qr-show").await;
    desk.wait(
        "the QR code",
        "return !!document.querySelector('#req-qr img.qr') && !document.querySelector('#req-qr').hidden",
    )
    .await;
    let link = desk.text("#req-qr-link").await;
    assert_eq!(link, app.url("/r#c001"), "the link written under the code");
    // Printing shows the code and its link, and nothing else of the page.
    desk.js("document.body.classList.add('print-qr'); return true").await;
    desk.driver_cmd("goog/cdp/execute", json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": "print"}}))
        .await;
    let seen = desk
        .js("const v = (s) => getComputedStyle(document.querySelector(s)).visibility; \
             return [v('#req-qr img.qr'), v('#req-qr-link'), v('#req-h'), v('#map-h'), v('#req-qr-print')]")
        .await;
    assert_eq!(seen, json!(["visible", "visible", "hidden", "hidden", "hidden"]), "printed: {seen}");
    desk.driver_cmd("goog/cdp/execute", json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": ""}})).await;
    desk.js("document.body.classList.remove('print-qr'); return true").await;

    // The resident opens the link on their phone and signs in with the code sent to it.
    let phone = driver.browser("resident").await;
    phone.goto(&link).await;
    phone.wait("the sign-in card", "return !document.querySelector('#r-signin').hidden").await;
    phone.type_into("#r-phone", "138 0013 8000").await;
    phone.click("#r-send").await;
    let (to, code) = sms.code().await;
    assert_eq!(to, "13800138000");
    phone.wait("the code field", "return !document.querySelector('#r-code-form').hidden").await;
    // A wrong code first: refused in the page's words.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    phone.type_into("#r-code", wrong).await;
    phone.click("#r-verify").await;
    phone.wait("the refusal", &text_is("#r-signin-msg", "验证码不正确，请核对短信后重试。")).await;
    phone.type_into("#r-code", &code).await;
    phone.click("#r-verify").await;
    phone
        .wait(
            "the resident's page",
            "return !document.querySelector('#r-app').hidden && document.querySelector('#r-list').dataset.loaded === 'true'",
        )
        .await;
    phone.select("#r-category", "elderly_help").await;
    phone.select("#r-grid", "c001-g1").await;
    phone.type_into("#r-desc", "帮忙取药，腿脚不便").await;
    phone.click("#r-submit").await;
    phone.wait("the request placed", &status_is("#r-list li", "submitted")).await;
    let rid = phone.js("return document.querySelector('#r-list li').dataset.id").await.as_str().unwrap().to_string();
    let mine = format!("#r-list li[data-id=\"{rid}\"]");

    // Staff see it arrive (live, no reload), open it: the phone to call back, the order's
    // fields filled from the request.
    let card = format!("#req-list li[data-request=\"{rid}\"]");
    desk.wait("the request, live", &status_is(&card, "submitted")).await;
    assert!(desk.text(&card).await.contains("帮忙取药"));
    desk.click(&format!("{card} button.open")).await;
    desk.wait("its detail", &text_is("#req-phone", "13800138000")).await;
    assert_eq!(desk.js("return document.querySelector('#req-d-note').value").await, json!("帮忙取药，腿脚不便"));
    assert!(
        desk.js("return document.querySelector('#req-d-title').value").await.as_str().unwrap().contains("扶老帮困")
    );
    // Declining without a reason: said in the page's words, nothing sent.
    desk.click("#req-decline").await;
    desk.wait("the reason asked for", &text_is("#req-detail-msg", "请填写原因。")).await;
    // The detail, open, is accessible and reachable by Tab.
    desk.accessible("/console with a request open").await;
    let walk = desk.tab_walk(140).await;
    has_all(
        &walk,
        &[
            "#req-qr-show",
            "#req-qr-print",
            "button.open",
            "#req-close",
            "#req-d-title",
            "#req-dispatch",
            "#req-reason",
            "#req-decline",
        ],
        "console",
    );
    // Difficulty: from the category's (扶老帮困, 2) up; nothing below it is offered.
    let offered = desk.js("return [...document.querySelectorAll('#req-d-difficulty option')].map(o => o.value)").await;
    assert_eq!(offered, json!(["", "2", "3", "4", "5"]));
    desk.select("#req-d-difficulty", "2").await;
    // A time that has passed: the server refuses it, and the page says so in its own words.
    let keep = desk
        .js("const s = document.querySelector('#req-d-start'), e = document.querySelector('#req-d-end'); \
        const k = [s.value, e.value]; s.value = '2020-01-01T09:00'; e.value = '2020-01-01T12:00'; return k")
        .await;
    desk.click("#req-dispatch").await;
    desk.wait("the refusal", &text_is("#req-detail-msg", "时间段不正确：结束须晚于开始。")).await;
    desk.js(&format!("document.querySelector('#req-d-start').value = {}; document.querySelector('#req-d-end').value = {}; return true", keep[0], keep[1])).await;
    desk.click("#req-dispatch").await;
    desk.wait("dispatched", &status_is("#req-detail-status", "dispatched")).await;
    let r: Value = app.get(&staff, &format!("/v1/requests/{rid}")).await.json().await.unwrap();
    let oid = r["order_id"].as_str().unwrap_or_else(|| panic!("dispatched: {r}")).to_string();
    let order: Value = app.get(&staff, &format!("/v1/orders/{oid}")).await.json().await.unwrap();
    assert_eq!(
        (order["difficulty"].as_u64(), order["note"].as_str()),
        (Some(2), Some("帮忙取药，腿脚不便")),
        "{order}"
    );
    desk.wait("the answer said", &text_is("#req-detail-msg", &format!("已派单：订单 {oid}。"))).await;
    phone.wait("the resident sees it dispatched", &status_is(&mine, "dispatched")).await;

    // Two more requests: one merged into that order, one declined with a reason the
    // resident reads.
    let mut more = Vec::new();
    for text in ["也帮我取一次药", "帮忙修水管"] {
        phone.type_into("#r-desc", text).await;
        phone.click("#r-submit").await;
        let find = format!(
            "return [...document.querySelectorAll('#r-list li')].find(li => li.textContent.includes({text:?}))?.dataset.id || null"
        );
        phone
            .wait("placed", &format!("{} !== null", find.replace("|| null", "|| null)").replace("return ", "return (")))
            .await;
        more.push(phone.js(&find).await.as_str().unwrap().to_string());
    }
    let (merged, declined) = (more[0].clone(), more[1].clone());
    desk.click("#req-close").await;
    let c2 = format!("#req-list li[data-request=\"{merged}\"]");
    desk.wait("the second request, live", &status_is(&c2, "submitted")).await;
    desk.click(&format!("{c2} button.open")).await;
    desk.wait("its detail", &text_is("#req-detail-h", &format!("点单 {merged}"))).await;
    desk.select("#req-m-order", &oid).await;
    desk.click("#req-merge").await;
    desk.wait("merged", &text_is("#req-detail-msg", &format!("已并入订单 {oid}。"))).await;
    let mine2 = format!("#r-list li[data-id=\"{merged}\"]");
    phone.wait("the resident sees it merged", &status_is(&mine2, "dispatched")).await;
    desk.click("#req-close").await;
    let c3 = format!("#req-list li[data-request=\"{declined}\"]");
    desk.wait("the third request", &status_is(&c3, "submitted")).await;
    desk.click(&format!("{c3} button.open")).await;
    desk.wait("its detail", &text_is("#req-detail-h", &format!("点单 {declined}"))).await;
    desk.type_into("#req-reason", "请拨打物业电话").await;
    desk.click("#req-decline").await;
    desk.wait("declined", &text_is("#req-detail-msg", "已答复居民。")).await;
    let mine3 = format!("#r-list li[data-id=\"{declined}\"]");
    phone.wait("the resident sees it declined", &status_is(&mine3, "declined")).await;
    assert!(phone.text(&mine3).await.contains("社区答复：请拨打物业电话"));
    desk.fits_360().await;

    // A member takes the order on /m and checks in and out where it is.
    let member = driver.browser("member-requests").await;
    member.goto(&app.url("/m")).await;
    member.sign_in(&app.member(&m)).await;
    let job = format!("#svc-list li[data-order=\"{oid}\"]");
    member.wait("the order", &format!("return document.querySelector('{job}')?.dataset.state === 'open'")).await;
    member.click(&format!("{job} button.claim")).await;
    member.wait("taken", &format!("return document.querySelector('{job}').dataset.state === 'claimed'")).await;
    phone.wait("the resident sees it taken", &status_is(&mine, "claimed")).await;
    assert_eq!(phone.text(&format!("{mine} .badge")).await, "已有党员接单");
    let (lat, lng) = (order["location"]["lat"].as_f64().unwrap(), order["location"]["lng"].as_f64().unwrap());
    member.geolocation(Some((lat, lng + 0.0001))).await;
    member.click(&format!("{job} button.checkin")).await;
    member.wait("checked in", &format!("return document.querySelector('{job}').dataset.state === 'checked_in'")).await;
    phone.wait("the resident sees it in service", &status_is(&mine, "in_service")).await;
    member.click(&format!("{job} button.checkout")).await;
    member
        .wait("checked out", &format!("return document.querySelector('{job}').dataset.state === 'checked_out'"))
        .await;
    let o: Value = app.get(&staff, &format!("/v1/orders/{oid}")).await.json().await.unwrap();
    let claim = &o["claims"][0];
    assert_eq!(
        (claim["checkin"]["flagged"].as_bool(), claim["checkout"]["flagged"].as_bool()),
        (Some(false), Some(false)),
        "{o}"
    );

    // The resident sees it served, live, and confirms and rates it.
    phone.wait("the resident sees it served", &status_is(&mine, "served")).await;
    phone.fits_360().await;
    phone.accessible("/r with a served request").await;
    let walk = phone.tab_walk(40).await;
    has_all(
        &walk,
        &["#lang", "#r-category", "#r-grid", "#r-desc", "#r-submit", "[rating=very_good]", "#r-signout"],
        "resident",
    );
    phone.click(&format!("{mine} button[data-rating=\"very_good\"]")).await;
    phone.wait("confirmed", &status_is(&mine, "confirmed")).await;
    assert!(phone.text(&mine).await.contains("已评价：很好"));
    desk.click("#req-all").await;
    desk.wait("staff see it confirmed, live", &status_is(&card, "confirmed")).await;
    phone.screenshot("resident").await;

    // 创单: the member proposes on /m; staff see it live and approve it; the member sees it
    // approved and holds the order it became.
    member.wait("the proposal form", "return document.querySelector('#mp-list')?.dataset.loaded === 'true'").await;
    member.click("#mp-open").await;
    member.select("#mp-category", "skills_training").await;
    member.type_into("#mp-title", "教老人用智能手机").await;
    member.type_into("#mp-for", "3栋独居老人").await;
    member.select("#mp-grid", "c001-g1").await;
    member.click("#mp-submit").await;
    member.wait("proposed", &status_is("#mp-list li", "proposed")).await;
    assert_eq!(member.text("#mp-msg").await, "「教老人用智能手机」已提交，等待社区审核。");
    let pid =
        member.js("return document.querySelector('#mp-list li').dataset.proposal").await.as_str().unwrap().to_string();
    let pcard = format!("#prop-list li[data-proposal=\"{pid}\"]");
    desk.wait("the proposal, live", &status_is(&pcard, "proposed")).await;
    assert!(desk.text(&pcard).await.contains("3栋独居老人"));
    desk.accessible("/console with a proposal").await;
    desk.click(&format!("{pcard} button.approve")).await;
    let mcard = format!("#mp-list li[data-proposal=\"{pid}\"]");
    member.wait("approved, live", &status_is(&mcard, "approved")).await;
    let p: Value = app.get(&staff, "/v1/proposals").await.json().await.unwrap();
    let made = p.as_array().unwrap().iter().find(|x| x["id"] == pid.as_str()).unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(member.text(&mcard).await.contains(&made));
    member
        .wait(
            "the order it became, held",
            &format!(
                "return document.querySelector('#svc-list li[data-order=\"{made}\"]')?.dataset.state === 'claimed'"
            ),
        )
        .await;
    desk.click("#prop-all").await;
    desk.wait("staff see it approved", &status_is(&pcard, "approved")).await;
    member.fits_360().await;
    member.accessible("/m with a proposal").await;
    let walk = member.tab_walk(60).await;
    has_all(
        &walk,
        &[
            "#mp-category",
            "#mp-title",
            "#mp-desc",
            "#mp-grid",
            "#mp-slots",
            "#mp-for",
            "#mp-start",
            "#mp-end",
            "#mp-submit",
        ],
        "member",
    );
    member.screenshot("member-propose").await;
    desk.screenshot("console-requests").await;

    // English: each page says it again in the other language.
    desk.click("#lang").await;
    desk.wait("English on the console", &text_is("#req-h", "Residents' requests")).await;
    desk.wait("the status in English", &text_is(&format!("{card} .badge"), "Confirmed")).await;
    desk.wait("the detail in English", &text_is("#req-detail-status", "Declined")).await;
    desk.wait("the proposal in English", &text_is(&format!("{pcard} .badge"), "Approved")).await;
    desk.accessible("/console in English").await;
    phone.click("#lang").await;
    phone.wait("English on /r", &text_is(&format!("{mine} .badge"), "Confirmed")).await;
    phone.accessible("/r in English").await;
    member.click("#lang").await;
    member.wait("English on /m", &text_is("#propose-h", "Propose a service")).await;
    member
        .wait("the answer in English", &text_is("#mp-msg", "“教老人用智能手机” is sent; the community will decide."))
        .await;
    assert_eq!(member.text(&format!("{mcard} .badge")).await, "Approved");
    member.accessible("/m in English").await;
    desk.screenshot("console-requests-en").await;
    member.screenshot("member-propose-en").await;
    phone.screenshot("resident-en").await;

    // The browser logs the refused code itself (a 401); nothing else.
    phone
        .no_console_errors(&[
            "/v1/session/resident - Failed to load resource: the server responded with a status of 401",
        ])
        .await;
    desk.no_console_errors(&["/dispatch - Failed to load resource: the server responded with a status of 422"]).await;
    member.no_console_errors(&[]).await;
    for b in [desk, phone, member] {
        b.close().await;
    }
    app.stop().await;
}
