//! The web pages (issue #4) and the GeoJSON they draw their maps from.
//!
//! - `GET /` links the three pages; `GET /console` (staff), `GET /m` (member) and
//!   `GET /dashboard` (command) are static HTML; `GET /web/{file}` their CSS and JS
//!   modules. The files live in `src/web/` and are embedded in the binary with rust-embed
//!   (release builds; a debug build reads them from `src/web/` so a page can be edited
//!   without recompiling). No build step, no third-party code.
//! - Every page and asset carries a strict Content-Security-Policy: no inline script or
//!   style, data only from this origin (HTTP with the bearer token, and the websocket).
//! - `GET /v1/geo/city` and `GET /v1/geo/communities/{id}`: GeoJSON FeatureCollections of
//!   the city's H3 cells (`[lng, lat]`), for any role, so no map tiles are needed.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use serde::Serialize;
use serde_json::{Value, json};
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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { asset("index.html", &h) }))
        .route("/console", get(|h: HeaderMap| async move { asset("console.html", &h) }))
        .route("/m", get(|h: HeaderMap| async move { asset("member.html", &h) }))
        .route("/dashboard", get(|h: HeaderMap| async move { asset("dashboard.html", &h) }))
        .route("/reports", get(|h: HeaderMap| async move { asset("reports.html", &h) }))
        .route("/web/{file}", get(|Path(file): Path<String>, h: HeaderMap| async move { asset(&file, &h) }))
        .route("/v1/geo/city", get(geo_city))
        .route("/v1/geo/communities/{id}", get(geo_community))
}

fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
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
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hash[..12].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let fresh = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], file.data.into_owned()).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
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
