//! The web pages (issue #4) and the GeoJSON they draw their maps from.
//!
//! - `GET /` links the pages; `GET /console` (staff), `GET /m` (member), `GET /dashboard`
//!   (command), `GET /reports`, `GET /unit` (unit admin) and `GET /join` (opens a sign-in link) are HTML; `GET /web/{file}` their CSS, JS modules and icon.
//!   The files live in `src/web/` and are embedded in the binary with rust-embed (release
//!   builds; a debug build reads them from `src/web/` so a page can be edited without
//!   recompiling). No build step, no third-party code.
//! - One shell, many bodies: the head, the header (title, connection status, language
//!   toggle, sign-out), the sign-in card and the confirm dialog are written once, in
//!   `src/web/layout.html`; each page's own markup, what goes inside `<main>`, is a fragment
//!   of the same name (`console.html`, ..). The server puts the two together (`compose`),
//!   so the page is whole when it arrives: no script draws the header, nothing flashes, and
//!   a screen reader or checker sees the finished page. What differs between pages (title,
//!   heading and its i18n key, the name of its body and script, whether it signs in and
//!   with which hint, the dialog, the phone's theme colour) is a field of its [`Page`] in
//!   [`PAGES`], not a copy.
//!   The layout's syntax is two rules: `{{key}}` is replaced by the page's value, and the
//!   lines between `{{#key}}` and `{{/key}}` are kept only on a page that has `key`. A
//!   file's leading `<!-- .. -->` is a note for its editor and is not served. A release
//!   build composes each page once, on its first request; a debug build composes it on
//!   every request, so an edit to the layout or a body shows at the next reload. The ETag is
//!   the composed page's SHA-256, like an asset's, so it changes with either file.
//! - `/web/{file}` serves no HTML: the layout and the bodies are not pages.
//! - Every page and asset carries a strict Content-Security-Policy: no inline script or
//!   style, data only from this origin (HTTP with the bearer token, and the websocket).
//! - `GET /v1/geo/city` and `GET /v1/geo/communities/{id}`: GeoJSON FeatureCollections of
//!   the city's H3 cells (`[lng, lat]`), for any role, so no map tiles are needed.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Problem};
use crate::domain::geo::Cell;

#[derive(RustEmbed)]
#[folder = "src/web/"]
struct Web;

/// What the pages may load: their own scripts, styles and API; nothing inline.
pub const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; \
                       script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One page: `layout.html` filled in with these values, and its body inside `<main>`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Where it is served.
    pub path: &'static str,
    /// Names its files in `src/web/` (`{{name}}`): `{name}.html`, its own markup, what goes
    /// inside `<main>` after the sign-in card; `{name}.js`, the module that runs it.
    pub name: &'static str,
    /// The `<title>` (`{{title}}`).
    pub title: &'static str,
    /// The `<h1>`: its i18n key and the Chinese text it shows until i18n.js runs
    /// (`{{heading-key}}`, `{{heading}}`).
    pub heading: (&'static str, &'static str),
    /// A page that needs a token: the header's connection status and sign-out, and the
    /// sign-in card with this hint (an i18n key). `None`, the index: none of them
    /// (`{{#sign-in}}`, `{{sign-in}}`).
    pub sign_in: Option<&'static str>,
    /// The confirm/reason dialog, `#ask`, that common.js's `ask()` opens (`{{#ask}}`).
    pub ask: bool,
    /// `<meta name="theme-color">`, for the phone's browser bar (`{{#theme-color}}`).
    pub theme_color: Option<&'static str>,
    /// `<link rel="manifest">`: the web app manifest that makes the page installable
    /// (`{{#manifest}}`; issue 18, the member app).
    pub manifest: Option<&'static str>,
}

/// Every page there is, and all that differs between them.
pub static PAGES: [Page; 8] = [
    Page::new("/", "index", "muster 应急动员调度", ("index.title", "muster 应急动员调度")),
    Page::new("/console", "console", "社区工作台 · muster", ("console.title", "社区工作台")).signs_in().asks(),
    Page::new("/m", "member", "党员报到 · muster", ("member.title", "党员报到"))
        .signs_in()
        .theme_color("#b3261e")
        .manifest("/web/member.webmanifest"),
    Page::new("/dashboard", "dashboard", "指挥大屏 · muster", ("dash.title", "指挥大屏")).signs_in().asks(),
    Page::new("/reports", "reports", "考核报表 · muster", ("rep.title", "考核报表")).signs_in(),
    Page::new("/unit", "unit", "单位管理 · muster", ("unit.title", "单位管理")).signs_in().asks(),
    // Opens a sign-in link (/join#<code>) and forwards to the role's page: no sign-in card.
    Page::new("/join", "join", "登录 · muster", ("join.title", "登录")).theme_color("#b3261e"),
    // Residents (issue #20), from the community's QR code (/r#<community>): its own sign-in
    // by a code to the phone, so no token card.
    Page::new("/r", "resident", "居民点单 · muster", ("res.title", "居民点单")).theme_color("#b3261e"),
];

impl Page {
    /// A page without sign-in, dialog or theme colour.
    const fn new(
        path: &'static str,
        name: &'static str,
        title: &'static str,
        heading: (&'static str, &'static str),
    ) -> Self {
        Page { path, name, title, heading, sign_in: None, ask: false, theme_color: None, manifest: None }
    }
    /// With the sign-in card (and its usual hint), the connection status and sign-out.
    const fn signs_in(self) -> Self {
        self.signs_in_with("signin.hint")
    }
    /// With the sign-in card showing `hint`, the connection status and sign-out.
    const fn signs_in_with(self, hint: &'static str) -> Self {
        Page { sign_in: Some(hint), ..self }
    }
    /// With the confirm/reason dialog.
    const fn asks(self) -> Self {
        Page { ask: true, ..self }
    }
    /// With `<meta name="theme-color">`.
    const fn theme_color(self, colour: &'static str) -> Self {
        Page { theme_color: Some(colour), ..self }
    }
    /// With `<link rel="manifest">`.
    const fn manifest(self, href: &'static str) -> Self {
        Page { manifest: Some(href), ..self }
    }
    /// The value of `{{key}}`; `None` where the page has no such thing, which also leaves
    /// out its `{{#key}}` block.
    fn value(&self, key: &str) -> Option<&'static str> {
        match key {
            "title" => Some(self.title),
            "name" => Some(self.name),
            "heading-key" => Some(self.heading.0),
            "heading" => Some(self.heading.1),
            "sign-in" => self.sign_in,
            "ask" => self.ask.then_some(""),
            "theme-color" => self.theme_color,
            "manifest" => self.manifest,
            _ => None,
        }
    }
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for (i, p) in PAGES.iter().enumerate() {
        router = router.route(p.path, get(move |h: HeaderMap| async move { page(i, &h) }));
    }
    router
        .route("/web/{file}", get(|Path(file): Path<String>, h: HeaderMap| async move { asset(&file, &h) }))
        .route("/v1/geo/city", get(geo_city))
        .route("/v1/geo/communities/{id}", get(geo_community))
}

const HTML: &str = "text/html; charset=utf-8";

/// What `/web/` serves, by ending. Not HTML: pages are composed, see `page`.
fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// One embedded file with the security headers, or 404. Names are flat (`console.js`):
/// nothing with a slash or `..` is looked up.
fn asset(name: &str, req: &HeaderMap) -> Response {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    let (Some(kind), true) = (content_type(name), valid) else {
        return ApiError::not_found("no_route", "no such page or file").into_response();
    };
    let Some(file) = Web::get(name) else {
        return ApiError::not_found("no_route", "no such page or file").into_response();
    };
    let data = match file.data {
        Cow::Borrowed(b) => Bytes::from_static(b),
        Cow::Owned(v) => Bytes::from(v),
    };
    let mut resp = respond(kind, &etag(&file.metadata.sha256_hash()), data, req);
    if name == "sw.js" {
        // The member app's service worker controls /m, outside /web/ where it is served.
        resp.headers_mut().insert("service-worker-allowed", axum::http::HeaderValue::from_static("/m"));
    }
    resp
}

/// A page put together, and its ETag.
#[derive(Debug, Clone)]
struct Composed {
    html: Bytes,
    etag: String,
}

/// `PAGES[i]`, composed; 500 if its layout or body is missing (a build without them).
fn page(i: usize, req: &HeaderMap) -> Response {
    // A release build's files are fixed at build time, so each page is composed once. A
    // debug build reads src/web/ on every request (rust-embed), and composes again.
    static ONCE: LazyLock<Vec<Option<Composed>>> = LazyLock::new(|| PAGES.iter().map(composed).collect());
    let composed = if cfg!(debug_assertions) { composed(&PAGES[i]) } else { ONCE[i].clone() };
    match composed {
        Some(c) => respond(HTML, &c.etag, c.html, req),
        None => {
            ApiError::internal("pages", format!("{}: layout.html or {}.html is missing", PAGES[i].path, PAGES[i].name))
                .into_response()
        }
    }
}

/// The page from the embedded layout and its body.
fn composed(page: &Page) -> Option<Composed> {
    let layout = Web::get("layout.html")?;
    let body = Web::get(&format!("{}.html", page.name))?;
    let html = compose(std::str::from_utf8(&layout.data).ok()?, page, std::str::from_utf8(&body.data).ok()?);
    let etag = etag(&Sha256::digest(html.as_bytes()));
    Some(Composed { html: Bytes::from(html), etag })
}

/// `layout` filled in for `page` (the two rules in the module's header), with `body` in
/// place of `{{body}}`. The body is not searched for placeholders.
fn compose(layout: &str, page: &Page, body: &str) -> String {
    let body = without_note(body);
    let body = body.strip_suffix('\n').unwrap_or(body);
    let mut out = String::with_capacity(layout.len() + body.len());
    // The block being left out, until its `{{/key}}`.
    let mut leaving_out: Option<&str> = None;
    for line in without_note(layout).split_inclusive('\n') {
        let tag = line.trim().strip_prefix("{{").and_then(|t| t.strip_suffix("}}"));
        if let Some(key) = tag.and_then(|t| t.strip_prefix('#')) {
            if leaving_out.is_none() && page.value(key).is_none() {
                leaving_out = Some(key);
            }
        } else if let Some(key) = tag.and_then(|t| t.strip_prefix('/')) {
            if leaving_out == Some(key) {
                leaving_out = None;
            }
        } else if leaving_out.is_none() {
            fill(line, page, body, &mut out);
        }
    }
    out
}

/// One line of the layout with its `{{key}}`s replaced. A key the page has no value for
/// stays as it is, for the tests to find.
fn fill(mut line: &str, page: &Page, body: &str, out: &mut String) {
    while let Some((before, rest)) = line.split_once("{{") {
        let Some((key, after)) = rest.split_once("}}") else { break };
        out.push_str(before);
        match (key, page.value(key)) {
            ("body", _) => out.push_str(body),
            (_, Some(value)) => out.push_str(value),
            (_, None) => {
                out.push_str("{{");
                out.push_str(key);
                out.push_str("}}");
            }
        }
        line = after;
    }
    out.push_str(line);
}

/// The text after a leading `<!-- .. -->` note (and its line end), or all of it.
fn without_note(text: &str) -> &str {
    let Some((_, rest)) = text.strip_prefix("<!--").and_then(|t| t.split_once("-->")) else { return text };
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// An ETag from a SHA-256: its first 12 bytes in hex, quoted.
fn etag(sha256: &[u8]) -> String {
    format!("\"{}\"", sha256[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// `data` as `kind` with the security headers and the ETag, or 304 when the client's copy
/// has that ETag. Browsers revalidate every time (`no-cache`), so an edit shows at once.
fn respond(kind: &'static str, etag: &str, data: Bytes, req: &HeaderMap) -> Response {
    let fresh = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], data).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// A GeoJSON FeatureCollection (RFC 7946): positions are `[lng, lat]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureCollection {
    /// Always `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `[min lng, min lat, max lng, max lat]` of every feature; absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    pub features: Vec<Feature>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Feature {
    /// Always `Feature`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The grid's or the community's id.
    pub id: String,
    pub geometry: Geometry,
    /// Grids: `{kind: "grid", grid_id, community_id, cells, center}`; communities:
    /// `{kind: "community", id, community_id, name, street_id, district_id, grids, center}`.
    /// `center` is `{lat, lng}`.
    #[schema(value_type = Object)]
    pub properties: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Geometry {
    /// Always `MultiPolygon`: one hexagon per H3 cell.
    #[serde(rename = "type")]
    pub kind: String,
    /// `[[[ [lng, lat], .. ]]]`, each ring closed.
    #[schema(value_type = Vec<Vec<Vec<Vec<f64>>>>)]
    pub coordinates: Value,
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// The hexagons of the cells, and the running bounding box.
fn multipolygon(cells: &[Cell], bbox: &mut [f64; 4]) -> Geometry {
    let polygons: Vec<Value> = cells
        .iter()
        .map(|c| {
            let mut ring: Vec<[f64; 2]> =
                c.0.boundary()
                    .iter()
                    .map(|ll| {
                        let (lng, lat) = (round7(ll.lng()), round7(ll.lat()));
                        bbox[0] = bbox[0].min(lng);
                        bbox[1] = bbox[1].min(lat);
                        bbox[2] = bbox[2].max(lng);
                        bbox[3] = bbox[3].max(lat);
                        [lng, lat]
                    })
                    .collect();
            if let Some(first) = ring.first().copied() {
                ring.push(first);
            }
            json!([ring])
        })
        .collect();
    Geometry { kind: "MultiPolygon".into(), coordinates: Value::Array(polygons) }
}

fn collection(features: Vec<Feature>, bbox: [f64; 4]) -> Response {
    let bbox = (!features.is_empty()).then_some(bbox);
    let body = FeatureCollection { kind: "FeatureCollection".into(), bbox, features };
    match serde_json::to_vec(&body) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/geo+json")], bytes).into_response(),
        Err(e) => ApiError::internal("geojson", e).into_response(),
    }
}

const EMPTY_BBOX: [f64; 4] = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];

#[utoipa::path(get, path = "/v1/geo/city", security(("bearer" = [])), responses(
    (status = 200, body = FeatureCollection, content_type = "application/geo+json",
     description = "every community as a MultiPolygon of its H3 cells"),
    (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn geo_city(State(app): State<AppState>, _caller: Caller) -> Response {
    // Copy what is needed under the read lock; build the geometry after releasing it.
    let communities: Vec<(Value, Vec<Cell>)> = {
        let state = app.engine.read();
        let Some(city) = state.city.city() else { return collection(Vec::new(), EMPTY_BBOX) };
        city.communities
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let center = state.city.community_centers[i];
                let props = json!({
                    "kind": "community",
                    "id": c.id,
                    "community_id": c.id,
                    "name": c.name,
                    "street_id": c.street_id,
                    "district_id": state.city.district_id_of_community(i as u32),
                    "grids": c.grids.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
                    "center": center,
                });
                (props, c.grids.iter().flat_map(|g| g.cells.iter().copied()).collect())
            })
            .collect()
    };
    let mut bbox = EMPTY_BBOX;
    let features = communities
        .into_iter()
        .map(|(props, cells)| Feature {
            kind: "Feature".into(),
            id: props["id"].as_str().unwrap_or_default().to_string(),
            geometry: multipolygon(&cells, &mut bbox),
            properties: props,
        })
        .collect();
    collection(features, bbox)
}

#[utoipa::path(get, path = "/v1/geo/communities/{id}", security(("bearer" = [])), params(("id" = String, Path)),
    responses(
    (status = 200, body = FeatureCollection, content_type = "application/geo+json",
     description = "the community's grids, each a MultiPolygon of its H3 cells"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn geo_community(State(app): State<AppState>, _caller: Caller, Path(id): Path<String>) -> Response {
    let grids: Vec<(Value, Vec<Cell>)> = {
        let state = app.engine.read();
        let found = state.city.community_by_id.get(&id).copied().and_then(|i| Some((i, state.city.city()?)));
        let Some((ci, city)) = found else {
            return ApiError::not_found("unknown_community", format!("no community '{id}'")).into_response();
        };
        let c = &city.communities[ci as usize];
        c.grids
            .iter()
            .map(|g| {
                let center = state.city.grid_flat.get(&g.id).map(|&f| state.city.grid_centers[f as usize]);
                let props = json!({
                    "kind": "grid",
                    "grid_id": g.id,
                    "community_id": c.id,
                    "community_name": c.name,
                    "cells": g.cells.len(),
                    "center": center,
                });
                (props, g.cells.clone())
            })
            .collect()
    };
    let mut bbox = EMPTY_BBOX;
    let features = grids
        .into_iter()
        .map(|(props, cells)| Feature {
            kind: "Feature".into(),
            id: props["grid_id"].as_str().unwrap_or_default().to_string(),
            geometry: multipolygon(&cells, &mut bbox),
            properties: props,
        })
        .collect();
    collection(features, bbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(i: usize, req: &HeaderMap) -> (Response, String) {
        let mut resp = page(i, req);
        let body = std::mem::take(resp.body_mut());
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (resp, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// The member app's offline shell (sw-offline.js's CORE, cached at install, before the
    /// page is controlled) holds every file /m loads by a static import from member.js, and
    /// the stylesheets its modules add: else /m cannot open offline after a fresh install.
    #[test]
    fn the_offline_shell_holds_every_module_m_imports() {
        let text = |name: &str| String::from_utf8(Web::get(name).unwrap().data.into_owned()).unwrap();
        let quoted = |s: &str, prefix: &str| -> Vec<String> {
            s.split('"').filter(|x| x.starts_with(prefix)).map(str::to_string).collect()
        };
        let sw = text("sw-offline.js");
        let core = &sw[sw.find("const CORE").unwrap()..];
        let core: std::collections::BTreeSet<String> =
            quoted(&core[..core.find("];").unwrap()], "/web/").into_iter().collect();
        let mut todo = vec!["/web/member.js".to_string()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(f) = todo.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            let body = text(f.trim_start_matches("/web/"));
            for line in body.lines().filter(|l| l.starts_with("import ") || l.contains("stylesheet")) {
                for q in quoted(line, "/web/") {
                    if q.ends_with(".js") {
                        todo.push(q);
                    } else {
                        seen.insert(q);
                    }
                }
            }
        }
        let missing: Vec<&String> = seen.difference(&core).collect();
        assert!(missing.is_empty(), "not in sw-offline.js's CORE: {missing:?}");
        assert!(seen.len() > 10, "the walk found the imports: {seen:?}");
    }

    #[test]
    fn every_route_is_a_page_in_the_table() {
        let paths: Vec<&str> = PAGES.iter().map(|p| p.path).collect();
        assert_eq!(paths, ["/", "/console", "/m", "/dashboard", "/reports", "/unit", "/join", "/r"]);
    }

    /// Each page is whole: the shared header once, the sign-in card and the dialog where
    /// the page has them, every placeholder filled and the files' notes left out.
    #[tokio::test]
    async fn every_page_has_the_shared_header_once_and_no_placeholder_left() {
        for (i, p) in PAGES.iter().enumerate() {
            let (resp, html) = get(i, &HeaderMap::new()).await;
            let path = p.path;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], HTML, "{path}");
            assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
            assert!(html.starts_with("<!doctype html>\n"), "{path}: {}", &html[..40]);
            assert!(html.ends_with("</body>\n</html>\n"), "{path}");
            assert!(!html.contains("{{") && !html.contains("}}"), "{path}: a placeholder is left");
            assert!(!html.contains("<!--"), "{path}: a file's note is served");
            let once = |s: &str| html.matches(s).count();
            assert_eq!(once("<header class=\"top\">"), 1, "{path}: the header");
            assert_eq!(once("<main>"), 1, "{path}");
            assert_eq!(once("id=\"lang\""), 1, "{path}: the language toggle");
            assert_eq!(once(&format!("<title>{}</title>", p.title)), 1, "{path}");
            assert_eq!(once(&format!("<h1 data-i18n=\"{}\">{}</h1>", p.heading.0, p.heading.1)), 1, "{path}");
            assert_eq!(once(&format!("<script type=\"module\" src=\"/web/{}.js\"></script>", p.name)), 1, "{path}");
            let signs_in = usize::from(p.sign_in.is_some());
            for id in ["id=\"conn\"", "id=\"signout\"", "id=\"signin\"", "id=\"token\""] {
                assert_eq!(once(id), signs_in, "{path}: {id}");
            }
            if let Some(hint) = p.sign_in {
                assert_eq!(once(&format!("data-i18n=\"{hint}\"")), 1, "{path}: the sign-in hint");
            }
            assert_eq!(once("<dialog id=\"ask\">"), usize::from(p.ask), "{path}: the dialog");
            assert_eq!(once("name=\"theme-color\""), usize::from(p.theme_color.is_some()), "{path}");
            assert_eq!(once("rel=\"manifest\""), usize::from(p.manifest.is_some()), "{path}");
            // The body is there, inside <main>, once.
            let body = String::from_utf8(Web::get(&format!("{}.html", p.name)).unwrap().data.into_owned()).unwrap();
            let body = without_note(&body);
            let (main, after) = html.split_once("<main>\n").unwrap().1.split_once("</main>\n").unwrap();
            assert!(main.ends_with(body), "{path}: the body closes <main>");
            assert_eq!(html.matches(body).count(), 1, "{path}");
            assert!(!after.contains("<main"), "{path}");
        }
    }

    /// The ETag is the composed page's: stable between requests, different between pages,
    /// and a match answers 304 with the same headers and no body.
    #[tokio::test]
    async fn a_page_has_a_stable_etag_and_answers_304_to_it() {
        let mut seen = Vec::new();
        for (i, p) in PAGES.iter().enumerate() {
            let (first, html) = get(i, &HeaderMap::new()).await;
            let etag = first.headers()[header::ETAG].clone();
            assert_eq!(etag.to_str().unwrap(), super::etag(&Sha256::digest(html.as_bytes())));
            let mut req = HeaderMap::new();
            req.insert(header::IF_NONE_MATCH, etag.clone());
            let (again, body) = get(i, &req).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", p.path);
            assert_eq!(again.headers()[header::ETAG], etag);
            assert_eq!(again.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert!(body.is_empty());
            assert!(!seen.contains(&etag), "{}: the same ETag as another page", p.path);
            seen.push(etag);
        }
    }

    #[test]
    fn web_serves_assets_but_not_the_layout_or_a_body() {
        let none = HeaderMap::new();
        for name in ["style.css", "common.js", "icon.svg"] {
            assert_eq!(asset(name, &none).status(), StatusCode::OK, "{name}");
        }
        for name in ["layout.html", "console.html", "index.html", "../pages.rs", ".hidden.js", "nope.js"] {
            assert_eq!(asset(name, &none).status(), StatusCode::NOT_FOUND, "{name}");
        }
    }

    /// The member app's manifest (issue 18): served as a manifest, and naming /m, its
    /// icon and a standalone display; the /m page links it.
    #[test]
    fn the_member_app_has_its_manifest() {
        let href = PAGES.iter().find(|p| p.path == "/m").and_then(|p| p.manifest).unwrap();
        let name = href.strip_prefix("/web/").unwrap();
        let resp = asset(name, &HeaderMap::new());
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/manifest+json");
        let m: serde_json::Value = serde_json::from_slice(&Web::get(name).unwrap().data).unwrap();
        assert_eq!(
            (m["start_url"].as_str(), m["scope"].as_str(), m["display"].as_str()),
            (Some("/m"), Some("/m"), Some("standalone"))
        );
        assert!(m["name"].as_str().unwrap().starts_with("党员报到"));
        for icon in m["icons"].as_array().unwrap() {
            let src = icon["src"].as_str().unwrap().strip_prefix("/web/").unwrap();
            assert_eq!(asset(src, &HeaderMap::new()).status(), StatusCode::OK, "{icon}");
        }
    }

    #[test]
    fn a_block_is_kept_only_where_the_page_has_its_name() {
        let layout = "<!-- note -->\n<h1>{{heading}}</h1>\n{{#sign-in}}\nhint {{sign-in}}\n{{/sign-in}}\n{{#ask}}\nask\n{{/ask}}\n{{body}}\nend {{nope}}\n";
        let [index, console, ..] = &PAGES;
        assert_eq!(
            compose(layout, console, "<!-- note -->\nbody\n"),
            "<h1>社区工作台</h1>\nhint signin.hint\nask\nbody\nend {{nope}}\n"
        );
        assert_eq!(compose(layout, index, "{{title}}\n"), "<h1>muster 应急动员调度</h1>\n{{title}}\nend {{nope}}\n");
    }
}
