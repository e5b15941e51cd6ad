//! The CSV file of a campaign's sites and requirements, read row by row into what the
//! domain checks (`campaign::handle::import`), keeping each item's line so that a refused
//! file can answer every refused row, not just the first.

use std::collections::HashMap;

use serde::Deserialize;

use super::campaigns::RowError;
use crate::domain::campaign::{Requirement, SiteSpec};
use crate::domain::geo::Position;

#[derive(Deserialize)]
struct Row {
    site_id: String,
    #[serde(default)]
    site_name: String,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lng: Option<f64>,
    #[serde(default)]
    grid_id: String,
    #[serde(default)]
    shift_id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    headcount: Option<u32>,
    #[serde(default)]
    skills: String,
}

/// Most rows in one file.
pub const MAX_ROWS: usize = 200_000;

pub type Parsed = (Vec<SiteSpec>, Vec<usize>, Vec<Requirement>, Vec<usize>, Vec<RowError>);

fn refuse(errors: &mut Vec<RowError>, line: usize, detail: impl Into<String>) {
    errors.push(RowError { line, code: "invalid_csv".into(), detail: detail.into() });
}

/// Sites (each once, at the line that first defines it) and requirements, with their
/// lines, and the rows that cannot be read at all.
pub fn parse(text: &str) -> Parsed {
    let mut sites: Vec<SiteSpec> = Vec::new();
    let mut site_lines = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut reqs = Vec::new();
    let mut req_lines = Vec::new();
    let mut errors = Vec::new();
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    for (i, row) in rdr.deserialize::<Row>().enumerate() {
        let line = i + 2;
        if i >= MAX_ROWS {
            refuse(&mut errors, line, format!("at most {MAX_ROWS} rows in one file"));
            break;
        }
        let r = match row {
            Ok(r) => r,
            Err(e) => {
                refuse(&mut errors, line, e.to_string());
                continue;
            }
        };
        if !r.site_name.is_empty() {
            let location = match (r.lat, r.lng) {
                (Some(lat), Some(lng)) => match Position::new(lat, lng) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        refuse(&mut errors, line, e.to_string());
                        continue;
                    }
                },
                (None, None) => None,
                _ => {
                    refuse(&mut errors, line, "give both lat and lng, or neither");
                    continue;
                }
            };
            let grid_id = Some(r.grid_id.clone()).filter(|g| !g.is_empty());
            let spec = SiteSpec { id: r.site_id.clone(), name: r.site_name.clone(), location, grid_id };
            match by_id.get(&r.site_id) {
                Some(&k) if sites[k] != spec => {
                    refuse(
                        &mut errors,
                        line,
                        format!("site '{}' is defined differently on line {}", r.site_id, site_lines[k]),
                    );
                }
                Some(_) => {}
                None => {
                    by_id.insert(r.site_id.clone(), sites.len());
                    sites.push(spec);
                    site_lines.push(line);
                }
            }
        }
        match (r.shift_id.is_empty(), r.role.is_empty(), r.headcount) {
            (true, true, None) => {
                if r.site_name.is_empty() {
                    refuse(
                        &mut errors,
                        line,
                        "a row sets a site (site_name) or a requirement (shift_id, role, headcount)",
                    );
                }
            }
            (false, false, Some(headcount)) => {
                let skills = r.skills.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                reqs.push(Requirement { site_id: r.site_id, shift_id: r.shift_id, role: r.role, headcount, skills });
                req_lines.push(line);
            }
            _ => refuse(&mut errors, line, "a requirement needs shift_id, role and headcount"),
        }
    }
    (sites, site_lines, reqs, req_lines, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_make_sites_once_and_requirements_and_say_which_lines_are_wrong() {
        let text = "site_id,site_name,lat,lng,grid_id,shift_id,role,headcount,skills\n\
                    s1,School,30.5,114.3,,am,queue_order,2,\n\
                    s1,School,30.5,114.3,,pm,registration,1,medical; driving\n\
                    s1,Other,30.5,114.3,,,,,\n\
                    s2,,,,,am,queue_order,,\n\
                    s3,Gate,30.5,,,,,,\n";
        let (sites, site_lines, reqs, req_lines, errors) = parse(text);
        assert_eq!(sites.len(), 1);
        assert_eq!(site_lines, vec![2]);
        assert_eq!(reqs.len(), 2);
        assert_eq!(req_lines, vec![2, 3]);
        assert_eq!(reqs[1].skills, vec!["medical", "driving"]);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6], "{errors:?}");
    }
}
