//! /m's notifications switch (issue 18): the service worker that shows Web Push
//! notifications is served for /m's scope and installed when the member opens /m; the
//! switch is reachable and labelled. (Subscribing needs a real push service behind the
//! browser, which headless Chromium has not; the server's side of a subscription is
//! tests/api/push.rs's, with a push service of the test's own.)

use super::*;

#[tokio::test]
async fn m_installs_its_service_worker_and_shows_the_notifications_switch() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/web/sw.js")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["service-worker-allowed"], "/m");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));

    let member_id = app.city.members[0].id.clone();
    let driver = Driver::start().await;
    let member = driver.browser("member-push").await;
    member.goto(&app.url("/m")).await;
    member.sign_in(&app.member(&member_id)).await;
    let scope = "if (typeof window.__sw !== 'string') navigator.serviceWorker.getRegistration('/m')
          .then(r => { if (r && r.active) window.__sw = r.scope; });
        return typeof window.__sw === 'string' && window.__sw.endsWith('/m');";
    member.wait("the service worker active for /m", scope).await;
    member
        .wait(
            "the switch",
            "const b = document.querySelector('#push');
             return !!b && !b.disabled && b.getAttribute('aria-pressed') === 'false' && b.textContent.length > 0",
        )
        .await;
    member.accessible("/m with the notifications switch").await;
    member.no_console_errors(&[]).await;
}
