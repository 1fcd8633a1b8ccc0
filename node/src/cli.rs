//! The command line: `xmppd [serve]`, `xmppd user add|passwd|del|list`,
//! `xmppd config check`, `xmppd cluster status`, `xmppd session`,
//! `xmppd room list|destroy`, `xmppd pubsub list|delete`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Ask a core node about the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List or end sessions (through the running server's admin socket).
    #[command(subcommand)]
    Session(SessionCommand),
    /// List or destroy MUC rooms (through the running server's admin
    /// socket).
    #[command(subcommand)]
    Room(RoomCommand),
    /// List or delete PubSub nodes (through the running server's admin
    /// socket).
    #[command(subcommand)]
    Pubsub(PubsubCommand),
    /// Federation: the server-to-server streams (through the running
    /// server's admin socket).
    #[command(subcommand)]
    S2s(S2sCommand),
}

#[derive(Debug, Subcommand)]
pub enum S2sCommand {
    /// The streams with other servers, one per line: direction, local
    /// domain, remote domains, state, authentication, TLS, peer address,
    /// stanzas, waiting stanzas, age.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// The rooms of a MUC service: JID, occupants, persistent or
    /// temporary, public or hidden, members-only, password, locked, name.
    List {
        /// The MUC service (default: the one of a one-domain server).
        #[arg(long)]
        service: Option<String>,
    },
    /// Destroy a room: its occupants get unavailable presence with the
    /// reason, a persistent room's record is deleted.
    Destroy {
        /// The room's JID (room@service).
        jid: String,
        /// Told to the occupants (at most 1024 bytes).
        #[arg(long)]
        reason: Option<String>,
        /// Another room to go to (room@service), told to the occupants.
        #[arg(long)]
        alternate: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PubsubCommand {
    /// The nodes of a PubSub service: id (quoted), item count, creator.
    List {
        /// The PubSub service, or an account's bare JID for its PEP nodes
        /// (default: the PubSub service of a one-domain server).
        #[arg(long)]
        service: Option<String>,
    },
    /// Delete a node with its items and subscriptions; subscribers are
    /// notified when its configuration says so.
    Delete {
        /// The node's id.
        node: String,
        /// The PubSub service, or an account's bare JID for its PEP nodes
        /// (default: the PubSub service of a one-domain server).
        #[arg(long)]
        service: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// The sessions bound in the cluster: full JID, availability,
    /// priority and the edge node holding the connection.
    List {
        /// Only this account's sessions.
        #[arg(long)]
        user: Option<String>,
    },
    /// End a session's stream with <policy-violation/>.
    Kick {
        /// The session's full JID (user@domain/resource).
        jid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with their roles and health, the shard map, each shard's
    /// leader and replicas.
    Status {
        /// A core node's gRPC address; default: this node's (a core's
        /// `cluster.listen`, an edge's `cluster.core`).
        #[arg(long)]
        core: Option<String>,
    },
    /// Add a core node to the running cluster. Start it first, with a
    /// `cluster.peers` that lists a running member and itself: it waits to
    /// be added, then gets a replica of every shard and leads its share.
    AddNode {
        /// The new node's id (`cluster.node_id`).
        id: u64,
        /// The address the other core nodes reach it at.
        address: String,
        /// A running core node's gRPC address (as for `status`).
        #[arg(long)]
        core: Option<String>,
    },
    /// Remove a core node: its replicas and leaderships move to the
    /// others, then it stops by itself.
    RemoveNode {
        id: u64,
        #[arg(long)]
        core: Option<String>,
    },
    /// Remove this core node (the configuration's) from its cluster and
    /// wait until its shards have moved: a StatefulSet pod's preStop hook.
    Leave {
        /// Only if Kubernetes is scaling this pod away: its StatefulSet
        /// wants fewer replicas than this pod's ordinal + 1. A restarted
        /// pod, a StatefulSet scaled to 0 or deleted, stays a member.
        #[arg(long)]
        if_scaled_down: bool,
        /// Seconds to wait for the shards to move.
        #[arg(long, default_value_t = 240)]
        wait: u64,
    },
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
        Some(p) => Config::load(p).map_err(|e| match e.problems() {
            [] => anyhow::anyhow!("{}: {e}", p.display()),
            all => {
                let lines: Vec<String> = all.iter().map(|x| format!("  {x}")).collect();
                let n = all.len();
                let s = if n == 1 { "" } else { "s" };
                anyhow::anyhow!("{}: {n} problem{s}:\n{}", p.display(), lines.join("\n"))
            }
        }),
        None => Ok(Config::default()),
    }
}

/// The longest password accepted from the command line or stdin, in
/// bytes (a request to the admin socket stays well within its frame).
const MAX_PASSWORD_BYTES: usize = 1024;

fn read_password(given: Option<String>) -> anyhow::Result<String> {
    let p = read_password_unchecked(given)?;
    if p.len() > MAX_PASSWORD_BYTES {
        bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes");
    }
    Ok(p)
}

fn read_password_unchecked(given: Option<String>) -> anyhow::Result<String> {
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
/// is up, else on the store directly. Every address is checked here first
/// (RFC 7622, a localpart, a served domain), so nothing invalid is sent or
/// written whichever way the command goes.
pub async fn user_command(cfg: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    use crate::admin::{Request, Response, account_jid, list_domain};
    let domains: Vec<String> = cfg
        .domains
        .iter()
        .filter_map(|d| proto::jid::normalize_domain(d).ok())
        .collect();
    let jid = |raw: &str| account_jid(raw, &domains);
    let req = match cmd {
        UserCommand::Add { jid: j, password } => {
            let j = jid(&j)?;
            Request::Add {
                jid: j.to_string(),
                password: read_password(password)?,
            }
        }
        UserCommand::Passwd { jid: j, password } => {
            let j = jid(&j)?;
            Request::Passwd {
                jid: j.to_string(),
                password: read_password(password)?,
            }
        }
        UserCommand::Del { jid: j } => Request::Del {
            jid: jid(&j)?.to_string(),
        },
        UserCommand::List { domain } => Request::List {
            domain: domain.as_deref().map(list_domain).transpose()?,
        },
    };
    match crate::admin::request(&cfg.admin_socket_path(), &req).await? {
        Some(Response::Ok { users, .. }) => {
            print_lines(users);
            return Ok(());
        }
        Some(Response::Err { message }) => bail!("{message}"),
        None => {}
    }
    // No server running: work on the store directly, on a single node.
    // An edge has no accounts, and a core node's accounts change only
    // through its shards' Raft logs (a write here would reach no other
    // replica); reading a stopped core node's store is harmless.
    let writes = !matches!(req, Request::List { .. });
    match cfg.cluster.role {
        crate::config::Role::Both => {}
        crate::config::Role::Edge => bail!(
            "this is an edge's configuration: accounts are kept by the core nodes; run the command with a core node's configuration, where it runs"
        ),
        crate::config::Role::Core if writes => bail!(
            "no core node is running on {}: a core node's accounts change only through its running shards (their Raft logs), so that every replica, now or added later, gets the change; start it and run the command again",
            cfg.data_dir.display()
        ),
        crate::config::Role::Core => {}
    }
    let store = router::open_store(
        &cfg.data_dir.join("db"),
        cfg.storage.sync_writes,
        cfg.offline.max_per_user,
    )
    .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    let accounts = router::Accounts::new(
        store.clone(),
        domains.clone(),
        cfg.registration.min_password_len,
    );
    // The strings were made from checked JIDs above: parsing them again
    // cannot fail, but is not assumed.
    match req {
        Request::Add { jid: j, password } => accounts.add(&jid(&j)?, &password)?,
        Request::Passwd { jid: j, password } => accounts.set_password(&jid(&j)?, &password)?,
        Request::Del { jid: j } => accounts.delete(&jid(&j)?)?,
        Request::List { domain } => print_lines(accounts.list(domain.as_deref())?),
        Request::Sessions { .. } | Request::Kick { .. } | Request::S2s => {
            bail!("sessions and streams exist only in a running server")
        }
        Request::Rooms { .. }
        | Request::Destroy { .. }
        | Request::Nodes { .. }
        | Request::DelNode { .. } => bail!("rooms and nodes are served by a running server"),
    }
    store.flush()?;
    Ok(())
}

pub async fn session_command(cfg: &Config, cmd: SessionCommand) -> anyhow::Result<()> {
    use crate::admin::{Request, Response, account_jid};
    let domains: Vec<String> = cfg
        .domains
        .iter()
        .filter_map(|d| proto::jid::normalize_domain(d).ok())
        .collect();
    let req = match cmd {
        SessionCommand::List { user } => Request::Sessions {
            user: user
                .map(|u| account_jid(&u, &domains).map(|j| j.to_string()))
                .transpose()?,
        },
        SessionCommand::Kick { jid } => {
            let full = proto::FullJid::parse(&jid).map_err(|e| {
                anyhow::anyhow!("{jid:?} is not a full JID (user@domain/resource): {e}")
            })?;
            account_jid(full.bare_str(), &domains)?;
            Request::Kick {
                jid: full.to_string(),
            }
        }
    };
    match crate::admin::request(&cfg.admin_socket_path(), &req).await? {
        Some(Response::Ok { sessions, .. }) => {
            print_lines(sessions);
            Ok(())
        }
        Some(Response::Err { message }) => bail!("{message}"),
        None => bail!(
            "no server is running on {} (sessions exist only in a running server; on a cluster, run this on a core node)",
            cfg.data_dir.display()
        ),
    }
}

/// Run a `room` or `pubsub` command through the running server.
pub async fn service_command(cfg: &Config, req: crate::admin::Request) -> anyhow::Result<()> {
    use crate::admin::Response;
    match crate::admin::request(&cfg.admin_socket_path(), &req).await? {
        Some(Response::Ok { lines, .. }) => {
            print_lines(lines);
            Ok(())
        }
        Some(Response::Err { message }) => bail!("{message}"),
        None => bail!(
            "no server is running on {} (this is answered by a running server; on a cluster, run it on a core node, or for `s2s status` on an edge that federates)",
            cfg.data_dir.display()
        ),
    }
}

/// The admin socket's request for a `room` command.
pub fn room_request(cmd: RoomCommand) -> crate::admin::Request {
    use crate::admin::Request;
    match cmd {
        RoomCommand::List { service } => Request::Rooms { service },
        RoomCommand::Destroy {
            jid,
            reason,
            alternate,
        } => Request::Destroy {
            room: jid,
            reason,
            alternate,
        },
    }
}

/// The admin socket's request for a `pubsub` command.
pub fn pubsub_request(cmd: PubsubCommand) -> crate::admin::Request {
    use crate::admin::Request;
    match cmd {
        PubsubCommand::List { service } => Request::Nodes { service },
        PubsubCommand::Delete { node, service } => Request::DelNode { service, node },
    }
}

/// Print one item per line; a reader that went away (`| head`) ends the
/// output quietly instead of a panic.
fn print_lines<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in items {
        if writeln!(out, "{i}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

/// Run a `cluster` command against a core node.
pub async fn cluster_command(cfg: &Config, cmd: ClusterCommand) -> anyhow::Result<()> {
    use crate::config::Role;
    use proto::cluster::pb;
    let core = match &cmd {
        ClusterCommand::Status { core }
        | ClusterCommand::AddNode { core, .. }
        | ClusterCommand::RemoveNode { core, .. } => core.clone(),
        ClusterCommand::Leave {
            if_scaled_down,
            wait,
        } => return leave(cfg, *if_scaled_down, Duration::from_secs(*wait)).await,
    };
    let addr = match (core, cfg.cluster.role) {
        (Some(a), _) => a,
        (None, Role::Core) => cfg.cluster.listen.clone(),
        (None, Role::Edge) => cfg
            .cluster
            .core
            .clone()
            .context("cluster.core is not set")?,
        (None, Role::Both) => bail!(
            "this configuration is a single node (cluster.role = \"both\"); name a core node with --core"
        ),
    };
    let mut client = pb::admin_client::AdminClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to the core node at {addr}"))?;
    let failed = |s: tonic::Status| anyhow::anyhow!("{}", proto::cluster::ClusterError::from(s));
    match cmd {
        ClusterCommand::Status { .. } => {
            let st = client
                .status(pb::StatusRequest { map_only: false })
                .await
                .map_err(failed)?
                .into_inner();
            print!("{}", format_status(&st));
        }
        ClusterCommand::AddNode { id, address, .. } => {
            let r = client
                .add_node(pb::AddNodeRequest { id, address })
                .await
                .map_err(failed)?
                .into_inner();
            println!("node {id} added; members: {}", join_ids(&r.members));
        }
        ClusterCommand::Leave { .. } => {}
        ClusterCommand::RemoveNode { id, .. } => {
            let r = client
                .remove_node(pb::RemoveNodeRequest { id })
                .await
                .map_err(failed)?
                .into_inner();
            println!(
                "node {id} removed; members: {}; its shards move now, then it stops",
                join_ids(&r.members)
            );
        }
    }
    Ok(())
}

/// `xmppd cluster leave`: remove this core node through its own gRPC
/// listener, then wait until no shard has it as a replica (or the node
/// stopped, as a removed node does once its shards moved).
async fn leave(cfg: &Config, if_scaled_down: bool, wait: Duration) -> anyhow::Result<()> {
    use crate::config::Role;
    use proto::cluster::pb;
    if cfg.cluster.role != Role::Core {
        bail!("only a core node (cluster.role = \"core\") leaves a cluster");
    }
    let me = cfg
        .cluster
        .resolve_node_id()
        .map_err(|e| anyhow::anyhow!("cluster.node_id: {e}"))?;
    if if_scaled_down {
        let pod = crate::kube::this_pod()?;
        match crate::kube::desired_replicas(&pod)? {
            None => {
                println!(
                    "statefulset {} is gone: node {me} stays a member",
                    pod.statefulset
                );
                return Ok(());
            }
            Some(0) => {
                println!(
                    "statefulset {} is scaled to 0: the cluster stops whole, node {me} stays a member",
                    pod.statefulset
                );
                return Ok(());
            }
            Some(n) if pod.ordinal < n => {
                println!(
                    "statefulset {} wants {n} replicas, this pod is ordinal {}: node {me} stays a member",
                    pod.statefulset, pod.ordinal
                );
                return Ok(());
            }
            Some(n) => println!(
                "statefulset {} wants {n} replicas, this pod is ordinal {}: node {me} leaves",
                pod.statefulset, pod.ordinal
            ),
        }
    }
    // This node's own listener: loopback when it listens on every address.
    let listen: std::net::SocketAddr = cfg
        .cluster
        .listen
        .parse()
        .with_context(|| format!("cluster.listen {:?}", cfg.cluster.listen))?;
    let local = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
        }
        ip if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    };
    let mut client = pb::admin_client::AdminClient::connect(format!("http://{local}"))
        .await
        .with_context(|| format!("connecting to this core node at {local}"))?;
    let failed = |s: tonic::Status| anyhow::anyhow!("{}", proto::cluster::ClusterError::from(s));
    let r = client
        .remove_node(pb::RemoveNodeRequest { id: me })
        .await
        .map_err(failed)?
        .into_inner();
    println!(
        "node {me} removed; members: {}; waiting for its shards to move",
        join_ids(&r.members)
    );
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match client.status(pb::StatusRequest { map_only: true }).await {
            Ok(st) => {
                let st = st.into_inner();
                let holds = st
                    .shards
                    .iter()
                    .filter(|s| s.replicas.contains(&me) || s.leader == Some(me))
                    .count();
                if holds == 0 && !st.shards.is_empty() {
                    println!("node {me} holds no shard: it has left");
                    return Ok(());
                }
            }
            // It stopped by itself: removed, with its shards moved.
            Err(_) => {
                println!("node {me} has stopped: it has left");
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("node {me}'s shards did not move within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The status as an operator reads it: a member table, then the shards
/// grouped by leader and replicas.
pub fn format_status(st: &proto::cluster::pb::ClusterStatus) -> String {
    use proto::cluster::pb;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "members:");
    let _ = writeln!(
        out,
        "  {:>5}  {:<5}  {:<22}  {:<7}  {:>8}",
        "id", "role", "address", "health", "sessions"
    );
    for m in &st.members {
        let role = match pb::Role::try_from(m.role) {
            Ok(pb::Role::Core) => "core",
            Ok(pb::Role::Edge) => "edge",
            _ => "?",
        };
        let sessions = if role == "edge" {
            m.sessions.to_string()
        } else {
            "-".to_string()
        };
        let health = match (m.state.as_str(), m.healthy) {
            ("", true) => "ok",
            ("", false) => "down",
            (state, _) => state,
        };
        let _ = writeln!(
            out,
            "  {:>5}  {:<5}  {:<22}  {:<7}  {:>8}",
            m.id, role, m.address, health, sessions
        );
    }
    if let Some(meta) = st.meta_leader {
        let _ = writeln!(out, "meta leader: {meta}");
    }
    let _ = writeln!(out, "shards: {}", st.shards.len());
    // Runs of consecutive shards with the same leader and replicas.
    let mut i = 0;
    while i < st.shards.len() {
        let s = &st.shards[i];
        let mut j = i;
        while j + 1 < st.shards.len()
            && st.shards[j + 1].leader == s.leader
            && st.shards[j + 1].replicas == s.replicas
        {
            j += 1;
        }
        let range = if i == j {
            format!("{}", s.shard)
        } else {
            format!("{}-{}", s.shard, st.shards[j].shard)
        };
        let leader = s
            .leader
            .map_or_else(|| "none".to_string(), |l| l.to_string());
        let replicas: Vec<String> = s.replicas.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "  {range:<9} leader {leader:<5} replicas {}",
            replicas.join(",")
        );
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every help text of `cmd` and its subcommands, with its place.
    fn texts(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        let here = format!("{path} {}", cmd.get_name());
        for t in [cmd.get_about(), cmd.get_long_about()]
            .into_iter()
            .flatten()
        {
            out.push((here.clone(), t.ansi().to_string()));
        }
        for a in cmd.get_arguments() {
            for t in [a.get_help(), a.get_long_help()].into_iter().flatten() {
                out.push((format!("{here} --{}", a.get_id()), t.ansi().to_string()));
            }
        }
        for sub in cmd.get_subcommands() {
            texts(sub, &here, out);
        }
    }

    /// clap turns `{n}` in a help text into a line break (issue 11 item 5
    /// found one in xmpp-loadtest): none may hide in ours.
    #[test]
    fn no_help_text_holds_a_placeholder_that_clap_eats() {
        let mut all = Vec::new();
        texts(&Cli::command(), "", &mut all);
        assert!(all.len() > 10, "{all:?}");
        for (place, text) in all {
            assert!(!text.contains("{n}"), "{place}: {text}");
        }
        Cli::command().debug_assert();
    }
}
