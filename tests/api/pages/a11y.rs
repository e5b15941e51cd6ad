//! Issue 17: every page, in both languages, at 360 px and at 1920×1080, passes axe-core
//! (injected from the npm package, not served by muster) with no serious or critical
//! violation, and logs no console error; a screenshot of each is saved under
//! target/screenshots/ (`a11y-<page>-<lang>-<width>.png`).

use super::*;

/// A page, who signs in to it, and a script that is true once it has drawn its data.
struct Visit {
    path: &'static str,
    file: &'static str,
    token: Option<String>,
    ready: &'static str,
}

#[tokio::test]
async fn every_page_passes_axe_in_both_languages_at_both_widths_with_no_console_error() {
    // The checker must be there before anything starts: a clear failure otherwise.
    axe_source();
    let app = spawn_app().await;
    let staff = app.staff("c001");
    let member = app.city.members[0].id.clone();
    // Something on every page: an open incident (console, dashboard) and an open service
    // order (console, member page).
    app.raise(&staff, json!({"grid_id": "c001-g1", "category": "patrol", "level": "IV", "headcount": 1})).await;
    let order = crate::pages::service::post_order(&app, &staff, "c001-g1", 2).await;
    assert!(order["id"].is_string());

    let visits = [
        Visit {
            path: "/",
            file: "index",
            token: None,
            ready: "return document.querySelectorAll('a[href]').length > 0",
        },
        Visit {
            path: "/join",
            file: "join",
            token: None,
            ready: "return document.querySelector('#join-msg').dataset.kind === 'error'",
        },
        Visit {
            path: "/r#c001",
            file: "resident",
            token: None,
            ready: "return !document.querySelector('#r-signin').hidden \
                    && document.querySelector('#r-community').textContent === 'c001'",
        },
        Visit {
            path: "/console",
            file: "console",
            token: Some(staff.clone()),
            ready: "return document.querySelectorAll('#map path.area').length > 0 \
                    && document.querySelectorAll('#incidents li').length > 0 \
                    && document.querySelectorAll('#svc-orders li').length > 0",
        },
        Visit {
            path: "/m",
            file: "member",
            token: Some(app.member(&member)),
            ready: "return document.querySelector('#me-name').textContent.trim() !== '' \
                    && document.querySelector('#svc-list').dataset.loaded === 'true'",
        },
        Visit {
            path: "/dashboard",
            file: "dashboard",
            token: Some(app.command()),
            ready: "return document.querySelectorAll('#citymap path.area').length > 0 \
                    && document.querySelectorAll('#modes tr').length > 1",
        },
        Visit {
            path: "/unit",
            file: "unit",
            token: Some(app.token(muster::gateway::auth::Role::UnitAdmin, Some(&app.city.units[0].id))),
            ready: "return document.querySelector('#unit-rate').textContent.trim() !== '' \
                    && document.querySelectorAll('#unit-members tbody tr').length > 0",
        },
        Visit {
            path: "/reports",
            file: "reports",
            token: Some(staff.clone()),
            ready: "return document.querySelectorAll('#rep-table tbody tr').length > 0",
        },
    ];

    let driver = Driver::start().await;
    for v in visits {
        let b = driver.browser("a11y").await;
        b.goto(&app.url(v.path)).await;
        if let Some(token) = &v.token {
            // The sign-in card is a page too.
            b.wait("the sign-in card", "return !document.querySelector('#signin').hidden").await;
            b.accessible(&format!("{} sign-in card", v.path)).await;
            b.sign_in(token).await;
        }
        b.wait(&format!("{} drawn", v.path), v.ready).await;
        for lang in ["zh", "en"] {
            if lang == "en" {
                b.click("#lang").await;
                b.wait("English", "return document.documentElement.lang === 'en'").await;
            }
            for width in [360, 1920] {
                b.set_width(width).await;
                b.wait(&format!("{} drawn at {width} px", v.path), v.ready).await;
                b.accessible(&format!("{} in {lang} at {width} px", v.path)).await;
                if width == 360 {
                    b.fits_360().await;
                }
                b.screenshot(&format!("a11y-{}-{lang}-{width}", v.file)).await;
            }
            b.set_width(360).await;
        }
        // Every message the browser logged on this page: none may be an error.
        b.no_console_errors(&[]).await;
        b.close().await;
    }
    app.stop().await;
}
