//! `xmppd`: see `xmppd --help`.

use clap::Parser;
use node::cli::{Cli, Command, ConfigCommand};
use node::server::Server;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xmppd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmppd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Config(ConfigCommand::Check)) = &cli.command {
        let cfg = node::cli::load_config(cli.config.as_ref())?;
        cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("configuration is valid");
        return Ok(());
    }
    let cfg = node::cli::load_config(cli.config.as_ref())?;
    match cli.command {
        Some(Command::User(cmd)) => node::cli::user_command(&cfg, cmd).await,
        Some(Command::Serve) | None => serve(cfg).await,
        Some(Command::Config(_)) => Ok(()),
        Some(Command::Cluster(cmd)) => node::cli::cluster_command(&cfg, cmd).await,
        Some(Command::Session(cmd)) => node::cli::session_command(&cfg, cmd).await,
    }
}

async fn serve(cfg: node::config::Config) -> anyhow::Result<()> {
    // openraft reports every election and replication retry at info:
    // keep it at warn unless the directive names it.
    let level = if cfg.log.level.contains("openraft") {
        cfg.log.level.clone()
    } else {
        format!("{},openraft=warn", cfg.log.level)
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&level));
    // Colours only on a terminal: logs that go to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    let server = Server::start(cfg).await?;
    tracing::info!("xmppd is running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failed = false;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
        _ = server.left() => tracing::info!("removed from the cluster: shutting down"),
        _ = server.edge_id_taken() => {
            tracing::error!("another edge holds this edge's random id: stopping, to start again with another");
            failed = true;
        }
    }
    server.stop().await;
    tracing::info!("stopped");
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
