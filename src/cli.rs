//! The command line: `hissaback serve`, `hissaback demo`, `hissaback migrate`, `hissaback
//! ledger check`, and `hissaback dead-letters list|replay TOPIC` for the events a consumer
//! parked (see `hissaback_actors::consumer`).

use crate::configuration::{Settings, StoreBackend};
use crate::startup::Application;
use crate::{demo, store, telemetry};
use clap::{Parser, Subcommand};
use hissaback_actors::consumer::{DeadLetter, REPLAY_GROUP};
use hissaback_topics::bus::{Delivery, EventBus, Subscription};
use hissaback_topics::Topic;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "hissaback", version, about = "API-only affiliate and partner backend")]
pub struct Cli {
    /// TOML configuration file (default: ./hissaback.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API with the configured backends.
    Serve,
    /// Serve with a demo data set, printing a working API key and example calls.
    Demo,
    /// Create what the configured backends need (schema, tables, topics), then exit.
    Migrate,
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Events parked on a topic's dead-letter topic (`<topic>.dead-letter`).
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Check the ledger's invariants; exits 1 when any is broken.
    Check,
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// Print every event parked for TOPIC: its place in the dead-letter topic, where it came
    /// from, its key, the group that parked it, the error and when.
    List {
        /// Base topic name, e.g. `conversions`.
        topic: String,
    },
    /// Publish the parked events of TOPIC not replayed yet back onto TOPIC (original key and
    /// bytes, in order), remembering how far it got so a second replay does not publish them
    /// again. Every consumer group of TOPIC sees them again; handlers are idempotent.
    Replay {
        /// Base topic name, e.g. `conversions`.
        topic: String,
    },
}

/// Runs the command; a failure is one line on stderr (`hissaback: <error>: <cause>...`) and
/// exit code 1.
pub fn run() -> std::process::ExitCode {
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hissaback: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (a cause whose text its error
/// already shows is left out).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let settings = Settings::load(cli.config.as_deref())?;
    actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Demo => demo::run(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Ledger { command: LedgerCommand::Check } => ledger_check(settings).await,
            Command::DeadLetters { command: DeadLettersCommand::List { topic } } => dead_letters_list(settings, &topic).await,
            Command::DeadLetters { command: DeadLettersCommand::Replay { topic } } => dead_letters_replay(settings, &topic).await,
        }
    })
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(url = %app.state().public_base_url, port = app.port(), "hissaback serving");
    app.run_until_stopped().await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    if settings.store.backend == StoreBackend::Scylla {
        store::scylla::migrate(&settings.store.scylla).await?;
    }
    store::open(&settings).await?;
    crate::events::migrate(&settings).await?;
    match settings.store.backend {
        StoreBackend::Embedded => println!(
            "embedded store ready in {} (schema created on start; nothing else to migrate)",
            settings.store.data_dir.display()
        ),
        StoreBackend::Scylla => println!("scylla keyspace `{}` ready", settings.store.scylla.keyspace),
    }
    if settings.events.backend == crate::configuration::EventsBackend::Kafka {
        println!("kafka topics ready on {} (prefix `{}`)", settings.events.kafka.brokers, settings.events.kafka.topic_prefix);
    }
    Ok(())
}

async fn ledger_check(settings: Settings) -> anyhow::Result<()> {
    let store = store::open(&settings).await?;
    let (checked, problems) = crate::partner::ledger::check(&store).await?;
    if problems.is_empty() {
        println!("ledger check: {checked} conversions, every invariant holds");
        Ok(())
    } else {
        for p in &problems {
            println!("ledger check: {p}");
        }
        println!("ledger check: {checked} conversions, {} problems", problems.len());
        std::process::exit(1);
    }
}

/// `TOPIC` as given on the command line (a base name; `<topic>.dead-letter` is accepted too).
fn parse_topic(name: &str) -> anyhow::Result<Topic> {
    let base = name.strip_suffix(".dead-letter").unwrap_or(name);
    Topic::ALL.into_iter().find(|t| t.as_str() == base).ok_or_else(|| {
        let known: Vec<&str> = Topic::ALL.iter().map(|t| t.as_str()).collect();
        anyhow::anyhow!("unknown topic `{name}`; topics: {}", known.join(", "))
    })
}

/// How long to wait for a first message (a Kafka consumer joins its group first), then for
/// each further batch, before taking the dead-letter topic as read to its end.
fn read_waits(bus: &dyn EventBus) -> (Duration, Duration) {
    match bus.backend() {
        "kafka" => (Duration::from_secs(15), Duration::from_secs(3)),
        _ => (Duration::from_secs(2), Duration::from_secs(1)),
    }
}

/// The next batch of `sub`, or `None` at the end of the topic: nothing left to read (when
/// the backend can tell) or nothing arrived within `wait`.
async fn next_or_end(sub: &mut Box<dyn Subscription>, wait: Duration) -> anyhow::Result<Option<Vec<Delivery>>> {
    if sub.lag().await? == Some(0) {
        return Ok(None);
    }
    match tokio::time::timeout(wait, sub.next_batch(500, Duration::from_millis(5))).await {
        Ok(batch) => Ok(Some(batch?)),
        Err(_) => Ok(None),
    }
}

async fn dead_letters_list(settings: Settings, topic: &str) -> anyhow::Result<()> {
    let topic = parse_topic(topic)?;
    let bus = crate::events::open(&settings)?;
    let dead_letter = topic.dead_letter();
    // A group of its own that never commits: listing changes nothing.
    let group = format!("dead-letters.list.{}.{}", std::process::id(), chrono::Utc::now().timestamp_millis());
    let mut sub = bus.subscribe(&dead_letter, &group).await?;
    let (mut wait, then) = read_waits(bus.as_ref());
    let mut count = 0u64;
    while let Some(batch) = next_or_end(&mut sub, wait).await? {
        wait = then;
        for d in batch {
            count += 1;
            let at = format!("{dead_letter} {}/{}", d.partition, d.offset);
            match DeadLetter::decode(&d.payload) {
                Ok(p) => {
                    let parked = chrono::DateTime::from_timestamp_millis(p.parked_at_ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                        .unwrap_or_else(|| p.parked_at_ms.to_string());
                    println!(
                        "{at}: {} {}/{} key={} group={} reason={} attempts={} parked={parked} error={}",
                        p.topic,
                        p.partition,
                        p.offset,
                        p.key,
                        p.group,
                        p.reason.as_str(),
                        p.attempts,
                        p.error.replace(['\n', '\r'], " ")
                    );
                }
                Err(_) => println!("{at}: not an envelope ({} bytes, key={}); a replay publishes it as it is", d.payload.len(), d.key),
            }
        }
    }
    println!("{count} parked events in {dead_letter}");
    Ok(())
}

async fn dead_letters_replay(settings: Settings, topic: &str) -> anyhow::Result<()> {
    let topic = parse_topic(topic)?;
    let bus = crate::events::open(&settings)?;
    let dead_letter = topic.dead_letter();
    // The group's committed position is how far this dead-letter topic has been replayed.
    let mut sub = bus.subscribe(&dead_letter, REPLAY_GROUP).await?;
    let (mut wait, then) = read_waits(bus.as_ref());
    let mut replayed = 0usize;
    while let Some(batch) = next_or_end(&mut sub, wait).await? {
        wait = then;
        let messages: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|d| match DeadLetter::decode(&d.payload) {
                Ok(p) => (p.key, p.payload),
                // Parked before envelopes existed: the message itself.
                Err(_) => (d.key.clone(), d.payload.clone()),
            })
            .collect();
        let n = messages.len();
        // Published before the commit: a crash in between replays these again (harmless).
        bus.publish_batch(topic.as_str(), messages).await?;
        sub.commit_batch(&batch).await?;
        replayed += n;
    }
    println!("replayed {replayed} parked events from {dead_letter} onto {topic}");
    Ok(())
}
