//! The embedded event log: per-topic, per-partition append-only logs and consumer-group
//! offsets in a SQLite file (`events.db` in the data directory), so the embedded system
//! keeps Kafka's contract (durable on publish, ordered per key, at-least-once, resumes at
//! the committed offset after a restart) with no server.
//!
//! # Writes: one writer thread, group commit
//!
//! Every write (appends and consumer-offset commits) goes to one writer thread that owns the
//! write connection. It blocks for a first request, takes every other request already queued
//! (up to 4,096 messages), writes them all in one transaction and commits once, then answers
//! each caller and wakes the consumers. With `synchronous=FULL` a commit is an fsync,
//! and an fsync costs far more than an insert, so callers that arrive together share one: a
//! publish still returns only once it is durable, but the cost of durability is paid per
//! group, not per message (while one group is being synced the next one queues up). A failed
//! group fails every request in it with [`BusError::Unavailable`]; nothing of it is kept.
//!
//! The writer keeps the next offset of each (topic, partition) in memory, read once with
//! `MAX(offset) + 1` when the partition is first appended to, so an append is one insert and
//! no read. That assumes one process writes a data directory's log (the service's rule); if
//! another writer appended meanwhile, the insert conflicts on the primary key, the group
//! fails and the cached heads are dropped, so the next group reads them again.
//!
//! Callers hand a request over a channel and await a oneshot reply: no blocking-pool task
//! per publish. The file-backed log gives the writer a connection of its own (WAL lets reads
//! go on while it writes); the in-memory log (for tests) has one connection, shared.
//!
//! # Reads
//!
//! Consumers fetch from their partitions on the blocking pool (one query per partition, up to
//! a batch's worth in all, starting at a rotating partition so none is starved), buffer what
//! they fetched and sleep on a notification between appends (with a short timeout, so
//! appends by another process are seen too). A fetch only changes the subscription after it
//! returned, so dropping a waiting `next`/`next_batch` loses nothing.

use super::{partition_for, BusError, Delivery, EventBus, Subscription};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

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

const HEAD: &str = "SELECT COALESCE(MAX(offset) + 1, 0) FROM events WHERE topic = ?1 AND partition = ?2";
const APPEND: &str =
    "INSERT INTO events (topic, partition, offset, key, payload, appended_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const COMMIT: &str = "INSERT INTO consumer_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)";

/// How many messages `next` fetches at a time (over all partitions).
const FETCH: usize = 256;
/// Longest wait between polls when nothing was notified.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Most messages one group commit takes; more stay queued for the next group.
const GROUP_MAX: usize = 4096;

type Reply = oneshot::Sender<Result<(), BusError>>;

/// A request to the writer thread.
enum Write {
    Append { topic: String, messages: Vec<(String, Vec<u8>)>, reply: Reply },
    Commit { group: String, topic: String, offsets: Vec<(i32, i64)>, reply: Reply },
}

impl Write {
    fn size(&self) -> usize {
        match self {
            Write::Append { messages, .. } => messages.len().max(1),
            Write::Commit { .. } => 1,
        }
    }

    fn answer(self, result: Result<(), BusError>) {
        let (Write::Append { reply, .. } | Write::Commit { reply, .. }) = self;
        // The caller may have stopped waiting; the write stands either way.
        let _ = reply.send(result);
    }
}

struct Inner {
    /// Reads: fetches, committed positions, lag, ping. In memory, also the writer's.
    reader: Arc<Mutex<Connection>>,
    partitions: u32,
    appended: Arc<Notify>,
    /// `Some` until drop; closing it stops the writer once the queue is drained.
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
}

/// Waits for the writer to finish what was queued, so a log reopened after its bus is
/// dropped sees every acknowledged write and no second writer overlaps the first.
impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
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
        let path = data_dir.join("events.db");
        let open = || -> Result<Connection, BusError> {
            let conn = Connection::open(&path).map_err(sql)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
            configure(conn)
        };
        let writer = open()?;
        let reader = open()?;
        Self::start(Arc::new(Mutex::new(reader)), Arc::new(Mutex::new(writer)), partitions)
    }

    /// A bus that lives in memory only: for unit tests.
    pub fn in_memory(partitions: u32) -> Result<Self, BusError> {
        let conn = Arc::new(Mutex::new(configure(Connection::open_in_memory().map_err(sql)?)?));
        Self::start(conn.clone(), conn, partitions)
    }

    fn start(reader: Arc<Mutex<Connection>>, writer_conn: Arc<Mutex<Connection>>, partitions: u32) -> Result<Self, BusError> {
        let partitions = partitions.max(1);
        let appended = Arc::new(Notify::new());
        let (writes, queue) = mpsc::channel();
        let wake = appended.clone();
        let writer = std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || run_writer(&writer_conn, &queue, &wake, partitions))
            .map_err(|e| BusError::Other(format!("starting the embedded log writer: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { reader, partitions, appended, writes: Some(writes), writer: Some(writer) }) })
    }

    /// Runs a read on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BusError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(sql)
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }

    /// Hands a write to the writer thread and waits until it is durable (or failed).
    async fn write(&self, make: impl FnOnce(Reply) -> Write) -> Result<(), BusError> {
        let (reply, answer) = oneshot::channel();
        let writes = self.inner.writes.as_ref().ok_or_else(writer_stopped)?;
        writes.send(make(reply)).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

fn configure(conn: Connection) -> Result<Connection, BusError> {
    tune(&conn).map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    Ok(conn)
}

/// Settings every connection to an embedded SQLite file gets (the log's and the store's):
/// - the query planner keeps one plan per statement (`QPSG`): without it, a statement whose
///   plan may depend on a bound value (a `LIMIT ?`, a range on `?`) is re-prepared on every
///   new binding, which cost the log's consumers 7% of a core;
/// - a 16 MiB page cache and the file memory-mapped (256 MiB), so hot pages are neither
///   re-read nor copied through `pread`;
/// - a WAL checkpoint every 16,384 pages (64 MiB) instead of 1,000: a page written many
///   times between checkpoints is copied back to the file once.
pub fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.pragma_update(None, "mmap_size", 268_435_456)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn sql(e: rusqlite::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn writer_stopped() -> BusError {
    BusError::Unavailable("the embedded log writer has stopped".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Next offset per partition of each topic appended to since start (`None`: not read yet).
type Heads = HashMap<String, Vec<Option<i64>>>;

/// The writer thread: one transaction and one commit per group of queued requests, until
/// every sender is gone and the queue is empty.
fn run_writer(conn: &Mutex<Connection>, queue: &mpsc::Receiver<Write>, appended: &Notify, partitions: u32) {
    let mut heads = Heads::new();
    let mut group: Vec<Write> = Vec::new();
    // A disk that refuses writes fails every group: logged once, then once a minute.
    let failing = crate::lograte::LogRate::new("embedded event log: group write").warn();
    while let Ok(first) = queue.recv() {
        let mut size = first.size();
        group.push(first);
        while size < GROUP_MAX {
            match queue.try_recv() {
                Ok(w) => {
                    size += w.size();
                    group.push(w);
                }
                Err(_) => break,
            }
        }
        let result = {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            write_group(&mut conn, &mut heads, &group, partitions)
        };
        match result {
            Ok(any_appended) => {
                if any_appended {
                    appended.notify_waiters();
                }
                failing.success();
                group.drain(..).for_each(|w| w.answer(Ok(())));
            }
            Err(e) => {
                // The transaction was rolled back: what the heads say may not be stored.
                heads.clear();
                tracing::debug!(error = %e, requests = group.len(), "embedded event log: group write failed");
                failing.failure(&e);
                let message = e.to_string();
                group.drain(..).for_each(|w| w.answer(Err(BusError::Unavailable(message.clone()))));
            }
        }
    }
}

/// Writes one group in one transaction; true when it appended something.
fn write_group(conn: &mut Connection, heads: &mut Heads, group: &[Write], partitions: u32) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut any_appended = false;
    {
        let now = now_ms();
        let mut head = tx.prepare_cached(HEAD)?;
        let mut append = tx.prepare_cached(APPEND)?;
        let mut commit = tx.prepare_cached(COMMIT)?;
        for w in group {
            match w {
                Write::Append { topic, messages, .. } => {
                    if !heads.contains_key(topic.as_str()) {
                        heads.insert(topic.clone(), vec![None; partitions as usize]);
                    }
                    let topic_heads = heads.get_mut(topic.as_str()).expect("inserted above");
                    for (key, payload) in messages {
                        let partition = partition_for(key, partitions);
                        let slot = &mut topic_heads[partition as usize];
                        let offset = match *slot {
                            Some(next) => next,
                            None => head.query_row(params![topic, partition], |r| r.get(0))?,
                        };
                        append.execute(params![topic, partition, offset, key, payload, now])?;
                        *slot = Some(offset + 1);
                        any_appended = true;
                    }
                }
                Write::Commit { group, topic, offsets, .. } => {
                    for (partition, next) in offsets {
                        commit.execute(params![group, topic, partition, next])?;
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok(any_appended)
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.write(|reply| Write::Append { topic: topic.to_string(), messages: vec![(key.to_string(), payload)], reply })
            .await
    }

    /// One request to the writer, so the whole batch lands in one transaction, in order.
    async fn publish_batch(&self, topic: &str, messages: Vec<(String, Vec<u8>)>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.write(|reply| Write::Append { topic: topic.to_string(), messages, reply }).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        let partitions = self.inner.partitions;
        let (t, g) = (topic.to_string(), group.to_string());
        let positions = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT next_offset FROM consumer_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
                )?;
                let mut positions = Vec::with_capacity(partitions as usize);
                for p in 0..partitions as i32 {
                    let committed: Option<i64> = stmt.query_row(params![g, t, p], |r| r.get(0)).optional()?;
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
            first_partition: 0,
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.inner.writer.as_ref().is_none_or(JoinHandle::is_finished) {
            return Err(writer_stopped());
        }
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

struct EmbeddedSubscription {
    bus: EmbeddedBus,
    topic: String,
    group: String,
    /// Next offset to read, per partition (read position, not the committed one).
    positions: Vec<i64>,
    /// Fetched, not handed out yet; each partition's deliveries in offset order.
    buffer: VecDeque<Delivery>,
    /// Where the next fetch starts, so a busy partition does not starve the others.
    first_partition: usize,
}

impl EmbeddedSubscription {
    /// Reads up to `limit` deliveries past the read positions into the buffer. The
    /// subscription changes only after the read returned: dropping this future loses nothing.
    async fn fetch(&mut self, limit: usize) -> Result<(), BusError> {
        let topic = self.topic.clone();
        let positions = self.positions.clone();
        let first = self.first_partition;
        let batch = self
            .bus
            .read(move |c| {
                let mut out = Vec::new();
                let mut stmt = c.prepare_cached(
                    "SELECT offset, key, payload FROM events
                     WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
                )?;
                let n = positions.len();
                for p in (0..n).map(|i| (first + i) % n) {
                    let remaining = limit.saturating_sub(out.len());
                    if remaining == 0 {
                        break;
                    }
                    let rows = stmt.query_map(params![topic, p as i32, positions[p], remaining as i64], |r| {
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
        self.first_partition = (first + 1) % self.positions.len().max(1);
        for d in batch {
            self.positions[d.partition as usize] = d.offset + 1;
            self.buffer.push_back(d);
        }
        Ok(())
    }

    /// Fetches until the buffer holds something, sleeping between appends. True when it
    /// fetched (the buffer is as full as the log allows right now).
    async fn fill(&mut self, limit: usize) -> Result<bool, BusError> {
        if !self.buffer.is_empty() {
            return Ok(false);
        }
        loop {
            let inner = self.bus.inner.clone();
            let appended = inner.appended.notified();
            self.fetch(limit).await?;
            if !self.buffer.is_empty() {
                return Ok(true);
            }
            let _ = tokio::time::timeout(IDLE_POLL, appended).await;
        }
    }

    async fn commit_offsets(&self, offsets: Vec<(i32, i64)>) -> Result<(), BusError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (group, topic) = (self.group.clone(), self.topic.clone());
        self.bus.write(|reply| Write::Commit { group, topic, offsets, reply }).await
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        self.fill(FETCH).await?;
        Ok(self.buffer.pop_front().expect("filled"))
    }

    /// Deliveries stay in the buffer until the batch is returned, so a dropped call (a
    /// timeout while idle, or while lingering) leaves them for the next one.
    async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        let fetched = self.fill(max).await?;
        let deadline = tokio::time::Instant::now() + linger;
        let inner = self.bus.inner.clone();
        // What else is ready now, then more as it is appended, while time remains.
        while self.buffer.len() < max && !(fetched && linger.is_zero()) {
            let appended = inner.appended.notified();
            self.fetch(max - self.buffer.len()).await?;
            if self.buffer.len() >= max || tokio::time::Instant::now() >= deadline {
                break;
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                break;
            }
        }
        let n = self.buffer.len().min(max);
        Ok(self.buffer.drain(..n).collect())
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        self.commit_offsets(vec![(delivery.partition, delivery.offset + 1)]).await
    }

    /// One request, one transaction (shared with whatever else the writer takes with it).
    async fn commit_batch(&mut self, batch: &[Delivery]) -> Result<(), BusError> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in batch {
            let e = next.entry(d.partition).or_insert(d.offset + 1);
            *e = (*e).max(d.offset + 1);
        }
        self.commit_offsets(next.into_iter().collect()).await
    }

    /// Messages appended after the read position, plus those fetched but not handed out.
    async fn lag(&mut self) -> Result<Option<u64>, BusError> {
        let topic = self.topic.clone();
        let partitions = self.positions.len() as i32;
        // One primary-key lookup per partition (the last offset), never a scan of the log.
        let heads: Vec<(i32, i64)> = self
            .bus
            .read(move |c| {
                let mut stmt = c.prepare_cached(HEAD)?;
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
