//! The embedded event log: per-topic, per-partition append-only logs and consumer-group
//! offsets in a SQLite file (`events.db` in the data directory), so the embedded system
//! keeps Kafka's contract (durable on publish, ordered per key, at-least-once, resumes at
//! the committed offset after a restart) with no server.
//!
//! Consumers poll their partitions and sleep on a notification between appends (with a
//! short timeout, so appends by another process are seen too).

use super::{partition_for, BusError, Delivery, EventBus, Subscription};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    appended_at_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"#;

/// How many messages a consumer reads per partition per poll.
const FETCH: i64 = 256;
/// Longest wait between polls when nothing was notified.
const IDLE_POLL: Duration = Duration::from_millis(250);

struct Inner {
    conn: Mutex<Connection>,
    partitions: u32,
    appended: Notify,
}

/// SQLite-backed [`EventBus`].
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

impl EmbeddedBus {
    /// Opens (creating when missing) `<data_dir>/events.db`.
    pub fn open(data_dir: &Path, partitions: u32) -> Result<Self, BusError> {
        std::fs::create_dir_all(data_dir).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let conn = Connection::open(data_dir.join("events.db")).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        Self::with_connection(conn, partitions)
    }

    /// A bus that lives in memory only: for unit tests.
    pub fn in_memory(partitions: u32) -> Result<Self, BusError> {
        Self::with_connection(Connection::open_in_memory().map_err(sql)?, partitions)
    }

    fn with_connection(conn: Connection, partitions: u32) -> Result<Self, BusError> {
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self { inner: Arc::new(Inner { conn: Mutex::new(conn), partitions: partitions.max(1), appended: Notify::new() }) })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BusError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(sql)
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }
}

fn sql(e: rusqlite::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        let partition = partition_for(key, self.inner.partitions);
        let (topic, key) = (topic.to_string(), key.to_string());
        self.with(move |c| {
            let tx = c.transaction()?;
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(offset) + 1, 0) FROM events WHERE topic = ?1 AND partition = ?2",
                params![topic, partition],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO events (topic, partition, offset, key, payload, appended_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![topic, partition, next, key, payload, now_ms()],
            )?;
            tx.commit()
        })
        .await?;
        self.inner.appended.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        let partitions = self.inner.partitions;
        let (t, g) = (topic.to_string(), group.to_string());
        let positions = self
            .with(move |c| {
                let mut positions = Vec::with_capacity(partitions as usize);
                for p in 0..partitions as i32 {
                    let committed: Option<i64> = c
                        .query_row(
                            "SELECT next_offset FROM consumer_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
                            params![g, t, p],
                            |r| r.get(0),
                        )
                        .optional()?;
                    positions.push(committed.unwrap_or(0));
                }
                Ok(positions)
            })
            .await?;
        Ok(Box::new(EmbeddedSubscription {
            bus: self.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
            positions,
            buffer: VecDeque::new(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

struct EmbeddedSubscription {
    bus: EmbeddedBus,
    topic: String,
    group: String,
    /// Next offset to read, per partition (read position, not the committed one).
    positions: Vec<i64>,
    buffer: VecDeque<Delivery>,
}

impl EmbeddedSubscription {
    async fn fetch(&mut self) -> Result<(), BusError> {
        let topic = self.topic.clone();
        let positions = self.positions.clone();
        let batch = self
            .bus
            .with(move |c| {
                let mut out = Vec::new();
                let mut stmt = c.prepare_cached(
                    "SELECT offset, key, payload FROM events
                     WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
                )?;
                for (p, from) in positions.iter().enumerate() {
                    let rows = stmt.query_map(params![topic, p as i32, from, FETCH], |r| {
                        Ok(Delivery {
                            topic: topic.clone(),
                            partition: p as i32,
                            offset: r.get(0)?,
                            key: r.get(1)?,
                            payload: r.get(2)?,
                        })
                    })?;
                    for row in rows {
                        out.push(row?);
                    }
                }
                Ok(out)
            })
            .await?;
        for d in batch {
            self.positions[d.partition as usize] = d.offset + 1;
            self.buffer.push_back(d);
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            let inner = self.bus.inner.clone();
            let appended = inner.appended.notified();
            self.fetch().await?;
            if self.buffer.is_empty() {
                let _ = tokio::time::timeout(IDLE_POLL, appended).await;
            }
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let (g, t, p, next) = (self.group.clone(), self.topic.clone(), delivery.partition, delivery.offset + 1);
        self.bus
            .with(move |c| {
                c.execute(
                    "INSERT INTO consumer_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                    params![g, t, p, next],
                )
                .map(|_| ())
            })
            .await
    }

    /// Messages appended after the read position, plus those fetched but not handed out.
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        let topic = self.topic.clone();
        let partitions = self.positions.len() as i32;
        // One primary-key lookup per partition (the last offset), never a scan of the log.
        let heads: Vec<(i32, i64)> = self
            .bus
            .with(move |c| {
                let mut stmt = c.prepare_cached("SELECT COALESCE(MAX(offset) + 1, 0) FROM events WHERE topic = ?1 AND partition = ?2")?;
                (0..partitions).map(|p| stmt.query_row(params![topic, p], |r| r.get(0)).map(|head| (p, head))).collect()
            })
            .await?;
        let unread: i64 = heads
            .iter()
            .map(|(p, head)| head - self.positions.get(*p as usize).copied().unwrap_or(0))
            .filter(|n| *n > 0)
            .sum();
        Ok(Some(u64::try_from(unread).unwrap_or(0) + self.buffer.len() as u64))
    }
}
