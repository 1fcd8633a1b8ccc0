//! `xmpp-loadtest`: drive any XMPP server with many clients over real
//! sockets and report rates, latencies and the server's memory and CPU.
//!
//! Scenarios: `connect`, `chat`, `presence`, `muc`, `pubsub`, `iot`, `nodes`, `mixed`
//! and `resume` (see `scenario/`); `--sm` turns on stream management
//! (XEP-0198) in any of them. Options come from the command line or from a TOML
//! scenario file whose keys are the long option names; the command line
//! wins. Every run is bounded by counts and `--duration` and stops by
//! itself. While it runs, a progress line goes to stderr; at the end, a
//! table goes to stdout, and optionally JSON (`--json`) and an HTML page
//! with plots (`--html`). The exit status is 0 only if nothing was lost,
//! duplicated or refused and no session failed.

mod bosh;
mod client;
mod framer;
mod metrics;
mod report;
mod scenario;
mod scram;
mod tls;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use client::{Target, TlsMode, Transport};
use metrics::{Metrics, Sampler, cpu_seconds, cpus};
use scenario::{Ctx, Report, chat, connect, fanout, iot, nodes, presence, resume};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Connect,
    Chat,
    Presence,
    Muc,
    Pubsub,
    Iot,
    Nodes,
    Mixed,
    Resume,
}

#[derive(Debug, Parser)]
#[command(
    name = "xmpp-loadtest",
    about = "Load test an XMPP server",
    args_override_self = true
)]
pub struct Args {
    /// The scenario; may instead come from `scenario = "..."` in the file.
    #[arg(value_enum)]
    scenario: Option<Scenario>,
    /// A TOML file of options, `key = value` with the long option names.
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    #[arg(long, value_enum, hide = true)]
    scenario_from_file: Option<Scenario>,

    // --- the server and the accounts
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The server's client port.
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// More servers to spread the users over, as host:port (e.g. the other
    /// edges of a cluster): user n connects to the (n mod k)th of --host
    /// and these, so the two users of a `chat` pair are on different edges.
    #[arg(long, value_delimiter = ',')]
    also: Vec<String>,
    /// The XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// What the streams run over: TCP, WebSocket (RFC 7395) at
    /// ws://HOST:PORT/--ws-path or wss:// (TLS under the WebSocket), or
    /// BOSH (XEP-0206) at http://HOST:PORT/--bosh-path.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// The WebSocket endpoint's path (--transport websocket or wss).
    #[arg(long, default_value = "/xmpp-websocket")]
    ws_path: String,
    /// The BOSH endpoint's path (--transport bosh: http://HOST:PORT/PATH).
    #[arg(long, default_value = "/http-bind")]
    bosh_path: String,
    /// TLS on TCP (a WebSocket has no STARTTLS: see --transport).
    /// Certificates are never verified: this is a test tool.
    #[arg(long, value_enum, default_value = "starttls")]
    tls: TlsMode,
    /// The SASL mechanism: SCRAM-SHA-1, SCRAM-SHA-256 (either with
    /// -PLUS) or PLAIN.
    #[arg(long, default_value = "SCRAM-SHA-256")]
    mechanism: String,
    #[arg(
        long,
        default_value = "load{n}",
        help = help_text("Account names: `{n}` is replaced by the user number.")
    )]
    user_pattern: String,
    #[arg(long, default_value = "loadtest-password")]
    password: String,
    #[arg(long, default_value = "load")]
    resource: String,
    /// Create accounts by in-band registration (XEP-0077) before logging in.
    #[arg(long)]
    register: bool,
    /// Stream management (XEP-0198): every session enables it, with
    /// resumption, after binding, counts the stanzas it gets and answers
    /// the server's `<r/>` with `<a h/>` (a session closes with a last
    /// `<a/>`). `resume` turns it on for its receivers anyway.
    #[arg(long)]
    sm: bool,
    /// Clients keep each account's SCRAM-SHA-256 SaltedPassword from its
    /// first login and reuse it when they log in again (RFC 5802 §5.1
    /// allows it; phone clients do): a reconnection costs the harness a
    /// few HMACs instead of 4,096 hash rounds. Off: every login computes.
    #[arg(long)]
    cache_scram: bool,
    /// Create each account with this shell command first; `{user}`,
    /// `{password}` and `{domain}` are replaced, each quoted as one shell word.
    #[arg(long)]
    create_command: Option<String>,
    /// Federation: the receivers of `chat` log in to this server instead,
    /// as accounts of --peer-domain (the same user pattern and password),
    /// so that every message crosses a server-to-server stream from the
    /// senders' server (--host) to theirs. The two servers must federate.
    #[arg(long, requires = "peer_domain")]
    peer_host: Option<String>,
    /// The client port of --peer-host.
    #[arg(long, default_value_t = 5222)]
    peer_port: u16,
    /// The XMPP domain of the receivers' accounts (`chat` only); the
    /// receivers' server is --peer-host, or --host when it is not given.
    #[arg(long)]
    peer_domain: Option<String>,
    /// Local source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,

    // --- the load
    /// Sessions for `connect` and `nodes` (and idle sessions in `mixed`).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Logins started per second.
    #[arg(long, default_value_t = 200.0)]
    login_rate: f64,
    /// Length of the measured phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Leave the latencies of `chat` messages sent in the first seconds of
    /// the measured phase out of the result (they still count as sent and
    /// delivered, and show in the timeline): the start-up of every sender at
    /// once is not the steady state that a latency target is about.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Stanzas in flight per sender (chat, muc, pubsub, iot) or per
    /// session (nodes).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Sender/receiver pairs for `chat`.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Chat messages per second in all; 0 is as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Users for `presence`, in groups of `--contacts` + 1.
    #[arg(long, default_value_t = 20)]
    presence_users: usize,
    /// Roster size in `presence`: everyone in a group is everyone's contact.
    #[arg(long, default_value_t = 4)]
    contacts: usize,
    /// Seconds between a churning user's logins in `presence`.
    #[arg(long, default_value_t = 1.0)]
    churn_interval: f64,
    /// In `presence`, the watchers tell the server they are inactive
    /// (XEP-0352) while the churners churn, and active again at the end:
    /// what the server holds back and supersedes is then not delivered,
    /// and the report counts it instead of calling it lost.
    #[arg(long)]
    csi_inactive: bool,
    /// Rooms for `muc`.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Occupants per room, the sender included.
    #[arg(long, default_value_t = 10)]
    occupants: usize,
    /// Room messages per second in all; 0 is as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    muc_rate: f64,
    /// The MUC service (default `conference.` + domain).
    #[arg(long)]
    muc_service: Option<String>,
    /// One named room for `muc` (a local part, or a room JID), shared by
    /// several processes with `--muc-role`; created if missing and kept.
    #[arg(long)]
    muc_room: Option<String>,
    /// The part of `muc` this process plays in `--muc-room`.
    #[arg(long, value_enum, default_value = "both")]
    muc_role: fanout::MucRole,
    /// Occupants entering `--muc-room` per second in this process (0: all
    /// at once).
    #[arg(long, default_value_t = 0.0)]
    join_rate: f64,
    /// Roles whose presence the room created by `--muc-role sender`
    /// broadcasts (`muc#roomconfig_presencebroadcast`), comma-separated:
    /// moderator,participant,visitor; default the service's.
    #[arg(long)]
    muc_broadcast: Option<String>,
    /// Subscribers for `pubsub`.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Devices for `iot`, each publishing to a node of its own.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Watchers for `iot`.
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    /// Nodes each `iot` watcher subscribes to.
    #[arg(long, default_value_t = 5)]
    nodes_per_watcher: usize,
    /// Publishes per second (`pubsub`: in all; `iot`: per device); 0 is as
    /// fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    publish_rate: f64,
    /// The PubSub service (default `pubsub.` + domain).
    #[arg(long)]
    pubsub_service: Option<String>,
    /// A named node for `pubsub` instead of a fresh one per run; it is
    /// created if missing and kept afterwards.
    #[arg(long)]
    pubsub_node: Option<String>,
    /// The part of `pubsub` this process plays (several processes share
    /// one fan-out beyond one process's sockets).
    #[arg(long, value_enum, default_value = "both")]
    pubsub_role: fanout::PubsubRole,
    /// The number of this process's first user in --user-pattern
    /// (`connect`, `pubsub`, `resume`).
    #[arg(long, default_value_t = 0)]
    first_user: usize,
    /// Receivers for `resume`: on --host/--port with stream management,
    /// they resume on the first of --also when their connection drops.
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// Senders for `resume`, on the first of --also, sending --rate
    /// messages a second in all to the receivers.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// In `resume`: how long after its connection dropped a receiver
    /// keeps trying to resume, seconds.
    #[arg(long, default_value_t = 120.0)]
    resume_timeout: f64,
    /// In `resume`: a receiver waits a random time up to this long,
    /// seconds, before reconnecting (0: at once).
    #[arg(long, default_value_t = 0.0)]
    reconnect_jitter: f64,
    /// In `resume`: reconnections (TCP, TLS, SASL, <resume/>) under way at
    /// once in this process, at most.
    #[arg(long, default_value_t = 256)]
    reconnect_concurrency: usize,
    /// A file written once the subscribers of `--pubsub-role subscribers`
    /// have subscribed; they stop early when this name plus `.stop` exists.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Nodes that `nodes` creates, spread over `--sessions` sessions.
    #[arg(long, default_value_t = 10_000)]
    nodes: u64,
    /// Items published to each node that `nodes` creates.
    #[arg(long, default_value_t = 3)]
    items_per_node: u32,
    /// Single-item retrievals timed at each checkpoint of `nodes`; first
    /// entries into idle rooms that `muc --muc-role prober` times.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Checkpoints of `nodes`: the creation pauses this many times, evenly
    /// spread, to time retrievals.
    #[arg(long, default_value_t = 10)]
    checkpoints: u64,

    // --- the report
    /// The server's PID, to read its memory and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory, to report its size (`nodes`).
    #[arg(long)]
    server_data: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with plots here.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// `text` as clap help that keeps a literal `{n}`: clap turns every `{n}`
/// of a help text into a line break, with no escape. A style reset between
/// `{` and `n` breaks up the sequence; it is invisible on a terminal and
/// stripped when the help goes anywhere else, where `{n}` then reads whole.
fn help_text(text: &str) -> clap::builder::StyledStr {
    let reset = clap::builder::styling::Reset;
    clap::builder::StyledStr::from(text.replace("{n}", &format!("{{{reset}n}}")))
}

impl Args {
    fn scenario(&self) -> Option<Scenario> {
        self.scenario.or(self.scenario_from_file)
    }

    pub fn scenario_name(&self) -> &'static str {
        match self.scenario() {
            Some(Scenario::Connect) => "connect",
            Some(Scenario::Chat) => "chat",
            Some(Scenario::Presence) => "presence",
            Some(Scenario::Muc) => "muc",
            Some(Scenario::Pubsub) => "pubsub",
            Some(Scenario::Iot) => "iot",
            Some(Scenario::Nodes) => "nodes",
            Some(Scenario::Mixed) => "mixed",
            Some(Scenario::Resume) => "resume",
            None => "none",
        }
    }
}

/// The command line with the scenario file's options put first, so that
/// options given on the command line override them.
fn argv() -> anyhow::Result<Vec<String>> {
    let mut raw: Vec<String> = std::env::args().collect();
    let mut file = None;
    let mut i = 1;
    while i < raw.len() {
        if raw[i] == "--scenario-file" && i + 1 < raw.len() {
            file = Some(raw.remove(i + 1));
            raw.remove(i);
        } else if let Some(f) = raw[i].strip_prefix("--scenario-file=") {
            file = Some(f.to_string());
            raw.remove(i);
        } else {
            i += 1;
        }
    }
    let Some(file) = file else { return Ok(raw) };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {file}"))?;
    let mut out = vec![raw[0].clone()];
    for (k, v) in table {
        let key = if k == "scenario" {
            "scenario-from-file".to_string()
        } else {
            k.replace('_', "-")
        };
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(true) => {
                out.push(format!("--{key}"));
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => anyhow::bail!("{file}: {k}: unsupported value {other}"),
        };
        out.push(format!("--{key}={value}"));
    }
    out.extend(raw.into_iter().skip(1));
    Ok(out)
}

fn main() -> ExitCode {
    let args = match argv() {
        Ok(a) => Args::parse_from(a),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.scenario().is_none() {
        eprintln!(
            "error: name a scenario (connect, chat, presence, muc, pubsub, iot, nodes, mixed, resume)"
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(Arc::new(args))) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run the scenario and report; true if the run passed.
async fn run(args: Arc<Args>) -> anyhow::Result<bool> {
    let mut addrs: Vec<SocketAddr> = vec![
        tokio::net::lookup_host((args.host.as_str(), args.port))
            .await
            .context("resolving --host")?
            .next()
            .context("--host has no address")?,
    ];
    for a in &args.also {
        addrs.push(
            tokio::net::lookup_host(a.as_str())
                .await
                .with_context(|| format!("resolving --also {a}"))?
                .next()
                .with_context(|| format!("--also {a} has no address"))?,
        );
    }
    let target = Target {
        addrs,
        domain: args.domain.clone(),
        transport: args.transport,
        ws_path: args.ws_path.clone(),
        bosh_path: args.bosh_path.clone(),
        tls: args.tls,
        mechanism: args.mechanism.clone(),
        register: args.register,
        sm: args.sm,
        scram_keys: args.cache_scram.then(Default::default),
        tls_config: tls::insecure_client_config()?,
    };
    let peer = match &args.peer_domain {
        None => None,
        Some(domain) => {
            if args.scenario() != Some(Scenario::Chat) {
                anyhow::bail!("--peer-domain is for the chat scenario only");
            }
            let host = args.peer_host.as_deref().unwrap_or(args.host.as_str());
            let addr = tokio::net::lookup_host((host, args.peer_port))
                .await
                .context("resolving --peer-host")?
                .next()
                .context("--peer-host has no address")?;
            Some(Target {
                addrs: vec![addr],
                domain: domain.clone(),
                ..target.clone()
            })
        }
    };
    let metrics = Arc::new(Metrics::default());
    let ctx = Ctx {
        args: args.clone(),
        target,
        peer,
        metrics: metrics.clone(),
    };
    let pid = args.server_pid.map(|p| p.to_string());
    let gen0 = cpu_seconds("self");
    let srv0 = pid.as_deref().and_then(cpu_seconds);
    let wall0 = Instant::now();
    let sampler = Sampler::start(metrics.clone(), args.server_pid);

    let result = match args.scenario() {
        Some(Scenario::Connect) => connect::run(&ctx, args.first_user, args.sessions).await,
        Some(Scenario::Chat) => chat::run(&ctx, 0, args.pairs, args.rate).await,
        Some(Scenario::Presence) => {
            presence::run(
                &ctx,
                0,
                args.presence_users,
                args.contacts,
                args.churn_interval,
                args.csi_inactive,
            )
            .await
        }
        Some(Scenario::Muc) => match (&args.muc_room, args.muc_role) {
            (Some(name), fanout::MucRole::Sender) => {
                fanout::muc_sender_role(&ctx, args.first_user, name, args.muc_rate).await
            }
            (Some(name), fanout::MucRole::Occupants) => {
                fanout::muc_occupants_role(&ctx, args.first_user, args.occupants, name).await
            }
            (Some(name), fanout::MucRole::Creator) => {
                fanout::muc_creator_role(&ctx, args.first_user, args.sessions, args.rooms, name)
                    .await
            }
            (Some(name), fanout::MucRole::Prober) => {
                fanout::muc_prober_role(&ctx, args.first_user, args.rooms, args.probes, name).await
            }
            (None, _) if args.muc_role != fanout::MucRole::Both => Err(anyhow::anyhow!(
                "--muc-role other than both needs --muc-room"
            )),
            _ => fanout::muc(&ctx, 0, args.rooms, args.occupants, args.muc_rate).await,
        },
        Some(Scenario::Pubsub) => {
            fanout::pubsub(&ctx, args.first_user, args.subscribers, args.publish_rate).await
        }
        Some(Scenario::Iot) => {
            iot::run(
                &ctx,
                0,
                args.devices,
                args.watchers,
                args.nodes_per_watcher,
                args.publish_rate,
            )
            .await
        }
        Some(Scenario::Nodes) => {
            nodes::run(
                &ctx,
                0,
                args.sessions,
                args.nodes,
                args.items_per_node,
                args.probes,
                args.checkpoints,
            )
            .await
        }
        Some(Scenario::Mixed) => mixed(&ctx).await,
        Some(Scenario::Resume) => {
            let storm = resume::Storm {
                timeout: std::time::Duration::from_secs_f64(args.resume_timeout.max(0.0)),
                jitter: std::time::Duration::from_secs_f64(args.reconnect_jitter.max(0.0)),
                concurrency: args.reconnect_concurrency,
            };
            resume::run(
                &ctx,
                args.first_user,
                args.senders,
                args.receivers,
                args.rate,
                storm,
            )
            .await
        }
        None => unreachable!("checked in main"),
    };
    let samples = sampler.finish().await;
    let wall = wall0.elapsed().as_secs_f64();
    let result = match result {
        Ok(r) => serde_json::Value::Object(r),
        Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
    };

    let gen_cpu = gen0.and_then(|a| cpu_seconds("self").map(|b| b - a));
    let srv_cpu = srv0.and_then(|a| pid.as_deref().and_then(cpu_seconds).map(|b| b - a));
    let n = cpus() as f64;
    let gen_cores = gen_cpu.map(|c| c / wall);
    let srv_cores = srv_cpu.map(|c| c / wall);
    let (limited, note) = verdict_on_cpu(n, gen_cores, srv_cores);

    let errors = metrics.errors.load(Ordering::Relaxed);
    let problems = report::problems(&result, errors);
    let ok = problems.is_empty();
    let addr_list = ctx
        .target
        .addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let peer = ctx.peer.as_ref().map(|p| {
        serde_json::json!({
            "address": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "domain": p.domain,
        })
    });
    let report = serde_json::json!({
        "scenario": args.scenario_name(),
        "ok": ok,
        "problems": problems,
        "server": {
            "address": addr_list,
            "domain": args.domain,
            "transport": format!("{:?}", args.transport).to_lowercase(),
            // What the connections did, whatever --tls said.
            "tls": match args.transport {
                Transport::Tcp => format!("{:?}", args.tls).to_lowercase(),
                Transport::Websocket | Transport::Bosh => "plain".into(),
                Transport::Wss => "direct".into(),
            },
            "mechanism": args.mechanism,
        },
        "peer_server": peer,
        "result": result,
        "errors": metrics.causes(),
        "cpu": {
            "wall_seconds": wall,
            "machine_cpus": n,
            "generator_seconds": gen_cpu,
            "server_seconds": srv_cpu,
            "generator_cores": gen_cores,
            "server_cores": srv_cores,
            "generator_limited": limited,
            "note": note,
        },
        "timeline": samples,
    });
    let mut report = report;
    if let (Some(sm), Some(r)) = (sm_report(&args, &metrics), report.as_object_mut()) {
        r.insert("sm".into(), sm);
    }
    let title = format!(
        "xmpp-loadtest {} against {} ({}{}, {})",
        args.scenario_name(),
        addr_list,
        args.domain,
        ctx.peer
            .as_ref()
            .map(|p| format!(", receivers at {} ({})", p.addrs[0], p.domain))
            .unwrap_or_default(),
        match args.transport {
            Transport::Tcp => "TCP",
            Transport::Websocket => "WebSocket",
            Transport::Wss => "WebSocket with TLS",
            Transport::Bosh => "BOSH",
        }
    );
    println!("{title}");
    print!("{}", report::table(&report));
    println!(
        "  {}",
        if ok {
            "PASSED".to_string()
        } else {
            format!("FAILED: {}", problems.join("; "))
        }
    );
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        std::fs::write(p, report::html(&title, &report, &samples))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ok)
}

/// What stream management (XEP-0198) did, when it was on.
fn sm_report(args: &Args, m: &Metrics) -> Option<serde_json::Value> {
    if !args.sm && args.scenario() != Some(Scenario::Resume) {
        return None;
    }
    Some(serde_json::json!({
        "enabled": m.sm_enabled.load(Ordering::Relaxed),
        "resumed": m.sm_resumed.load(Ordering::Relaxed),
        "resume_refused": m.sm_refused.load(Ordering::Relaxed),
    }))
}

/// Whether the generator, rather than the server, may have set the pace.
fn verdict_on_cpu(cpus: f64, generator: Option<f64>, server: Option<f64>) -> (bool, String) {
    let Some(g) = generator else {
        return (false, "generator CPU unknown".into());
    };
    let s = server.unwrap_or(0.0);
    let saturated = g + s >= 0.85 * cpus;
    if g >= 0.9 * cpus || (saturated && g >= s) {
        (
            true,
            format!(
                "generator-limited: the generator used {g:.2} of {cpus} cores; the server's figures are a lower bound"
            ),
        )
    } else if saturated {
        (
            false,
            format!("the machine was saturated: server {s:.2}, generator {g:.2} of {cpus} cores"),
        )
    } else {
        (
            false,
            format!("generator {g:.2} cores, server {s:.2} cores of {cpus}"),
        )
    }
}

/// `mixed`: chat, presence churn, rooms, a PubSub node and idle sessions
/// at once, each with its own users; a part whose count is 0 is left out.
async fn mixed(ctx: &Ctx) -> anyhow::Result<Report> {
    let a = &ctx.args;
    // The PubSub publisher comes first, so that it is user 0 as in the
    // `pubsub` scenario (Prosody lets only admins create nodes).
    let pubsub_first = 0;
    let chat_first = pubsub_first
        + if a.subscribers > 0 {
            a.subscribers + 1
        } else {
            0
        };
    let presence_first = chat_first + a.pairs * 2;
    let muc_first = presence_first + a.presence_users;
    let idle_first = muc_first + a.rooms * a.occupants;
    let part = |r: Option<anyhow::Result<Report>>| match r {
        None => None,
        Some(Ok(r)) => Some(serde_json::Value::Object(r)),
        Some(Err(e)) => Some(serde_json::json!({ "error": format!("{e:#}") })),
    };
    let (c, p, m, s, i) = tokio::join!(
        async {
            if a.pairs > 0 {
                Some(chat::run(ctx, chat_first, a.pairs, a.rate).await)
            } else {
                None
            }
        },
        async {
            if a.presence_users > 0 {
                Some(
                    presence::run(
                        ctx,
                        presence_first,
                        a.presence_users,
                        a.contacts,
                        a.churn_interval,
                        a.csi_inactive,
                    )
                    .await,
                )
            } else {
                None
            }
        },
        async {
            if a.rooms > 0 {
                Some(fanout::muc(ctx, muc_first, a.rooms, a.occupants, a.muc_rate).await)
            } else {
                None
            }
        },
        async {
            if a.subscribers > 0 {
                Some(fanout::pubsub(ctx, pubsub_first, a.subscribers, a.publish_rate).await)
            } else {
                None
            }
        },
        async {
            if a.sessions > 0 {
                Some(connect::run(ctx, idle_first, a.sessions).await)
            } else {
                None
            }
        },
    );
    let mut r = Report::new();
    for (name, v) in [
        ("chat", c),
        ("presence", p),
        ("muc", m),
        ("pubsub", s),
        ("idle", i),
    ] {
        if let Some(v) = part(v) {
            r.insert(name.into(), v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// The help as clap renders it (without colours) shows `{n}`, and no
    /// option's help holds a `{n}` that clap would turn into a line break.
    #[test]
    fn user_pattern_placeholder_was_eaten_by_the_help_formatter() {
        let mut cmd = Args::command();
        let help = cmd.render_help().to_string();
        assert!(
            help.contains("Account names: `{n}` is replaced by the user number"),
            "{help}"
        );
        let long = Args::command().render_long_help().to_string();
        assert!(long.contains("`{n}` is replaced"), "{long}");
        for arg in Args::command().get_arguments() {
            for text in [arg.get_help(), arg.get_long_help()].into_iter().flatten() {
                // clap replaces `{n}` in the raw text, escapes included.
                assert!(
                    !text.ansi().to_string().contains("{n}"),
                    "--{}: use help_text() for a literal {{n}}",
                    arg.get_id()
                );
            }
        }
    }
}
