//! The gateway: everything between the network and the engine.
//!
//! - REST handlers: `incidents`, `city` (the city, its members and units, token revocation),
//!   `city_geojson` (the city as GeoJSON: import with a dry run, export),
//!   `wartime`, `service`, `pages`, `system` (probes, metrics, fallbacks); `views`: what
//!   they answer; `error`: problem+json.
//! - `auth`: JWT claims and the `Caller` extractor; `access`: sign-in links, sessions and
//!   the refresh cookie.
//! - `campaigns`: campaigns for command and staff (`campaign_csv`: their CSV import);
//!   `campaign_member`: a member's own shifts, acknowledgement, check-in and check-out.
//! - `webhooks`: command's outbound webhook endpoints and their dead letters.
//! - `push`: a member's Web Push subscriptions and the VAPID public key.
//! - `ws`: websocket sessions; `hub`: fan-out of committed frames to sockets.
//! - `router(state)` builds the routes; `app::build` serves them.

pub mod access;
pub mod audit;
pub mod auth;
pub mod campaign_csv;
pub mod campaign_member;
pub mod campaigns;
pub mod city;
pub mod city_geojson;
pub mod error;
pub mod hub;
pub mod incidents;
pub mod limits;
pub mod pages;
pub mod push;
pub mod reports;
pub mod residents;
pub mod service;
pub mod system;
pub mod views;
pub mod wartime;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::engine::EngineHandle;
use crate::settings::Settings;
use crate::store::LogReader;

/// What every handler and session shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub reader: Arc<dyn LogReader>,
    pub hub: Arc<hub::Hub>,
    pub keys: auth::TokenKeys,
    pub settings: Arc<Settings>,
    pub metrics: Option<PrometheusHandle>,
    pub shutdown: CancellationToken,
    pub limits: Arc<limits::RateLimits>,
    /// Outbound webhooks' records (status, dead letters) and the URL guard's allow-list.
    pub hooks: Arc<crate::webhooks::Hooks>,
    /// Web Push: the VAPID public key and the endpoint guard's allow-list.
    pub push: Arc<crate::push::Pusher>,
}

/// The OpenAPI tag of the system, city and incident handlers: the module they shared until
/// it was split (gateway/http.rs). utoipa tags a path by its module unless told; this keeps
/// /openapi.json as it was.
const API_TAG: &str = "http";

#[derive(OpenApi)]
#[openapi(
    info(title = "muster", description = "Emergency mobilization dispatcher. Websocket protocol: docs/PROTOCOL.md."),
    paths(
        system::healthz, system::readyz, system::metrics, city::catalog, city::put_city, city_geojson::import_city_geojson, city_geojson::export_city_geojson, city::list_communities,
                        city::get_member, city::list_units, incidents::raise, city::revoke, incidents::list_incidents, incidents::get_incident, incidents::timeline,
                incidents::escalate, incidents::resolve, incidents::cancel,
        wartime::get_modes, wartime::put_city_mode, wartime::put_district_mode, wartime::mobilize,
        wartime::list_mobilizations, wartime::get_mobilization, wartime::close_mobilization, wartime::whistle,
        wartime::get_balance, wartime::apply_proposal, wartime::get_fairness,
                pages::geo_city, pages::geo_community,
        service::register, service::list_members, service::import, service::register_unit, service::get_registration,
        service::post_order, service::list_orders, service::get_order, service::claim, service::assign, service::cancel,
        service::checkin, service::checkout, service::rate, service::exchange, reports::member_report,
        reports::unit_report, reports::community_report,
        access::invite, access::invite_batch, access::list_invitations, access::revoke_invitation,
        access::redeem, access::refresh, access::sign_out, access::list_sessions, access::revoke_session,
        audit::list_audit,
        webhooks::register, webhooks::list, webhooks::get_one, webhooks::disable, webhooks::enable,
        webhooks::delete, webhooks::rotate, webhooks::dead_letters, webhooks::replay,
        campaigns::create, campaigns::list, campaigns::get_one, campaigns::put_site, campaigns::close_site,
        campaigns::put_shift, campaigns::put_requirement, campaigns::import, campaigns::roster, campaigns::close,
        campaign_member::get_mine, campaign_member::acknowledge, campaign_member::checkin, campaign_member::checkout,
        campaign_member::unavailable,
        push::key, push::subscribe, push::list, push::unsubscribe,
        residents::send_code, residents::verify, residents::resident_link, residents::place, residents::list_requests,
        residents::get_request, residents::dispatch, residents::merge, residents::decline, residents::confirm,
        residents::propose, residents::list_proposals, residents::approve, residents::decline_proposal
    ),
    modifiers(&BearerAuth, &Enforced, &Links)
)]
pub struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// What the handlers enforce that the derives cannot say: a body that may be left out is
/// an object or nothing (`Option<T>` reads as "or JSON null", which they refuse), and the
/// bodies that take exactly one of a few fields say so with `oneOf`.
struct Enforced;
impl utoipa::Modify for Enforced {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        use utoipa::openapi::{RefOr, Required, Schema};
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let Some(body) = op.request_body.as_mut() else { continue };
                if body.required == Some(Required::True) {
                    continue;
                }
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema
                        && let [RefOr::T(Schema::Object(null)), inner] = one.items.as_slice()
                        && null.schema_type == Type::Null.into()
                    {
                        content.schema = Some(inner.clone());
                    }
                }
            }
        }
        let string = || ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
        let id = |example: &str| string().examples([serde_json::json!(example)]).into();
        let position = || RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Position"));
        let branch = |field: &str, schema: RefOr<Schema>| -> RefOr<Schema> {
            ObjectBuilder::new().required(field).property(field, schema).into()
        };
        let grid_or_location = || vec![branch("grid_id", id("c001-g1")), branch("location", position())];
        let exactly_one: [(&str, Vec<RefOr<Schema>>); 5] = [
            ("RaiseBody", grid_or_location()),
            ("OrderBody", grid_or_location()),
            ("SiteBody", grid_or_location()),
            ("RatingBody", vec![branch("order_id", id("ord-1")), branch("offer_id", id("off-1"))]),
            (
                "MobilizeBody",
                vec![
                    branch("teams", ArrayBuilder::new().items(string()).min_items(Some(1)).into()),
                    branch("unit_id", id("u001")),
                    branch("district_id", id("d01")),
                    branch(
                        "all_assault",
                        ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([true])).into(),
                    ),
                ],
            ),
        ];
        let Some(components) = openapi.components.as_mut() else { return };
        if components.schemas.contains_key("InviteBody") {
            components.schemas.insert("InviteBody".to_string(), access::invite_body_schema());
        }
        for (name, branches) in exactly_one {
            if let Some(schema) = components.schemas.remove(name) {
                let one_of = branches.into_iter().fold(utoipa::openapi::schema::OneOfBuilder::new(), |b, s| b.item(s));
                let all = utoipa::openapi::schema::AllOfBuilder::new().item(schema).item(one_of);
                components.schemas.insert(name.to_string(), all.into());
            }
        }
    }
}

/// OpenAPI links, so that a stateful run acts on what it made: from every `POST` that
/// answers 201 with the new object (its `id`) to every operation on `{that path}/{id}`.
struct Links;
impl utoipa::Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        let mut targets: Vec<(String, String, &str)> = Vec::new();
        for (path, item) in &openapi.paths.paths {
            for (method, op) in methods(item) {
                targets.push((path.clone(), op.operation_id.clone().unwrap_or_default(), method));
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(post) = item.post.as_mut() else { continue };
            let Some(RefOr::T(created)) = post.responses.responses.get_mut("201") else { continue };
            let prefix = format!("{path}/{{id}}");
            for (target, operation_id, method) in &targets {
                if target != &prefix && !target.starts_with(&format!("{prefix}/")) {
                    continue;
                }
                let pointer = format!("#/paths/{}/{method}", target.replace('~', "~0").replace('/', "~1"));
                let link = LinkBuilder::new()
                    .operation_ref(pointer)
                    .parameter("id", "$response.body#/id")
                    .description(format!("{} {target} on the object made", method.to_uppercase()))
                    .build();
                created.links.insert(format!("{method}_{operation_id}"), link.into());
            }
        }
    }
}

/// GET /openapi.json as this server serves it: `document()` with the limits that are
/// configuration (`dispatch.max_headcount`, `dispatch.service.max_slots`,
/// `dispatch.mobilization.max_deadline_s`, `auth.invitation_max_ttl_s`, and the lists of
/// ids that `server.max_body_bytes` holds) in their fields, and the configured ids the
/// campaign and resident bodies name (skills, categories, campaign roles) as their `enum`,
/// so that the document says what this server enforces.
pub fn served_document(rules: &crate::domain::response::Rules, settings: &Settings) -> serde_json::Value {
    let mut doc = document();
    let limits: [(&str, &str, u64); 7] = [
        ("RaiseBody", "headcount", rules.max_headcount.into()),
        ("OrderBody", "slots", rules.service.max_slots.into()),
        ("DispatchBody", "slots", rules.service.max_slots.into()),
        ("ProposalBody", "slots", rules.service.max_slots.into()),
        ("MobilizeBody", "deadline_s", rules.mobilization.max_deadline_s),
        ("InviteBody", "ttl_s", settings.auth.invitation_max_ttl_s),
        ("BatchQuery", "ttl_s", settings.auth.invitation_max_ttl_s),
    ];
    for (component, field, max) in limits {
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{component}")) {
            set_maximum(schema, field, max);
        }
    }
    // Lists of ids: as many as fit in `server.max_body_bytes` (a bigger body is refused
    // with 413 whatever it says), each id at most 64 visible ASCII characters, as members
    // are registered (each at most 131 bytes in JSON, quotes and escapes included).
    let fit = (settings.server.max_body_bytes.saturating_sub(256) / 131) as u64;
    let id = serde_json::json!({"type": "string", "pattern": "^[!-~]{1,64}(?![\\s\\S])"});
    for (pointer, most) in [
        ("/components/schemas/ApplyBody/properties/members", 10_000),
        ("/components/schemas/WhistleBody/properties/to/oneOf/1", 500),
    ] {
        if let Some(list) = doc.pointer_mut(pointer).and_then(|l| l.as_object_mut()) {
            list.insert("items".into(), id.clone());
            list.insert("maxItems".into(), fit.min(most).into());
        }
    }
    // Ids that are configuration (the catalog's skills and categories, the campaign roles):
    // the bodies of the campaigns and of the residents' requests and proposals name them.
    let ids = |it: &mut dyn Iterator<Item = &String>| serde_json::Value::from(it.cloned().collect::<Vec<_>>());
    let skills = ids(&mut rules.skills.iter().map(|s| &s.id));
    let categories = ids(&mut rules.categories.iter().map(|c| &c.id));
    let roles = ids(&mut rules.campaign.roles.iter().map(|r| &r.id));
    for (pointer, values) in [
        ("/components/schemas/RequirementBody/properties/role", &roles),
        ("/components/schemas/RequirementBody/properties/skills/items", &skills),
        ("/components/schemas/DispatchBody/properties/skills/items", &skills),
        ("/components/schemas/ProposalBody/properties/category", &categories),
    ] {
        if let Some(schema) = doc.pointer_mut(pointer).and_then(|l| l.as_object_mut()) {
            schema.insert("enum".into(), values.clone());
        }
    }
    // The batch's `ttl_s` is a query parameter, not a component.
    let ttl = settings.auth.invitation_max_ttl_s;
    if let Some(params) =
        doc.pointer_mut("/paths/~1v1~1invitations~1batch/post/parameters").and_then(|p| p.as_array_mut())
    {
        for p in params.iter_mut().filter(|p| p["name"] == "ttl_s") {
            set_maximum(p, "", ttl);
        }
    }
    doc
}

/// Sets `maximum` on every property `field` of a schema (in its `allOf`/`oneOf` branches
/// too); with `field` empty, on the parameter's own schema.
fn set_maximum(schema: &mut serde_json::Value, field: &str, max: u64) {
    if field.is_empty() {
        if let Some(s) = schema.get_mut("schema").and_then(|s| s.as_object_mut()) {
            s.insert("maximum".into(), max.into());
        }
        return;
    }
    if let Some(p) = schema.pointer_mut(&format!("/properties/{field}")).and_then(|p| p.as_object_mut()) {
        // `Option<u64>` reads as a `type` list with "null"; the bound is the number's.
        p.insert("maximum".into(), max.into());
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(items) = schema.get_mut(key).and_then(|v| v.as_array_mut()) {
            for item in items {
                set_maximum(item, field, max);
            }
        }
    }
}

/// GET /openapi.json: `ApiDoc`, with the link objects' fields spelled as OpenAPI spells them
/// (utoipa 5.5 serializes `utoipa::openapi::link::Link` in snake_case: `operation_ref`).
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let responses = paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
            .flat_map(|r| r.values_mut());
        for response in responses {
            let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else { continue };
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                for (snake, camel) in [
                    ("operation_ref", "operationRef"),
                    ("operation_id", "operationId"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(snake) {
                        link.insert(camel.to_string(), v);
                    }
                }
            }
        }
    }
    doc
}

/// An item's operations with their lower-case methods.
fn methods(item: &utoipa::openapi::PathItem) -> Vec<(&'static str, &utoipa::openapi::path::Operation)> {
    let all = [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("patch", &item.patch),
    ];
    all.into_iter().filter_map(|(m, op)| op.as_ref().map(|op| (m, op))).collect()
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

/// Logs and counts every request by its route template. The query string is never
/// logged: a websocket URL carries the token there.
/// The per-IP limit, on every route but the probes.
async fn limit_ip(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let ip = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let (false, Some(ip)) = (probe, ip)
        && let Err(e) = app.limits.check_ip(ip)
    {
        return axum::response::IntoResponse::into_response(e);
    }
    next.run(req).await
}

async fn observe(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!("muster_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("muster_http_request_seconds", "method" => method.to_string(), "route" => route.clone())
        .record(secs);
    tracing::debug!(%method, %route, status, ms = secs * 1000.0, "request");
    resp
}

/// Every non-2xx answer is problem+json, including the plain-text refusals of axum's own
/// extractors (an unreadable path id, a body over the limit, a GET without an upgrade).
async fn problem_everywhere(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    let resp = next.run(req).await;
    let status = resp.status();
    let is_problem =
        resp.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        426 => "upgrade_required",
        _ => "error",
    };
    let detail = if text.trim().is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    axum::response::IntoResponse::into_response(error::ApiError::new(status, code, detail))
}

pub fn router(state: AppState) -> Router {
    let limits = &state.settings.server;
    let city_import = Router::new()
        .route("/v1/city", put(city::put_city))
        .route("/v1/city/geojson", post(city_geojson::import_city_geojson).get(city_geojson::export_city_geojson))
        .layer(DefaultBodyLimit::max(limits.max_city_bytes));
    let api = Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route(
            "/openapi.json",
            get(|axum::extract::State(app): axum::extract::State<AppState>| async move {
                axum::Json(served_document(&app.engine.rules, &app.settings))
            }),
        )
        .route("/v1/catalog", get(city::catalog))
        .route("/v1/communities", get(city::list_communities))
        .route("/v1/members/{id}", get(city::get_member))
        .route("/v1/units", get(city::list_units))
        .route("/v1/tokens/revoke", post(city::revoke))
        .route("/v1/members", post(service::register).get(service::list_members))
        .route("/v1/members/import", post(service::import))
        .route("/v1/members/{id}/exchange", post(service::exchange))
        .route("/v1/units/{id}/register", post(service::register_unit))
        .route("/v1/registration", get(service::get_registration))
        .route("/v1/orders", post(service::post_order).get(service::list_orders))
        .route("/v1/orders/{id}", get(service::get_order))
        .route("/v1/orders/{id}/claim", post(service::claim))
        .route("/v1/orders/{id}/assign", post(service::assign))
        .route("/v1/orders/{id}/cancel", post(service::cancel))
        .route("/v1/orders/{id}/checkin", post(service::checkin))
        .route("/v1/orders/{id}/checkout", post(service::checkout))
        .route("/v1/ratings", post(service::rate))
        .route("/v1/reports/members/{id}", get(reports::member_report))
        .route("/v1/reports/units/{id}", get(reports::unit_report))
        .route("/v1/reports/communities/{id}", get(reports::community_report))
        .route("/v1/incidents", post(incidents::raise).get(incidents::list_incidents))
        .route("/v1/incidents/{id}", get(incidents::get_incident))
        .route("/v1/incidents/{id}/timeline", get(incidents::timeline))
        .route("/v1/incidents/{id}/escalate", post(incidents::escalate))
        .route("/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/v1/incidents/{id}/cancel", post(incidents::cancel))
        .route("/v1/modes", get(wartime::get_modes))
        .route("/v1/city/mode", put(wartime::put_city_mode))
        .route("/v1/districts/{id}/mode", put(wartime::put_district_mode))
        .route("/v1/mobilizations", post(wartime::mobilize).get(wartime::list_mobilizations))
        .route("/v1/mobilizations/{id}", get(wartime::get_mobilization))
        .route("/v1/mobilizations/{id}/close", post(wartime::close_mobilization))
        .route("/v1/incidents/{id}/whistle", post(wartime::whistle))
        .route("/v1/balance", get(wartime::get_balance))
        .route("/v1/balance/apply", post(wartime::apply_proposal))
        .route("/v1/fairness", get(wartime::get_fairness))
        .route("/v1/invitations", post(access::invite).get(access::list_invitations))
        .route("/v1/invitations/batch", post(access::invite_batch))
        .route("/v1/invitations/{id}/revoke", post(access::revoke_invitation))
        .route("/v1/session", post(access::redeem))
        .route("/v1/session/refresh", post(access::refresh))
        .route("/v1/session/signout", post(access::sign_out))
        .route("/v1/sessions", get(access::list_sessions))
        .route("/v1/sessions/{id}/revoke", post(access::revoke_session))
        .route("/v1/audit", get(audit::list_audit))
        .route("/v1/webhooks", post(webhooks::register).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get_one).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/disable", post(webhooks::disable))
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/rotate", post(webhooks::rotate))
        .route("/v1/webhooks/{id}/dead-letters", get(webhooks::dead_letters))
        .route("/v1/webhooks/{id}/dead-letters/replay", post(webhooks::replay))
        .route("/v1/campaigns", post(campaigns::create).get(campaigns::list))
        .route("/v1/campaigns/mine", get(campaign_member::get_mine))
        .route("/v1/campaigns/{id}", get(campaigns::get_one))
        .route("/v1/campaigns/{id}/shifts/{shift_id}/ack", post(campaign_member::acknowledge))
        .route("/v1/campaigns/{id}/shifts/{shift_id}/checkin", post(campaign_member::checkin))
        .route("/v1/campaigns/{id}/shifts/{shift_id}/checkout", post(campaign_member::checkout))
        .route("/v1/campaigns/{id}/sites/{site_id}", put(campaigns::put_site))
        .route("/v1/campaigns/{id}/sites/{site_id}/close", post(campaigns::close_site))
        .route("/v1/campaigns/{id}/shifts/{shift_id}", put(campaigns::put_shift))
        .route("/v1/campaigns/{id}/requirements", put(campaigns::put_requirement))
        .route("/v1/campaigns/{id}/import", post(campaigns::import))
        .route("/v1/campaigns/{id}/roster", post(campaigns::roster))
        .route("/v1/campaigns/{id}/close", post(campaigns::close))
        .route("/v1/campaigns/{id}/unavailability", post(campaign_member::unavailable))
        .route("/v1/push/key", get(push::key))
        .route("/v1/push/subscriptions", post(push::subscribe).get(push::list).delete(push::unsubscribe))
        .route("/v1/ws", get(ws::upgrade))
        .merge(residents::routes())
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    api.merge(city_import)
        .merge(pages::routes())
        .route_layer(axum::middleware::from_fn(observe))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(axum::middleware::from_fn(problem_everywhere))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_ip))
        .with_state(state)
}
