//! The region table: named points on the globe, and great-circle distance between them.
//!
//! Used to refuse a node whose region is unknown, to place per-region actors on the nearest
//! region that has live nodes, and (later) to dispatch a client to its closest region.

use serde::{Deserialize, Serialize};

use crate::ids::RegionName;

/// Mean Earth radius used by the haversine formula.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// One region of the table: a name and its coordinates in decimal degrees (east and north positive).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Region name, unique in the table.
    pub name: RegionName,
    /// Latitude in degrees, `-90..=90`.
    pub lat: f64,
    /// Longitude in degrees, `-180..=180`.
    pub lng: f64,
    /// Party managers of this region, overriding `parties.managers_per_region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<u32>,
}

/// Great-circle distance in kilometres between two points given in decimal degrees.
pub fn distance_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lng2 - lng1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().clamp(0.0, 1.0).asin()
}

/// The regions of `table`, nearest first, measured from `(lat, lng)`. Ties break by name so every
/// node orders them the same way.
pub fn by_distance(table: &[Region], lat: f64, lng: f64) -> Vec<&Region> {
    let mut regions: Vec<(&Region, f64)> = table
        .iter()
        .map(|r| (r, distance_km(lat, lng, r.lat, r.lng)))
        .collect();
    regions.sort_by(|(ra, da), (rb, db)| da.total_cmp(db).then_with(|| ra.name.cmp(&rb.name)));
    regions.into_iter().map(|(r, _)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, lat: f64, lng: f64) -> Region {
        Region {
            name: RegionName::new(name),
            lat,
            lng,
            managers: None,
        }
    }

    #[test]
    fn distance_between_dublin_and_london_is_about_464_km() {
        let d = distance_km(53.35, -6.26, 51.51, -0.13);
        assert!((d - 464.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn distance_is_symmetric_and_zero_on_the_same_point() {
        assert_eq!(distance_km(10.0, 20.0, 10.0, 20.0), 0.0);
        let a = distance_km(1.37, 103.80, -33.86, 151.20);
        let b = distance_km(-33.86, 151.20, 1.37, 103.80);
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn by_distance_orders_nearest_first() {
        let table = vec![
            region("us-east-1", 38.13, -78.45),
            region("eu-west-1", 53.35, -6.26),
            region("eu-central-1", 50.1167, 8.6833),
        ];
        let order: Vec<&str> = by_distance(&table, 52.52, 13.40)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(order, ["eu-central-1", "eu-west-1", "us-east-1"]);
    }
}
