//! The member app offline (issue 18): /m opens from the service worker's cache with the
//! last state while the server is gone (killed with -9), an accept made then waits in the
//! queue, and is applied once when the server is back; an answer the server refuses on
//! reconnect (the offer withdrawn meanwhile) is shown to the member, not dropped. The real
//! binary on a fixed port, so that the page's origin (and its worker, cache and storage)
//! stays the same across restarts.

use super::*;
use crate::restart::{client, kill9, start, start_at};

/// How many `offer_accepted` events the log holds for this offer.
fn accepted_in_log(dir: &Path, offer_id: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join(muster::store::sqlite::DB_FILE)).unwrap();
    db.query_row(
        "SELECT count(*) FROM events WHERE kind = 'offer_accepted' AND body LIKE ?1",
        [format!("%\"offer_id\":\"{offer_id}\"%")],
        |r| r.get(0),
    )
    .unwrap()
}

const QUEUED: &str = "return new Promise(done => { const r = indexedDB.open('muster-m');
    r.onsuccess = () => { const q = r.result.transaction('answers').objectStore('answers').count();
      q.onsuccess = () => done(q.result); q.onerror = () => done(-1); };
    r.onerror = () => done(-1); })";

#[tokio::test]
async fn m_opens_offline_from_its_cache_queues_an_accept_and_sends_it_once_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("MUSTER_DISPATCH__OFFER_TTL_S", "3600"), ("MUSTER_DISPATCH__LEVELS__III__ESCALATE_AFTER_S", "3600")];
    let listen = format!("127.0.0.1:{}", free_port());
    let p = start_at(&listen, dir.path(), &env);
    let app = client(&p.addr);
    assert_eq!(app.put_city(&app.command(), &app.city).await.status(), 200);
    let staff = app.staff("c001");
    let raise =
        |headcount: u32| json!({"grid_id": "c001-g1", "category": "patrol", "level": "III", "headcount": headcount});
    let a = app.raise(&staff, raise(1)).await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let (member_id, offer_a) = app.offered(&a_id, "offered").await[0].clone();

    let driver = Driver::start().await;
    let m = driver.browser("member-offline").await;
    m.goto(&app.url("/m")).await;
    m.sign_in(&app.member(&member_id)).await;
    let card = format!("li.offer[data-offer='{offer_a}']");
    m.wait("the offer", &format!("return !!document.querySelector(\"{card}\")")).await;
    // The worker controls /m and holds its shell.
    m.wait(
        "the worker in control and the shell cached",
        "if (!navigator.serviceWorker.controller) return false;
         return caches.open('muster-m-shell-v2').then(c => c.keys()).then(k => {
           const kept = k.map(r => new URL(r.url).pathname);
           return ['/m', '/web/member.js', '/web/member-offline.js', '/web/style.css', '/web/i18n.js'].every(p => kept.includes(p));
         });",
    )
    .await;

    // The server is gone: /m still opens, from the cache, with the last state and the banner.
    kill9(p);
    m.wait(
        "the banner",
        "const b = document.querySelector('#offline'); return !!b && !b.hidden && b.dataset.state === 'offline'",
    )
    .await;
    m.goto(&app.url("/m")).await;
    m.wait("the page from the cache", &format!("return !!document.querySelector(\"{card}\")")).await;
    m.wait(
        "the offline banner",
        "const b = document.querySelector('#offline'); return !!b && !b.hidden && b.dataset.state === 'offline' && b.textContent.length > 0",
    )
    .await;
    let banner = m.text("#offline").await;
    assert!(banner.starts_with("离线"), "{banner}");
    m.accessible("/m offline with its banner").await;

    // An accept made offline waits in the queue.
    m.click(&format!("{card} button.accept")).await;
    m.wait("the accept queued", &format!("{QUEUED}.then(n => n === 1)")).await;
    m.wait("the banner counts it", "return document.querySelector('#offline').textContent.includes('1 条回复')").await;

    // Meanwhile staff cancel A, on a server the page does not reach (another port, the same
    // data). Back on the page's port, the queued accept is refused, and the member told.
    let elsewhere = start(dir.path(), &env);
    let other = client(&elsewhere.addr);
    let resp = other.post(&staff, &format!("/v1/incidents/{a_id}/cancel"), json!({"reason": "false alarm"})).await;
    assert_eq!(resp.status(), 200);
    kill9(elsewhere);
    let p = start_at(&listen, dir.path(), &env);
    m.wait("connected again", "return document.querySelector('#conn').dataset.state === 'connected'").await;
    m.wait("the queue sent", &format!("{QUEUED}.then(n => n === 0)")).await;
    m.wait(
        "the refusal shown",
        "const l = document.querySelector('#offline-refused'); return !!l && !l.hidden && l.textContent.includes('接受任务')",
    )
    .await;
    let refused = m.text("#offline-refused").await;
    assert!(refused.contains("任务推送已撤回"), "{refused}");
    assert_eq!(accepted_in_log(dir.path(), &offer_a), 0);
    m.wait("A's card gone", &format!("return !document.querySelector(\"{card}\")")).await;
    m.wait("the banner gone", "return document.querySelector('#offline').hidden").await;
    m.accessible("/m with a refused offline answer").await;

    // B is offered to the member; cut off again, they accept; back, it is applied once.
    let app = client(&p.addr);
    let b = app.raise(&staff, raise(1)).await;
    let b_id = b["id"].as_str().unwrap().to_string();
    let offer_b = app
        .offered(&b_id, "offered")
        .await
        .into_iter()
        .find(|(mid, _)| *mid == member_id)
        .map(|(_, o)| o)
        .expect("the member is offered B too");
    let card_b = format!("li.offer[data-offer='{offer_b}']");
    m.wait("offer B", &format!("return !!document.querySelector(\"{card_b}\")")).await;
    kill9(p);
    m.wait(
        "offline again",
        "const b = document.querySelector('#offline'); return !b.hidden && b.dataset.state === 'offline'",
    )
    .await;
    m.click(&format!("{card_b} button.accept")).await;
    m.wait("B's accept queued", &format!("{QUEUED}.then(n => n === 1)")).await;
    m.wait("said to be kept", "return document.querySelector('#notice').textContent.includes('联网后自动发送')").await;
    assert_eq!(accepted_in_log(dir.path(), &offer_b), 0);
    let p = start_at(&listen, dir.path(), &env);
    m.wait("connected once more", "return document.querySelector('#conn').dataset.state === 'connected'").await;
    m.wait("the queue sent again", &format!("{QUEUED}.then(n => n === 0)")).await;
    m.wait(
        "the assignment shown",
        &format!("const li = document.querySelector(\"{card_b}\"); return !!li && li.dataset.state === 'accepted' && !!li.querySelector('button.arrive')"),
    )
    .await;
    m.wait("the banner gone again", "return document.querySelector('#offline').hidden").await;
    assert_eq!(accepted_in_log(dir.path(), &offer_b), 1, "the accept is applied once");
    let view = client(&p.addr).incident(&b_id).await;
    assert_eq!(view["status"], "filled", "{view}");
    m.no_console_errors(&["Failed to load resource", "WebSocket connection", "ERR_CONNECTION_REFUSED", "ERR_FAILED"])
        .await;
    m.close().await;
}
