//! Issue 17, item 3: coverage is checked, not claimed. `src/web/coverage.json`, kept beside
//! the pages, puts every operation of /openapi.json in one of three lists:
//!
//! - `pages`: the page that reaches it and the script that calls it. Checked mechanically:
//!   the script is loaded by that page (its module or one it imports, transitively), and
//!   its text holds the operation's path (each `{param}` written as a `${...}` template
//!   substitution), with the method named near it for anything but GET.
//! - `api_only`: operations no page should have, each with its reason.
//! - `not_yet`: operations a page should reach but none does yet; printed by the test, so
//!   the gap is in plain sight (the lead tracks them).
//!
//! The test fails on an operation in no list or in two, on an entry naming an operation
//! the server does not have, and on a `pages` entry the page's code does not bear out.

use std::collections::{BTreeMap, BTreeSet};

use muster::gateway::pages::PAGES;

use super::*;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web")
}

fn web_file(name: &str) -> String {
    std::fs::read_to_string(web_dir().join(name)).unwrap_or_else(|e| panic!("src/web/{name}: {e}"))
}

/// The scripts a page runs: its module and every module imported from it, transitively.
fn page_scripts(main: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![main.to_string()];
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let text = web_file(&f);
        for part in text.split("from \"/web/").skip(1) {
            if let Some(end) = part.find('"') {
                todo.push(part[..end].to_string());
            }
        }
    }
    seen
}

/// Where in `code` the path template `/v1/orders/{id}/claim` is written: as a string or
/// template literal, each `{param}` a `${...}` substitution, ending at a quote, a backtick
/// or a query string. Answers the byte offsets of each place it starts.
fn find_path(code: &str, template: &str) -> Vec<usize> {
    // The template as literal pieces between its parameters.
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c).expect("a closed {param}");
        pieces.push(&rest[..open]);
        rest = &rest[close + 1..];
    }
    pieces.push(rest);
    let mut found = Vec::new();
    for (start, _) in code.match_indices(pieces[0]) {
        // It starts a string: a quote or backtick just before.
        if !matches!(code[..start].chars().last(), Some('"' | '\'' | '`')) {
            continue;
        }
        let mut at = start + pieces[0].len();
        let mut ok = true;
        for piece in &pieces[1..] {
            // A `${...}` (balanced parentheses inside are fine), then the next piece.
            if !code[at..].starts_with("${") {
                ok = false;
                break;
            }
            let Some(close) = code[at..].find('}') else {
                ok = false;
                break;
            };
            at += close + 1;
            if !code[at..].starts_with(piece) {
                ok = false;
                break;
            }
            at += piece.len();
        }
        if ok && matches!(code[at..].chars().next(), Some('"' | '\'' | '`' | '?')) {
            found.push(start);
        }
    }
    found
}

/// Is the method named (as a string) within a short distance of the path's place?
fn method_near(code: &str, at: usize, method: &str) -> bool {
    let quoted = format!("\"{method}\"");
    let from = code[..at].char_indices().rev().nth(120).map_or(0, |(i, _)| i);
    let to = code[at..].char_indices().nth(200).map_or(code.len(), |(i, _)| at + i);
    code[from..to].contains(&quoted)
}

#[tokio::test]
async fn every_operation_is_reached_by_a_page_or_named_api_only() {
    let app = spawn_app().await;
    let doc: Value = reqwest::get(app.url("/openapi.json")).await.unwrap().json().await.unwrap();
    app.stop().await;
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(ops.len() > 40, "the document lists the operations: {ops:?}");

    let cov: Value = serde_json::from_str(&web_file("coverage.json")).expect("src/web/coverage.json is JSON");
    let mut listed: BTreeMap<String, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for list in ["pages", "api_only", "not_yet"] {
        for e in cov[list].as_array().unwrap_or_else(|| panic!("coverage.json has a `{list}` list")) {
            let op = e["op"].as_str().unwrap_or_else(|| panic!("{list}: an entry without `op`: {e}")).to_string();
            if !ops.contains(&op) {
                problems.push(format!("{list}: {op} is not an operation of /openapi.json"));
            }
            if let Some(other) = listed.insert(op.clone(), list) {
                problems.push(format!("{op} is in both `{other}` and `{list}`"));
            }
            let why = e["reason"].as_str().or(e["page"].as_str()).unwrap_or("");
            if why.trim().is_empty() {
                problems.push(format!("{list}: {op} needs a `page` or a `reason`"));
            }
        }
    }
    for op in &ops {
        if !listed.contains_key(op) {
            problems.push(format!("{op} is in no list of src/web/coverage.json (pages, api_only or not_yet)"));
        }
    }

    // Each page entry, checked against the page's own code.
    let pages: BTreeMap<&str, &str> = PAGES.iter().map(|p| (p.path, p.name)).collect();
    for e in cov["pages"].as_array().unwrap() {
        let op = e["op"].as_str().unwrap();
        let (method, path) = op.split_once(' ').unwrap();
        let page = e["page"].as_str().unwrap_or("");
        let file = e["file"].as_str().unwrap_or("");
        let Some(name) = pages.get(page) else {
            problems.push(format!("{op}: no page {page:?}"));
            continue;
        };
        let scripts = page_scripts(&format!("{name}.js"));
        if !scripts.contains(file) {
            problems.push(format!("{op}: {page} does not load {file:?} (it runs {scripts:?})"));
            continue;
        }
        let code = web_file(file);
        let places = find_path(&code, path);
        if places.is_empty() {
            problems.push(format!("{op}: {file} (on {page}) never writes the path {path}"));
        } else if method != "GET" && !places.iter().any(|&at| method_near(&code, at, method)) {
            problems.push(format!("{op}: {file} writes {path} but never with the method {method} near it"));
        }
    }

    let not_yet: Vec<String> = cov["not_yet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}  ({})", e["op"].as_str().unwrap_or("?"), e["page"].as_str().unwrap_or("")))
        .collect();
    println!("operations no page reaches yet ({}):\n  {}", not_yet.len(), not_yet.join("\n  "));
    assert!(problems.is_empty(), "page coverage (src/web/coverage.json):\n  {}", problems.join("\n  "));
}

#[test]
fn the_path_finder_finds_what_is_written_and_nothing_else() {
    let code = r#"api("POST", `/v1/orders/${encodeURIComponent(id)}/claim`, {}); fetch("/v1/session", {method: "POST"});
        api("GET", "/v1/members" + q); api("GET", `/v1/members/${id}/exchange-ish`); x = "/v1/ordersx";"#;
    assert_eq!(find_path(code, "/v1/orders/{id}/claim").len(), 1);
    assert!(method_near(code, find_path(code, "/v1/orders/{id}/claim")[0], "POST"));
    assert_eq!(find_path(code, "/v1/session").len(), 1);
    assert_eq!(find_path(code, "/v1/members").len(), 1);
    assert!(find_path(code, "/v1/members/{id}/exchange").is_empty(), "exchange-ish is another path");
    assert!(find_path(code, "/v1/orders").is_empty(), "/v1/ordersx is another path");
    assert!(find_path(code, "/v1/orders/{id}/cancel").is_empty());
    assert!(!method_near(code, find_path(code, "/v1/members")[0], "PUT"));
}
