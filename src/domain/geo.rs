//! Positions, H3 cells and distances.
//!
//! Everything geographic in muster goes through these two newtypes, so a latitude out of
//! range or a malformed cell can never reach the dispatcher: they are refused at parse time
//! with a message a person can act on.

use std::fmt;
use std::str::FromStr;

use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The resolution at which members are bucketed and grids are drawn (res 9: ~0.1 km², edge ~174 m).
pub const MATCH_RES: Resolution = Resolution::Nine;

/// Mean Earth radius used by the haversine formula, in metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position, always finite and in range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Position {
    #[schema(minimum = -90, maximum = 90, example = 30.5971)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180, example = 114.3090)]
    pub lng: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeoError {
    #[error("latitude {0} is not a number between -90 and 90")]
    Latitude(f64),
    #[error("longitude {0} is not a number between -180 and 180")]
    Longitude(f64),
    #[error("'{0}' is not an H3 cell (expected 15 hexadecimal digits, e.g. 8940c2ee1a3ffff)")]
    Cell(String),
    #[error("H3 cell {0} is at resolution {1}; grids use resolution 9")]
    CellResolution(String, u8),
}

impl Position {
    pub fn new(lat: f64, lng: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude(lat));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(GeoError::Longitude(lng));
        }
        Ok(Self { lat, lng })
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(self, other: Position) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlng = (other.lng - self.lng).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// The resolution-9 cell holding this position.
    pub fn cell(self) -> Cell {
        let ll = LatLng::new(self.lat, self.lng).expect("Position is validated at construction");
        Cell(ll.to_cell(MATCH_RES))
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            lat: f64,
            lng: f64,
        }
        let raw = Raw::deserialize(d)?;
        Position::new(raw.lat, raw.lng).map_err(serde::de::Error::custom)
    }
}

/// A resolution-9 H3 cell, written as its 15-hex-digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell(pub CellIndex);

impl Cell {
    pub fn center(self) -> Position {
        let ll = LatLng::from(self.0);
        Position { lat: ll.lat(), lng: ll.lng() }
    }

    /// The cells at exactly grid distance `k`, falling back to the safe (slower) algorithm
    /// near pentagons where the fast one gives up.
    pub fn ring(self, k: u32) -> Vec<Cell> {
        let fast: Option<Vec<CellIndex>> = self.0.grid_ring_fast(k).collect();
        match fast {
            Some(cells) => cells.into_iter().map(Cell).collect(),
            None => self.0.grid_disk_distances_safe(k).filter(|(_, d)| *d == k).map(|(c, _)| Cell(c)).collect(),
        }
    }

    /// The cell and its immediate neighbours.
    pub fn disk1(self) -> Vec<Cell> {
        self.0.grid_disk::<Vec<_>>(1).into_iter().map(Cell).collect()
    }
}

impl FromStr for Cell {
    type Err = GeoError;
    fn from_str(s: &str) -> Result<Self, GeoError> {
        let idx = CellIndex::from_str(s).map_err(|_| GeoError::Cell(s.to_string()))?;
        if idx.resolution() != MATCH_RES {
            return Err(GeoError::CellResolution(s.to_string(), u8::from(idx.resolution())));
        }
        Ok(Cell(idx))
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_out_of_range_or_nan_are_refused() {
        for (lat, lng) in [(91.0, 0.0), (-90.5, 0.0), (f64::NAN, 0.0), (0.0, 181.0), (0.0, f64::INFINITY)] {
            assert!(Position::new(lat, lng).is_err(), "{lat},{lng}");
        }
        assert!(Position::new(30.59, 114.30).is_ok());
    }

    #[test]
    fn positions_deserialize_with_validation() {
        assert!(serde_json::from_str::<Position>(r#"{"lat":30.5,"lng":114.3}"#).is_ok());
        assert!(serde_json::from_str::<Position>(r#"{"lat":300,"lng":114.3}"#).is_err());
        assert!(serde_json::from_str::<Position>(r#"{"lat":30.5}"#).is_err());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Wuhan (Jiang'an seat) to Wuchang seat: about 5.6 km.
        let a = Position::new(30.60, 114.31).unwrap();
        let b = Position::new(30.55, 114.32).unwrap();
        let d = a.distance_m(b);
        assert!((5_500.0..5_700.0).contains(&d), "{d}");
        assert_eq!(a.distance_m(a), 0.0);
    }

    #[test]
    fn cells_round_trip_as_hex_and_refuse_garbage() {
        let p = Position::new(30.59, 114.30).unwrap();
        let c = p.cell();
        let s = c.to_string();
        assert_eq!(s.len(), 15);
        assert_eq!(s.parse::<Cell>().unwrap(), c);
        assert!("zzz".parse::<Cell>().is_err());
        // a resolution-7 cell is a real cell but not a grid cell
        let coarse = LatLng::new(30.59, 114.30).unwrap().to_cell(Resolution::Seven).to_string();
        assert!(matches!(coarse.parse::<Cell>(), Err(GeoError::CellResolution(..))));
    }

    #[test]
    fn rings_grow_as_hexagons_do() {
        let c = Position::new(30.59, 114.30).unwrap().cell();
        assert_eq!(c.ring(0), vec![c]);
        assert_eq!(c.ring(1).len(), 6);
        assert_eq!(c.ring(2).len(), 12);
        assert_eq!(c.disk1().len(), 7);
    }
}
