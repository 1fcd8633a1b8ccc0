//! The local admin socket: `xmppd user ...` talks to a running server
//! through it (the server holds the store's lock). A Unix socket in the
//! data directory, mode 0600.
//!
//! The protocol is one JSON object per line in each direction: a
//! [`Request`] from the command line, one [`Response`] from the server.
//! JSON escapes every control character inside a string, so no value (a
//! JID, a password) can end a message or start another one: the earlier
//! space-separated line protocol let `user add "$(printf 'a@b\ndel c@b')"`
//! smuggle a second command in. Both ends also check every address with
//! [`account_jid`] (RFC 7622 parsing, a localpart, a served domain), the
//! command line before it sends anything and the server again on receipt.

use std::path::Path;

use proto::BareJid;
use router::{Core, CoreError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest request line accepted: a JID is at most 3 parts of 1023
/// bytes and a password is bounded by PRECIS in practice; anything near
/// this is not a request from `xmppd user`.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// One call of the admin socket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Create an account.
    Add { jid: String, password: String },
    /// Replace an account's password.
    Passwd { jid: String, password: String },
    /// Delete an account and its data, ending its sessions.
    Del { jid: String },
    /// The accounts, of one domain or all.
    List {
        #[serde(default)]
        domain: Option<String>,
    },
    /// The sessions bound in the cluster, of one account or all.
    Sessions {
        #[serde(default)]
        user: Option<String>,
    },
    /// End one session's stream (a full JID).
    Kick { jid: String },
    /// The server-to-server streams of this node, a line each.
    S2s,
    /// The rooms of a MUC service (the default one when none is named).
    Rooms {
        #[serde(default)]
        service: Option<String>,
    },
    /// Destroy a MUC room, its occupants told the reason.
    Destroy {
        room: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        alternate: Option<String>,
    },
    /// The nodes of a PubSub service, or an account's PEP nodes.
    Nodes {
        #[serde(default)]
        service: Option<String>,
    },
    /// Delete a PubSub node with everything in it.
    DelNode {
        #[serde(default)]
        service: Option<String>,
        node: String,
    },
}

/// Passwords stay out of logs and panic messages.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Add { jid, .. } => f.debug_struct("Add").field("jid", jid).finish(),
            Request::Passwd { jid, .. } => f.debug_struct("Passwd").field("jid", jid).finish(),
            Request::Del { jid } => f.debug_struct("Del").field("jid", jid).finish(),
            Request::List { domain } => f.debug_struct("List").field("domain", domain).finish(),
            Request::Sessions { user } => f.debug_struct("Sessions").field("user", user).finish(),
            Request::Kick { jid } => f.debug_struct("Kick").field("jid", jid).finish(),
            Request::S2s => f.write_str("S2s"),
            Request::Rooms { service } => {
                f.debug_struct("Rooms").field("service", service).finish()
            }
            Request::Destroy { room, .. } => f.debug_struct("Destroy").field("room", room).finish(),
            Request::Nodes { service } => {
                f.debug_struct("Nodes").field("service", service).finish()
            }
            Request::DelNode { service, node } => f
                .debug_struct("DelNode")
                .field("service", service)
                .field("node", node)
                .finish(),
        }
    }
}

/// The server's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum Response {
    /// Done; `users` holds the answer to `list`, `sessions` the answer
    /// to `sessions`, `lines` that to `rooms` and `nodes`, one line each
    /// (empty otherwise).
    Ok {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sessions: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<String>,
    },
    /// Refused or failed, with the reason.
    Err { message: String },
}

/// An address given to an account command that names no account here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{raw:?} is not a valid JID: {source}")]
    BadJid {
        raw: String,
        #[source]
        source: proto::JidError,
    },
    #[error("{0} is not an account address (localpart@domain)")]
    NotAUser(String),
    #[error("domain {domain} is not served here (served: {served})")]
    UnknownDomain { domain: String, served: String },
    #[error("{raw:?} is not a valid domain: {source}")]
    BadDomain {
        raw: String,
        #[source]
        source: proto::JidError,
    },
}

/// `raw` as the bare JID of a local account: a valid JID (RFC 7622, in its
/// normalised form), with a localpart, no resource, at one of `domains`
/// (canonical domainparts, as `Config::validate` requires them).
pub fn account_jid(raw: &str, domains: &[String]) -> Result<BareJid, AdminError> {
    let jid = BareJid::parse(raw).map_err(|source| AdminError::BadJid {
        raw: raw.to_string(),
        source,
    })?;
    if jid.local().is_none() {
        return Err(AdminError::NotAUser(jid.to_string()));
    }
    if !domains.iter().any(|d| d == jid.domain()) {
        return Err(AdminError::UnknownDomain {
            domain: jid.domain().to_string(),
            served: domains.join(", "),
        });
    }
    Ok(jid)
}

/// `raw` as a domainpart in canonical form, for `list --domain`. A domain
/// that is no longer served may still hold accounts, so it is not refused.
pub fn list_domain(raw: &str) -> Result<String, AdminError> {
    proto::jid::normalize_domain(raw).map_err(|source| AdminError::BadDomain {
        raw: raw.to_string(),
        source,
    })
}

/// Bind the socket and serve it until shutdown. `domains` are the served
/// domains in canonical form. An edge has no `core`: it answers
/// `s2s status` and refuses the rest, which a core node answers.
pub fn serve(
    path: &Path,
    core: Option<Core>,
    domains: Vec<String>,
    s2s: Option<std::sync::Arc<crate::s2s::S2s>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    if path.exists() {
        // A stale socket from a killed server: the store lock already proved
        // no other server runs on this data directory.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let domains = std::sync::Arc::new(domains);
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => if let Ok((s, _)) = r {
                    tokio::spawn(session(s, core.clone(), domains.clone(), s2s.clone()));
                },
                _ = shutdown.changed() => break,
            }
        }
    }))
}

/// [`serve`] on an edge, which has no store and so no lock on its data
/// directory: a socket that answers belongs to another running process
/// and is left alone, and an edge that cannot have a socket (a read-only
/// directory) runs on without one.
pub async fn serve_edge(
    path: &Path,
    domains: Vec<String>,
    s2s: Option<std::sync::Arc<crate::s2s::S2s>>,
    shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if UnixStream::connect(path).await.is_ok() {
        tracing::warn!(path = %path.display(), "another process serves the admin socket of this data directory; this edge serves none");
        return None;
    }
    let made = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| serve(path, None, domains, s2s, shutdown));
    match made {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no admin socket on this edge");
            None
        }
    }
}

async fn session(
    s: UnixStream,
    core: Option<Core>,
    domains: std::sync::Arc<Vec<String>>,
    s2s: Option<std::sync::Arc<crate::s2s::S2s>>,
) {
    let (r, mut w) = s.into_split();
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_REQUEST_BYTES + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let complete = line.ends_with(b"\n");
        let response = if !complete && line.len() as u64 > MAX_REQUEST_BYTES {
            Response::Err {
                message: format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => execute(core.as_ref(), &domains, s2s.as_deref(), req).await,
                Err(e) => Response::Err {
                    message: format!("malformed request: {e}"),
                },
            }
        };
        let failed = matches!(response, Response::Err { .. });
        if write_message(&mut w, &response).await.is_err() || (failed && !complete) {
            break;
        }
    }
}

/// Write `msg` as one line of JSON.
async fn write_message<W, T>(w: &mut W, msg: &T) -> std::io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    let mut bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn execute(
    core: Option<&Core>,
    domains: &[String],
    s2s: Option<&crate::s2s::S2s>,
    req: Request,
) -> Response {
    let ok = |users, sessions, lines| Response::Ok {
        users,
        sessions,
        lines,
    };
    if let Request::S2s = req {
        return match s2s {
            Some(f) => ok(
                Vec::new(),
                Vec::new(),
                crate::s2s::status_lines(&f.status()),
            ),
            None => Response::Err {
                message: "federation is off on this node (s2s.enabled = false)".into(),
            },
        };
    }
    let Some(core) = core else {
        return Response::Err {
            message: "this node is an edge: accounts, sessions, rooms and nodes are the core's; run the command on a core node".into(),
        };
    };
    let r = match req {
        Request::Sessions { user } => sessions(core, domains, user.as_deref())
            .await
            .map(|s| ok(Vec::new(), s, Vec::new())),
        Request::Rooms { .. }
        | Request::Destroy { .. }
        | Request::Nodes { .. }
        | Request::DelNode { .. } => service_call(core, req)
            .await
            .map(|l| ok(Vec::new(), Vec::new(), l)),
        other => run(core, domains, other)
            .await
            .map(|u| ok(u, Vec::new(), Vec::new())),
    };
    r.unwrap_or_else(|message| Response::Err { message })
}

/// Rooms and nodes: listed a line each (all pages), destroyed, deleted.
async fn service_call(core: &Core, req: Request) -> Result<Vec<String>, String> {
    use crate::services::{self, Service};
    const PAGE: usize = 1000;
    match req {
        Request::Rooms { service } => {
            let svc = services::named_or_default(core, service.as_deref(), Service::Muc)
                .and_then(|s| services::muc_service(core, &s))?;
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = core
                    .list_rooms(&svc, after.as_deref(), PAGE)
                    .await
                    .map_err(|e| e.to_string())?;
                let full = page.len() == PAGE;
                after = page
                    .last()
                    .map(|r| r.jid.split('@').next().unwrap_or("").to_string());
                out.extend(page.iter().map(|r| {
                    let mut l = format!(
                        "{} occupants={} {} {}",
                        r.jid,
                        r.occupants,
                        if r.persistent {
                            "persistent"
                        } else {
                            "temporary"
                        },
                        if r.public { "public" } else { "hidden" },
                    );
                    for (on, word) in [
                        (r.members_only, " members-only"),
                        (r.password_protected, " password"),
                        (r.locked, " locked"),
                    ] {
                        if on {
                            l.push_str(word);
                        }
                    }
                    // A name is whatever an owner typed: quoted, escaped.
                    l.push_str(&format!(" name={:?}", r.name));
                    l
                }));
                if !full {
                    return Ok(out);
                }
            }
        }
        Request::Destroy {
            room,
            reason,
            alternate,
        } => {
            let room = services::room_jid(core, &room)?;
            let reason = services::reason(reason.as_deref())?;
            let alternate = services::alternate(alternate.as_deref())?;
            match core.destroy_room(&room, reason, alternate, 0).await {
                Ok(true) => {
                    tracing::info!(room = %room, "room destroyed through the admin socket");
                    Ok(Vec::new())
                }
                Ok(false) => Err(format!("no room {room}")),
                Err(e) => Err(e.to_string()),
            }
        }
        Request::Nodes { service } => {
            let svc = services::named_or_default(core, service.as_deref(), Service::Pubsub)
                .and_then(|s| services::pubsub_service(core, &s))?;
            let mut out = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = core
                    .list_nodes(&svc, after.as_deref(), PAGE)
                    .await
                    .map_err(|e| e.to_string())?;
                let full = page.len() == PAGE;
                after = page.last().map(|n| n.node.clone());
                // A node id is whatever its creator typed: quoted, escaped.
                out.extend(
                    page.iter()
                        .map(|n| format!("{:?} items={} creator={}", n.node, n.items, n.creator)),
                );
                if !full {
                    return Ok(out);
                }
            }
        }
        Request::DelNode { service, node } => {
            let svc = services::named_or_default(core, service.as_deref(), Service::Pubsub)
                .and_then(|s| services::pubsub_service(core, &s))?;
            let id = services::node_id(&node)?;
            match core.delete_node(&svc, id, 0).await {
                Ok(true) => {
                    tracing::info!(service = %svc, node = id, "pubsub node deleted through the admin socket");
                    Ok(Vec::new())
                }
                Ok(false) => Err(format!("no node {:?} at {svc}", id)),
                Err(e) => Err(e.to_string()),
            }
        }
        _ => Err("not a room or node call".into()),
    }
}

/// The sessions as `xmppd session list` prints them: the full JID, then
/// `available` or `unavailable`, the priority and the edge node holding
/// the connection (`local` for the node's own process).
async fn sessions(
    core: &Core,
    domains: &[String],
    user: Option<&str>,
) -> Result<Vec<String>, String> {
    let user = user
        .map(|u| account_jid(u, domains))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(core
        .list_sessions(user.as_ref())
        .await
        .iter()
        .map(|s| {
            format!(
                "{} {} priority={} edge={}",
                s.jid,
                if s.available {
                    "available"
                } else {
                    "unavailable"
                },
                s.priority,
                s.edge
                    .map_or_else(|| "local".to_string(), |e| e.to_string())
            )
        })
        .collect())
}

async fn run(core: &Core, domains: &[String], req: Request) -> Result<Vec<String>, String> {
    let jid = |raw: &str| account_jid(raw, domains).map_err(|e| e.to_string());
    match req {
        Request::Sessions { .. }
        | Request::S2s
        | Request::Rooms { .. }
        | Request::Destroy { .. }
        | Request::Nodes { .. }
        | Request::DelNode { .. } => return Err("answered elsewhere".into()),
        Request::Kick { jid: raw } => {
            let full = proto::FullJid::parse(&raw)
                .map_err(|e| format!("{raw:?} is not a full JID (user@domain/resource): {e}"))?;
            jid(full.bare_str())?;
            return match core.kick(&full, 0).await {
                Ok(true) => {
                    tracing::info!(session = %full, "session ended through the admin socket");
                    Ok(Vec::new())
                }
                Ok(false) => Err(format!("no session {full}")),
                Err(e) => Err(e.to_string()),
            };
        }
        Request::Add { jid: j, password } => {
            let j = jid(&j)?;
            core.add_account(&j, &password)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(user = %j, "account created through the admin socket");
        }
        Request::Passwd { jid: j, password } => {
            let j = jid(&j)?;
            core.set_password(&j, &password)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(user = %j, "password changed through the admin socket");
        }
        Request::Del { jid: j } => {
            let j = jid(&j)?;
            core.delete_account(&j)
                .await
                .map_err(|e: CoreError| e.to_string())?;
            tracing::info!(user = %j, "account deleted through the admin socket");
        }
        Request::List { domain } => {
            let domain = domain
                .as_deref()
                .map(list_domain)
                .transpose()
                .map_err(|e| e.to_string())?;
            let users = core
                .list_users(domain.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(users.iter().map(ToString::to_string).collect());
        }
    }
    Ok(Vec::new())
}

/// Client side: send one request to a running server. `Ok(None)` if no
/// server listens on the socket.
pub async fn request(path: &Path, req: &Request) -> anyhow::Result<Option<Response>> {
    let s = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let (r, mut w) = s.into_split();
    write_message(&mut w, req).await?;
    let mut line = String::new();
    if BufReader::new(r).read_line(&mut line).await? == 0 {
        anyhow::bail!("the server closed the admin connection");
    }
    let resp = serde_json::from_str(&line)
        .map_err(|e| anyhow::anyhow!("unreadable answer from the server: {e}"))?;
    Ok(Some(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".to_string()]
    }

    #[test]
    fn a_newline_in_a_jid_stays_inside_one_json_line() {
        let req = Request::Add {
            jid: "zed@localhost\ndel lisa@localhost".into(),
            password: "x y\nz".into(),
        };
        let text = serde_json::to_string(&req).expect("encode");
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).expect("decode"), req);
    }

    #[test]
    fn account_jids_must_be_bare_local_accounts_of_served_domains() {
        assert_eq!(
            account_jid("Alice@LOCALHOST", &domains()).map(|j| j.to_string()),
            Ok("alice@localhost".to_string())
        );
        for bad in [
            "zed@localhost\ndel lisa@localhost",
            "eve@localhost c2VjcmV0",
            "alice@localhost/res",
            "localhost",
            "alice@elsewhere.example",
            "",
            "a b@localhost",
        ] {
            assert!(account_jid(bad, &domains()).is_err(), "{bad:?} accepted");
        }
        let e = account_jid("a@localhost\nx", &domains()).expect_err("newline");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn unknown_operations_and_fields_are_refused() {
        for text in [
            r#"{"op":"drop","jid":"a@localhost"}"#,
            r#"{"op":"del","jid":"a@localhost","also":"b@localhost"}"#,
            r#"{"op":"add","jid":"a@localhost"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(text).is_err(), "{text}");
        }
        let list: Request = serde_json::from_str(r#"{"op":"list"}"#).expect("list");
        assert_eq!(list, Request::List { domain: None });
    }

    #[test]
    fn debug_output_hides_the_password() {
        let req = Request::Passwd {
            jid: "a@localhost".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}
