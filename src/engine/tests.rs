//! The engine on one node: reads that wait for it, and a store that cannot write.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use std::time::Instant;

use super::*;
use crate::domain::event::Event;
use crate::domain::geo::Position;
use crate::store::StoreError;

/// A log that refuses every write while `full` is set (a full disk), and counts appends.
#[derive(Clone, Default)]
struct Disk {
    full: Arc<AtomicBool>,
    appends: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog for Disk {
    fn replay(&mut self, apply: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        self.events.lock().unwrap().iter().cloned().for_each(apply);
        Ok(())
    }
    fn append(&mut self, events: &[Event], _: &[(Frame, String)]) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.probe()?;
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
    fn load_snapshot(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(None)
    }
    fn save_positions(&mut self, _: &[(String, Position)]) -> Result<(), StoreError> {
        self.probe()
    }
    fn load_positions(&mut self) -> Result<Vec<(String, Position)>, StoreError> {
        Ok(Vec::new())
    }
    fn probe(&mut self) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other("no space left on device")));
        }
        Ok(())
    }
}

struct Nobody;
impl Publisher for Nobody {
    fn publish(&self, _: Vec<(Frame, String)>) {}
}

/// While the engine holds the state (an append in flight), a request waiting to read it
/// must not stall the other tasks of its runtime worker (the sessions pushing frames).
/// One worker: the other task runs only if the waiting read handed the worker over.
#[test]
fn a_read_waiting_for_the_engine_leaves_its_worker_to_the_other_tasks() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let rules = crate::settings::Settings::load_with_env(None, Vec::new()).unwrap().dispatch;
    let cfg = EngineConfig { mailbox: 16, batch_max: 16, position_flush: Duration::from_secs(60), replica_nice: 0 };
    let cancel = CancellationToken::new();
    let (engine, thread) = {
        let _in_rt = rt.enter();
        start(Box::new(Disk::default()), rules, Arc::new(Nobody), cfg, cancel.clone(), None)
    };
    // "The engine": holds the write lock until the other task has run, or 10 s.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
    let state = engine.state.clone();
    let holder = std::thread::spawn(move || {
        let guard = state.write().unwrap();
        held_tx.send(()).unwrap();
        let ran = ran_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        drop(guard);
        ran
    });
    held_rx.recv().unwrap();
    let (reading_tx, reading_rx) = std::sync::mpsc::channel();
    let reader = engine.clone();
    let read = rt.spawn(async move {
        reading_tx.send(()).unwrap();
        reader.read().last_seq
    });
    reading_rx.recv().unwrap();
    let other = rt.spawn(async move { ran_tx.send(()).unwrap() });
    assert!(holder.join().unwrap(), "the other task ran while the read waited");
    rt.block_on(async {
        other.await.unwrap();
        read.await.unwrap();
    });
    cancel.cancel();
    thread.join().unwrap();
}

#[tokio::test]
async fn a_store_that_cannot_write_makes_the_engine_unready_until_it_can() {
    let disk = Disk::default();
    let rules = crate::settings::Settings::load_with_env(None, Vec::new()).unwrap().dispatch;
    let cfg = EngineConfig { mailbox: 16, batch_max: 16, position_flush: Duration::from_secs(60), replica_nice: 0 };
    let cancel = CancellationToken::new();
    let (engine, thread) = start(Box::new(disk.clone()), rules, Arc::new(Nobody), cfg, cancel.clone(), None);
    while !engine.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let import = || Command::ImportCity(Box::new(crate::demo::demo_city(40, 1)));

    disk.full.store(true, Ordering::SeqCst);
    assert!(matches!(engine.submit(Actor::System, import()).await, Err(EngineError::Unavailable(_))));
    assert!(!engine.is_ready() && engine.is_started(), "not ready for writes, still serving reads");
    assert!(engine.read().city.city().is_none(), "the refused import is not in the state");
    // Within the retry delay, commands are refused without touching the store.
    let tried = disk.appends.load(Ordering::SeqCst);
    assert!(matches!(engine.submit(Actor::System, import()).await, Err(EngineError::Unavailable(_))));
    assert_eq!(disk.appends.load(Ordering::SeqCst), tried);

    // Space again: the idle probe notices, and writes work.
    disk.full.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + WRITE_RETRY * 3;
    while !engine.is_ready() {
        assert!(Instant::now() < deadline, "the engine did not notice the store is back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.submit(Actor::System, import()).await.is_ok());
    assert!(engine.read().city.city().is_some());
    cancel.cancel();
    tokio::task::spawn_blocking(move || thread.join()).await.unwrap().unwrap();
}
