//! The embedded store under the Delta surge's acknowledgements: what one group commit of
//! answers costs `SqliteLog::append`, the engine's largest share while members answer.
//!
//! Run with `cargo bench --bench append`. Each round opens a fresh store in a temporary
//! directory (on the same disk as the system's temp dir), logs the order as the engine
//! does (one event and 16,000 `mobilization.order` frames of about 330 bytes, one per
//! member stream), then appends the 16,000 acknowledgements in batches of 1,024 (the
//! default `engine.batch_max`; `-- --batch N` for another size: a live surge's batches
//! are smaller, ~160 on average, as the engine takes what has arrived): per answer one
//! event and the member's `mobilization.state` frame, per batch the tally (one event, a
//! `mobilization.progress` frame for the city and one for each district answered in,
//! listing its answers), with real seqs and texts of real size. It prints, per round, the
//! time of the order's append and, over the answer batches, mean, p50, max and total, then
//! the mean over the rounds. fsync is included (`synchronous = FULL`), as in production.
//! Under `cargo test --benches` it runs one small round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use muster::domain::event::{Event, EventBody, Frame, FrameEncoder, TeamOrder};
use muster::store::EventLog;
use muster::store::sqlite::SqliteLog;

const AT: i64 = 1_627_862_400_000;

fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn encode(frames: Vec<Frame>) -> Vec<(Frame, String)> {
    let mut enc = FrameEncoder::default();
    frames
        .into_iter()
        .map(|f| {
            let text = enc.encode(&f);
            (f, text)
        })
        .collect()
}

/// One round: the order's append, then the answers' appends (durations).
fn round(members: usize, batch: usize) -> (Duration, Vec<Duration>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut log = SqliteLog::open(dir.path()).expect("the store opens");
    let member = |i: usize| format!("m{i:05}");
    let districts = 13;

    let order = Event {
        seq: 1,
        at: AT,
        actor: "command".into(),
        body: EventBody::MobilizationOrdered {
            mobilization_id: "mob-1".into(),
            teams: (0..312).map(|t| TeamOrder { team_id: format!("t{t:03}"), community_id: None }).collect(),
            site: None,
            deadline: AT + 3_600_000,
            note: Some("Delta surge".into()),
        },
    };
    let data = Arc::new(json!({
        "mobilization_id": "mob-1",
        "team": {"id": "t001", "name": "Assault team 1 of the district's hospital"},
        "report_to": {"id": "c001", "name": "Community 1", "center": {"lat": 30.5928, "lng": 114.3055}},
        "deadline": "2021-08-02T01:00:00Z",
        "note": "Delta surge: report to your paired community for testing",
    }));
    let frames: Vec<Frame> = (0..members)
        .map(|i| Frame {
            stream: format!("member:{}", member(i)),
            seq: 1,
            kind: "mobilization.order",
            data: data.clone().into(),
        })
        .collect();
    let frames = encode(frames);
    let started = Instant::now();
    log.append(&[order], &frames).expect("the order is logged");
    let order_took = started.elapsed();

    let mut seq = 1u64;
    let mut district_seq = vec![0u64; districts];
    let mut took = Vec::new();
    for (city_seq, chunk) in (1u64..).zip((0..members).collect::<Vec<_>>().chunks(batch)) {
        let mut events = Vec::with_capacity(chunk.len() + 1);
        let mut frames = Vec::with_capacity(chunk.len() + 1 + districts);
        // district -> the changes of its members in this batch
        let mut changes: Vec<Vec<serde_json::Value>> = vec![Vec::new(); districts];
        for &i in chunk {
            seq += 1;
            events.push(Event {
                seq,
                at: AT + 1_000,
                actor: format!("member:{}", member(i)),
                body: EventBody::MobilizationAcknowledged {
                    mobilization_id: "mob-1".into(),
                    member_id: member(i),
                    batched: true,
                    answer_id: None,
                },
            });
            let own = json!({"mobilization_id": "mob-1", "state": "acknowledged"});
            frames.push(Frame {
                stream: format!("member:{}", member(i)),
                seq: 2,
                kind: "mobilization.state",
                data: Arc::new(own).into(),
            });
            changes[i % districts].push(json!({
                "member_id": member(i),
                "team_id": format!("t{:03}", i % 312),
                "community_id": format!("c{:03}", i % 188),
                "state": "acknowledged",
            }));
        }
        // The batch's tally: one progress frame for the city, one per district answered in.
        seq += 1;
        events.push(Event {
            seq,
            at: AT + 1_000,
            actor: "system".into(),
            body: EventBody::MobilizationTallied { mobilization_id: "mob-1".into() },
        });
        let progress = json!({"ordered": members, "acknowledged": seq - 2, "reported": 0, "missing": members});
        let all: Vec<serde_json::Value> = changes.iter().flatten().cloned().collect();
        frames.push(Frame {
            stream: "city".into(),
            seq: city_seq,
            kind: "mobilization.progress",
            data: Arc::new(json!({"mobilization_id": "mob-1", "progress": progress, "changes": all})).into(),
        });
        for (d, changes) in changes.into_iter().enumerate().filter(|(_, c)| !c.is_empty()) {
            district_seq[d] += 1;
            frames.push(Frame {
                stream: format!("district:d{d:02}"),
                seq: district_seq[d],
                kind: "mobilization.progress",
                data: Arc::new(json!({"mobilization_id": "mob-1", "progress": progress, "changes": changes})).into(),
            });
        }
        let frames = encode(frames);
        let started = Instant::now();
        log.append(&events, &frames).expect("the answers are logged");
        took.push(started.elapsed());
    }
    (order_took, took)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let (members, rounds) = if full_mode() { (16_000, 5) } else { (500, 1) };
    let args: Vec<String> = std::env::args().collect();
    let batch = match args.iter().position(|a| a == "--batch") {
        Some(i) => args.get(i + 1).and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--batch takes a size > 0"),
        None => 1_024,
    };
    println!("append: {members} members, answers in batches of {batch}, {rounds} rounds (ms)");
    println!(
        "{:>6} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "round", "order", "batch mean", "batch p50", "batch max", "answers"
    );
    let (mut order_sum, mut answers_sum) = (0.0, 0.0);
    for r in 0..rounds {
        let (order, mut took) = round(members, batch);
        let total: Duration = took.iter().sum();
        took.sort();
        let mean = ms(total) / took.len() as f64;
        println!(
            "{:>6} {:>8.1} {:>10.2} {:>10.2} {:>10.2} {:>10.1}",
            r + 1,
            ms(order),
            mean,
            ms(took[took.len() / 2]),
            ms(*took.last().expect("batches")),
            ms(total)
        );
        order_sum += ms(order);
        answers_sum += ms(total);
    }
    println!(
        "mean over {rounds} rounds: order {:.1} ms, all answers {:.1} ms ({:.1} µs per answer)",
        order_sum / rounds as f64,
        answers_sum / rounds as f64,
        answers_sum / rounds as f64 * 1000.0 / members as f64
    );
}
