//! The command line: `hangar serve`, `hangar migrate`, `hangar openapi`, and admin commands
//! (`tenants`, `models`, `api-keys`) that work on the same store as the server, with the same
//! validation, and are audited as actor `cli`.

mod admin;
mod chat;
mod sandbox;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hangar_store::{SqlStore, Store, StoreOptions};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::state::AppState;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "hangar",
    version,
    about = "Multi-tenant backend for running AI agents"
)]
pub struct Cli {
    /// TOML configuration file; environment variables override it.
    #[arg(long, global = true, env = "HANGAR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(admin::TenantCommand),
    /// Manage the model catalogue.
    #[command(subcommand)]
    Models(admin::ModelCommand),
    /// Manage tenant API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(admin::KeyCommand),
    /// Tools for local development.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Inspect the host's sandbox support and run commands in throwaway sandboxes.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Talk to an agent from the terminal, through a running server's API.
    Chat(chat::ChatArgs),
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Serve a fake model API (Anthropic, Bedrock and OpenAI wire formats) that answers from a
    /// script, for demos and local testing without a real model. See docs/fake-model.md.
    FakeModel {
        /// JSON script: `{"responses": [...], "default": ...}` (or a whole config with `script`).
        #[arg(long)]
        script: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4010")]
        addr: std::net::SocketAddr,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    // A client of a running server: it needs none of the server's settings.
    if let Command::Chat(args) = cli.command {
        return chat::main(args);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("hangar: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let problems = settings.problems();
    if !problems.is_empty() {
        eprintln!(
            "hangar: refusing to start with APP_ENV={}:",
            settings.app_env.as_str()
        );
        for problem in problems {
            eprintln!("  - {problem}");
        }
        return ExitCode::from(2);
    }
    telemetry::init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hangar: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hangar: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = open_store(&settings).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Openapi => {
            let doc = crate::openapi().to_pretty_json()?;
            writeln!(std::io::stdout().lock(), "{doc}")?;
            Ok(())
        }
        Command::Tenants(cmd) => admin::tenants(&*open_store(&settings).await?, cmd).await,
        Command::Models(cmd) => admin::models(&*open_store(&settings).await?, cmd).await,
        Command::ApiKeys(cmd) => admin::keys(&*open_store(&settings).await?, cmd).await,
        Command::Sandbox(cmd) => sandbox::run(&settings, cmd).await,
        Command::Chat(_) => anyhow::bail!("`hangar chat` runs before the settings are loaded"),
        Command::Dev(DevCommand::FakeModel { script, addr }) => {
            tracing::info!(%addr, script = %script.display(), "fake model server listening");
            hangar_testkit::serve_script_file(&script, addr).await
        }
    }
}

/// Connects to `DATABASE_URL` and applies pending migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<SqlStore>> {
    let url = settings.database_url();
    let options = StoreOptions {
        max_connections: settings.db_pool_size,
        ..StoreOptions::default()
    };
    let store = SqlStore::connect(&url, &options).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    match hangar_sandbox::host::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open files limit"),
    }
    let store = open_store(&settings).await?;
    if !settings.auth_enabled() {
        tracing::warn!(
            "AUTHENTICATION IS OFF: API_KEYS is empty, so every request without a key acts as admin. \
             Set API_KEYS (comma-separated keys of 16+ characters) before exposing this server."
        );
    }
    let address = std::net::SocketAddr::new(settings.app_host, settings.app_port);
    let listener = TcpListener::bind(address).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        database = store.backend(),
        environment = settings.app_env.as_str(),
        "hangar listening"
    );
    let llm = std::sync::Arc::new(crate::llm::Llm::from_settings(&settings));
    let state = AppState::new(settings, store, telemetry::metrics_handle(), llm)?;
    crate::serve(state, listener, shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
