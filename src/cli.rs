//! The command line: `hissaback serve`, `hissaback demo`, `hissaback migrate`.

use crate::configuration::{Settings, StoreBackend};
use crate::startup::Application;
use crate::{demo, store, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Check the ledger's invariants; exits 1 when any is broken.
    Check,
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
