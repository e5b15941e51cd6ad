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
