//! The README's walkthrough "One incident, by hand", as a newcomer runs it: `muster serve
//! --demo` (the real binary, default demo city), the printed staff token raises the README's
//! call in the printed grid, and the printed member is among those offered, gets the offer on
//! their socket, accepts and is assigned (issue #17, item 4).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Ws;

pub(crate) struct Demo {
    child: std::process::Child,
    pub(crate) addr: String,
    /// "staff c015" → token, "member m00029" → token, …
    tokens: HashMap<String, String>,
    grid: String,
    member: String,
    links: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(data: &std::path::Path) -> Demo {
    start_demo_with(data, &[], &[("MUSTER_LOG__FILTER", "warn")], Stdio::null())
}

/// `muster serve --demo` with more `args` and `env`, its log to `stderr`; answers once it
/// has printed its address, tokens and links.
pub(crate) fn start_demo_with(data: &std::path::Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MUSTER_AUTH__SECRET")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the muster binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut demo = Demo {
        child,
        addr: String::new(),
        tokens: HashMap::new(),
        grid: String::new(),
        member: String::new(),
        links: Vec::new(),
    };
    loop {
        let line = rx.recv_timeout(Duration::from_secs(180)).expect("the demo prints its address, tokens and links");
        if let Some(a) = line.strip_prefix("listening on http://") {
            demo.addr = a.to_string();
        } else if let Some(rest) = line.strip_prefix("staff community ") {
            // staff community c015 (台北社区), grid c015-g1; member m00029 (廖超)
            demo.grid = rest.split("grid ").nth(1).and_then(|s| s.split(';').next()).unwrap().to_string();
            demo.member = rest.split("member ").nth(1).and_then(|s| s.split(' ').next()).unwrap().to_string();
        } else if let Some(rest) = line.strip_prefix("token ") {
            let (label, token) = rest.split_once(": ").unwrap();
            demo.tokens.insert(label.to_string(), token.to_string());
        } else if let Some(rest) = line.strip_prefix("sign-in link ") {
            demo.links.push(rest.to_string());
            if rest.starts_with("member ") {
                return demo;
            }
        }
    }
}

#[tokio::test]
async fn the_readme_walkthrough_offers_the_printed_member_who_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path());
    assert!(!demo.grid.is_empty() && !demo.member.is_empty(), "the demo names its grid and member");
    let staff =
        demo.tokens.iter().find(|(k, _)| k.starts_with("staff ")).map(|(_, v)| v.clone()).expect("a staff token");
    let member_token = demo.tokens.get(&format!("member {}", demo.member)).expect("the member's token").clone();
    assert_eq!(demo.links.len(), 5, "a sign-in link per role: {:?}", demo.links);
    assert!(demo.links.iter().any(|l| l.starts_with(&format!("member {}: http://{}/join#", demo.member, demo.addr))));

    // The member's phone first, as the README has it.
    let mut phone = Ws::connect(&demo.addr, &member_token, None).await;
    assert_eq!(phone.hello["data"]["member_id"], demo.member);

    // Staff raise the README's call in the printed grid.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/incidents", demo.addr))
        .bearer_auth(&staff)
        .header("Idempotency-Key", "demo-1")
        .json(&json!({"grid_id": demo.grid, "category": "patrol", "level": "III", "headcount": 2, "note": "3号楼"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let incident: Value = r.json().await.unwrap();
    let offered: Vec<&str> =
        incident["offers"].as_array().unwrap().iter().filter_map(|o| o["member_id"].as_str()).collect();
    assert!(offered.contains(&demo.member.as_str()), "the printed member {} is offered: {offered:?}", demo.member);

    // The offer reaches the phone; the member accepts and is assigned.
    let offer = phone.next_frame().await;
    assert_eq!(offer["type"], "offer", "{offer}");
    assert_eq!(offer["data"]["incident_id"], incident["id"]);
    let offer_id = offer["data"]["offer_id"].clone();
    let ok = phone.request("accept", json!({"offer_id": offer_id})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let assignment = phone.next_frame().await;
    assert_eq!(assignment["type"], "assignment", "{assignment}");
    assert_eq!(assignment["data"]["offer_id"], offer_id);
}
