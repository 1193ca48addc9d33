//! A micro-measurement of the embedded log's group commit, not a test of behaviour: ignored,
//! so CI never runs it. Run it by hand (best with `--release`):
//!
//! ```text
//! cargo test -p hissaback-topics --test embedded_throughput -- --ignored --nocapture
//! ```
//!
//! 64 callers publish concurrently on a single-threaded runtime (the service pinned to one
//! core) into a file-backed log with `synchronous=FULL`; it prints durable publishes per second.

use hissaback_topics::bus::embedded::EmbeddedBus;
use hissaback_topics::EventBus;
use std::sync::Arc;
use std::time::Instant;

const CALLERS: u32 = 64;
const PER_CALLER: u32 = 500;

#[test]
#[ignore = "a measurement; run by hand"]
fn durable_publishes_per_second_with_64_callers() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), 8).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let payload = vec![7u8; 200];
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|c| {
                let (bus, payload) = (bus.clone(), payload.clone());
                tokio::spawn(async move {
                    for i in 0..PER_CALLER {
                        bus.publish("postbacks", &format!("conversion:{c}:{i}"), payload.clone()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    let total = f64::from(CALLERS * PER_CALLER);
    println!(
        "{} durable publishes by {CALLERS} callers in {:.2?}: {:.0}/s",
        CALLERS * PER_CALLER,
        elapsed,
        total / elapsed.as_secs_f64()
    );
}
