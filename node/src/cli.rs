//! The command line: `xmppd [serve]`, `xmppd user add|passwd|del|list`,
//! `xmppd config check`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "xmppd", version, about = "A clustered XMPP server")]
pub struct Cli {
    /// Configuration file (TOML); without it the embedded default is used:
    /// domain `localhost`, data in ./data, a generated self-signed certificate.
    #[arg(long, short, env = "XMPPD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage accounts (works with the server running or stopped).
    #[command(subcommand)]
    User(UserCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        jid: String,
        /// The password; without it, it is asked for (or read from the first line of stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and all its data.
    Del { jid: String },
    /// List accounts.
    List {
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and say what is wrong.
    Check,
}

/// The configuration named on the command line, or the embedded default.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
        None => Ok(Config::default()),
    }
}

fn read_password(given: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if p != again {
            bail!("the passwords differ");
        }
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("no password on stdin");
    }
    Ok(p)
}

/// Run a `user` command: through the running server's admin socket if it
/// is up, else on the store directly.
pub async fn user_command(cfg: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    // Ask for the password once, whichever way the command goes.
    let password = match &cmd {
        UserCommand::Add { password, .. } | UserCommand::Passwd { password, .. } => {
            Some(read_password(password.clone())?)
        }
        _ => None,
    };
    let pw = || password.clone().unwrap_or_default();
    let line = match &cmd {
        UserCommand::Add { jid, .. } => {
            format!("add {jid} {}", crate::admin::encode_password(&pw()))
        }
        UserCommand::Passwd { jid, .. } => {
            format!("passwd {jid} {}", crate::admin::encode_password(&pw()))
        }
        UserCommand::Del { jid } => format!("del {jid}"),
        UserCommand::List { domain } => format!("list {}", domain.clone().unwrap_or_default()),
    };
    let socket = cfg
        .listeners
        .admin_socket
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("admin.sock"));
    if let Some(r) = crate::admin::request(&socket, &line).await? {
        let body = r.map_err(|e| anyhow::anyhow!(e))?;
        for l in body {
            println!("{l}");
        }
        return Ok(());
    }
    // No server running: work on the store directly.
    let domains: Vec<String> = cfg
        .domains
        .iter()
        .filter_map(|d| proto::jid::normalize_domain(d).ok())
        .collect();
    let store = router::open_store(
        &cfg.data_dir.join("db"),
        cfg.storage.sync_writes,
        cfg.offline.max_per_user,
    )
    .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    let accounts = router::Accounts::new(store.clone(), domains, cfg.registration.min_password_len);
    let jid =
        |s: &str| proto::BareJid::parse(s).map_err(|e| anyhow::anyhow!("invalid JID {s}: {e}"));
    match cmd {
        UserCommand::Add { jid: j, .. } => accounts.add(&jid(&j)?, &pw())?,
        UserCommand::Passwd { jid: j, .. } => accounts.set_password(&jid(&j)?, &pw())?,
        UserCommand::Del { jid: j } => accounts.delete(&jid(&j)?)?,
        UserCommand::List { domain } => {
            for u in accounts.list(domain.as_deref())? {
                println!("{u}");
            }
        }
    }
    store.flush()?;
    Ok(())
}
