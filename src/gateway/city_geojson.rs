//! The city as GeoJSON: `POST /v1/city/geojson` (with `dry_run=true`, a report that
//! changes nothing; without, the same report and the city replaced through the same
//! `ImportCity` command as `PUT /v1/city`) and `GET /v1/city/geojson` (the whole city with
//! its roster, which imports back to the same city). The conversion is `domain::geojson`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, require};
use super::error::{ApiError, Problem};
use super::{API_TAG, AppState};
use crate::domain::dispatcher::Command;
use crate::domain::geojson::{self, GeoReport};
use crate::domain::org::CityIndex;
use crate::domain::scope::Action;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GeoImportParams {
    /// `true`: only report what the import would do; nothing is changed. Default `false`:
    /// apply it (422 when the file is not a city without errors).
    #[param(example = true)]
    pub dry_run: Option<bool>,
}

/// The report of an import, and the grids as the tiling made them, for a map.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeoImportAnswer {
    #[serde(flatten)]
    pub report: GeoReport,
    /// Units, teams and members the city would have (from the file's `roster`, else the
    /// current city's).
    pub units: usize,
    pub teams: usize,
    pub members: usize,
    /// Whether the roster came from the file (`file`) or was kept from the current city
    /// (`kept`).
    pub roster: String,
    /// A FeatureCollection of the grids, each traced from its cells (`kind`, `id`,
    /// `parent`, `cells`).
    #[schema(value_type = Object)]
    pub preview: ::geojson::FeatureCollection,
}

/// Always `FeatureCollection`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum CollectionType {
    FeatureCollection,
}

/// The body: a GeoJSON FeatureCollection of districts, streets, communities and grids.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GeoCityBody {
    #[schema(rename = "type")]
    kind: CollectionType,
    /// Features whose properties are `kind`, `id`, `name`, `parent` (and a district's
    /// optional `seat` `{lat, lng}`); geometry a Polygon or MultiPolygon ([lng, lat]).
    #[schema(schema_with = features_schema)]
    features: Vec<serde_json::Value>,
    /// The city's name (optional).
    name: Option<String>,
    /// `{units, teams, members}` as in `PUT /v1/city`; when left out, the current city's
    /// roster is kept.
    #[schema(value_type = Option<geojson::Roster>)]
    roster: Option<serde_json::Value>,
}

/// `features`: GeoJSON Features (RFC 7946) as the import reads them: a Polygon or
/// MultiPolygon geometry (or null: reported, not refused) and an object of properties.
/// What the properties must say (kinds, ids, parents) is the report's to tell: a dry run
/// lists every error.
fn features_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let number = || ObjectBuilder::new().schema_type(Type::Number);
    let position = || ArrayBuilder::new().items(number()).min_items(Some(2)).max_items(Some(3));
    // RFC 7946: a linear ring has at least four positions; a polygon an exterior ring.
    let ring = || ArrayBuilder::new().items(position()).min_items(Some(4));
    let polygon = || ArrayBuilder::new().items(ring()).min_items(Some(1));
    let geometry = |kind: &str, coordinates: ArrayBuilder| {
        ObjectBuilder::new()
            .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([kind])))
            .property("coordinates", coordinates)
            .required("type")
            .required("coordinates")
    };
    let feature = ObjectBuilder::new()
        .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["Feature"])))
        .property(
            "geometry",
            OneOfBuilder::new()
                .item(geometry("Polygon", polygon()))
                .item(geometry("MultiPolygon", ArrayBuilder::new().items(polygon())))
                .item(ObjectBuilder::new().schema_type(Type::Null)),
        )
        .property(
            "properties",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::Object, Type::Null])),
        )
        .required("type")
        .required("geometry")
        .required("properties");
    ArrayBuilder::new().items(feature).build()
}

#[utoipa::path(post, path = "/v1/city/geojson", tag = API_TAG, security(("bearer" = [])), params(GeoImportParams),
    request_body(content = GeoCityBody, content_type = "application/json",
        example = json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "district", "id": "d01", "name": "江岸区", "parent": null},
            "geometry": {"type": "Polygon", "coordinates": [[[114.29, 30.59], [114.31, 30.59], [114.31, 30.61], [114.29, 30.61], [114.29, 30.59]]]}}]})),
    responses(
        (status = 200, body = GeoImportAnswer, description = "the report; `applied` tells whether the city was replaced"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "not a FeatureCollection, or errors (the first is named; dry_run=true lists them all)")))]
pub async fn import_city_geojson(
    State(app): State<AppState>,
    caller: Caller,
    params: Result<Query<GeoImportParams>, QueryRejection>,
    body: Result<Json<::geojson::FeatureCollection>, JsonRejection>,
) -> Result<Json<GeoImportAnswer>, ApiError> {
    require(&caller, Action::ImportCity)?;
    let Query(params) = params?;
    let Json(fc) = body?;
    let (name, roster) = geojson::roster_of(&fc).map_err(|e| ApiError::unprocessable("invalid_roster", e))?;
    // Tiling a city is CPU work: keep it off the async workers.
    let converted = tokio::task::spawn_blocking(move || geojson::import(&fc))
        .await
        .map_err(|e| ApiError::internal("geojson import", e))?;
    let mut report = converted.report;
    let from_file = roster.is_some();
    let (current_name, current) = {
        let state = app.engine.read();
        let current = state.city.city().map(|c| geojson::Roster {
            units: c.units.clone(),
            teams: c.teams.clone(),
            members: state.city.members().to_vec(),
        });
        // What the import itself refuses (docs/PROTOCOL.md): said in the report beforehand.
        if let Some(i) = state.incidents.values().find(|i| !i.status.is_closed()) {
            report.warnings.push(notice(
                "open_incidents",
                format!("incident {} is open: applying is refused until every incident is closed", i.id),
            ));
        }
        if let Some(m) = state.mobilizations.values().find(|m| m.is_open()) {
            report.warnings.push(notice(
                "open_mobilizations",
                format!("mobilization {} is open: applying is refused until it is closed", m.id),
            ));
        }
        (state.city.city().map(|c| c.name.clone()), current)
    };
    let roster = roster.or(current).unwrap_or_default();
    let city = converted.city.and_then(|mut city| {
        city.name = name.or(current_name).unwrap_or_default();
        city.units = roster.units.clone();
        city.teams = roster.teams.clone();
        city.members = roster.members.clone();
        // The roster against the new geography (a team's community, a member's grid) and
        // the catalog, as the import will check them.
        let unknown_skill = city.members.iter().find_map(|m| {
            let s = m.skills.iter().find(|s| !app.engine.rules.has_skill(s))?;
            Some(format!("member '{}' has skill '{s}', which is not in the catalog", m.id))
        });
        let problem = match (unknown_skill, CityIndex::build(city.clone())) {
            (Some(skill), _) => Some(("unknown_skill", skill)),
            (None, Err(e)) => Some(("roster_conflict", format!("the roster does not fit this geography: {e}"))),
            (None, Ok(_)) => None,
        };
        match problem {
            None => Some(city),
            Some((code, message)) => {
                report.errors.push(notice(code, message));
                report.ok = false;
                None
            }
        }
    });
    if !params.dry_run.unwrap_or(false) {
        let Some(city) = city else {
            let first = report.errors.first();
            let detail = match first {
                Some(f) => format!(
                    "{} error(s); the first, {}{}: {} (POST with dry_run=true for the full report); nothing was changed",
                    report.errors.len(),
                    f.code,
                    f.feature.as_deref().map(|id| format!(" at feature '{id}'")).unwrap_or_default(),
                    f.message
                ),
                None => "the geography cannot be applied".into(),
            };
            return Err(ApiError::unprocessable("invalid_geojson", detail));
        };
        app.engine.submit(caller.actor, Command::ImportCity(Box::new(city))).await?;
        report.applied = true;
    }
    let preview = geojson::preview(&report.grid_cells);
    Ok(Json(GeoImportAnswer {
        units: roster.units.len(),
        teams: roster.teams.len(),
        members: roster.members.len(),
        roster: if from_file { "file" } else { "kept" }.into(),
        report,
        preview,
    }))
}

fn notice(code: &str, message: String) -> geojson::Finding {
    geojson::Finding { code: code.into(), feature: None, message, count: 0, sample: vec![] }
}

#[utoipa::path(get, path = "/v1/city/geojson", tag = API_TAG, security(("bearer" = [])), responses(
    (status = 200, body = GeoCityBody, content_type = "application/geo+json",
     description = "the whole city: its features and, as the collection's `name` and `roster`, the rest; POST it back to get the same city"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn export_city_geojson(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    require(&caller, Action::ExportCity)?;
    let (city, members) = {
        let state = app.engine.read();
        (state.city.city.clone(), state.city.members().to_vec())
    };
    let fc = tokio::task::spawn_blocking(move || match city {
        Some(city) => geojson::export(&city, &members),
        None => ::geojson::FeatureCollection { bbox: None, features: vec![], foreign_members: None },
    })
    .await
    .map_err(|e| ApiError::internal("geojson export", e))?;
    let bytes = serde_json::to_vec(&fc).map_err(|e| ApiError::internal("geojson export", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/geo+json"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"city.geojson\""),
        ],
        bytes,
    )
        .into_response())
}
