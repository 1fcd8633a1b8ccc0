//! `xmppd`: see `xmppd --help`.

use clap::Parser;
use node::cli::{Cli, Command, ConfigCommand};
use node::server::Server;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system's malloc: a stanza's way through the
/// server is many short-lived allocations, and glibc's malloc and free
/// were a quarter of the CPU in a group chat's profile
/// (loadtest/RESULTS.md has the before and after).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        for n in cfg.notes() {
            println!("note: {n}");
        }
        println!("configuration is valid");
        return Ok(());
    }
    let cfg = node::cli::load_config(cli.config.as_ref())?;
    match cli.command {
        Some(Command::User(cmd)) => node::cli::user_command(&cfg, cmd).await,
        Some(Command::Serve) | None => serve(cfg, cli.config).await,
        Some(Command::Config(_)) => Ok(()),
        Some(Command::Cluster(cmd)) => node::cli::cluster_command(&cfg, cmd).await,
        Some(Command::Session(cmd)) => node::cli::session_command(&cfg, cmd).await,
        Some(Command::Room(cmd)) => {
            node::cli::service_command(&cfg, node::cli::room_request(cmd)).await
        }
        Some(Command::Pubsub(cmd)) => {
            node::cli::service_command(&cfg, node::cli::pubsub_request(cmd)).await
        }
        Some(Command::S2s(node::cli::S2sCommand::Status)) => {
            node::cli::service_command(&cfg, node::admin::Request::S2s).await
        }
    }
}

/// The log filter for `level`: openraft reports every election and
/// replication retry at info, and the OpenTelemetry SDK its own workings,
/// so they stay at warn unless the directive names them.
fn log_filter(level: &str) -> Result<EnvFilter, String> {
    let mut level = level.to_string();
    for target in ["openraft", "opentelemetry", "opentelemetry_sdk"] {
        let named = level
            .split(',')
            .any(|d| d.split(['=', '[']).next() == Some(target));
        if !named {
            level.push_str(&format!(",{target}=warn"));
        }
    }
    EnvFilter::try_new(&level).map_err(|e| e.to_string())
}

async fn serve(cfg: node::config::Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let filter = match from_env {
        Some(f) => f,
        None => log_filter(&cfg.log.level).map_err(|e| anyhow::anyhow!("log.level: {e}"))?,
    };
    let (filter, log_handle) = tracing_subscriber::reload::Layer::new(filter);
    // Colours only on a terminal: logs that go to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
        .init();
    let set_log = move |level: &str| -> Result<(), String> {
        if env_set {
            return Err("RUST_LOG is set, and it overrides log.level".into());
        }
        let f = log_filter(level)?;
        log_handle.reload(f).map_err(|e| e.to_string())
    };
    for n in cfg.notes() {
        tracing::warn!("{n}");
    }
    let server = Server::start(cfg).await?;
    tracing::info!("xmppd is running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut failed = false;
    loop {
        tokio::select! {
            _ = server.drain_requested() => {
                if server.has_clients() && server.drain_secs() > 0 {
                    tracing::info!("drain asked: draining (SIGTERM stops at once)");
                    tokio::select! {
                        _ = server.drain() => {}
                        _ = term.recv() => tracing::info!("SIGTERM: stopping now"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: stopping now"),
                    }
                }
                tracing::info!("drained: shutting down");
                break;
            }
            _ = term.recv() => {
                if server.has_clients() && server.drain_secs() > 0 {
                    tracing::info!("SIGTERM: draining (a second SIGTERM stops at once)");
                    tokio::select! {
                        _ = server.drain() => {}
                        _ = term.recv() => tracing::info!("second SIGTERM: stopping now"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: stopping now"),
                    }
                }
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: shutting down");
                break;
            }
            _ = server.left() => {
                tracing::info!("removed from the cluster: shutting down");
                break;
            }
            _ = server.edge_id_taken() => {
                tracing::error!("another edge holds this edge's random id: stopping, to start again with another");
                failed = true;
                break;
            }
            _ = hup.recv() => reload(&server, path.as_deref(), &set_log),
        }
    }
    server.stop().await;
    tracing::info!("stopped");
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// SIGHUP: read the configuration file again and apply what can change
/// while the node runs; say what was applied and what needs a restart.
fn reload(
    server: &Server,
    path: Option<&std::path::Path>,
    set_log: &dyn Fn(&str) -> Result<(), String>,
) {
    let Some(path) = path else {
        tracing::warn!(
            "SIGHUP: no configuration file was given (the embedded default runs): nothing to reload"
        );
        return;
    };
    let new = match node::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "SIGHUP: {}: {}; nothing changed",
                path.display(),
                one_line(&e.to_string())
            );
            return;
        }
    };
    match server.reload(new, set_log) {
        Ok(r) => {
            tracing::info!(
                applied = ?r.applied,
                needs_restart = ?r.restart,
                "SIGHUP: configuration reloaded"
            );
            for k in &r.restart {
                tracing::warn!(key = %k, "SIGHUP: changed in the file, in force after a restart");
            }
        }
        Err(e) => tracing::error!("SIGHUP: {}; nothing changed", one_line(&format!("{e:#}"))),
    }
}

/// A report of several lines as one log line.
fn one_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut out = lines.next().unwrap_or_default().to_string();
    for l in lines {
        out.push_str(if out.ends_with(':') { " " } else { "; " });
        out.push_str(l);
    }
    out
}
