//! The local admin socket: `xmppd user ...` talks to a running server
//! through it (the server holds the store's lock). A Unix socket in the
//! data directory, mode 0600, one request per line:
//! `add JID PASSWORD_BASE64`, `passwd JID PASSWORD_BASE64`, `del JID`,
//! `list [DOMAIN]`; answers are lines ending with `ok` or `err MESSAGE`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use router::{AccountError, Core, CoreError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bind the socket and serve it until shutdown.
pub fn serve(
    path: &Path,
    core: Core,
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
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => if let Ok((s, _)) = r {
                    tokio::spawn(session(s, core.clone()));
                },
                _ = shutdown.changed() => break,
            }
        }
    }))
}

async fn session(s: UnixStream, core: Core) {
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match execute(&core, &line).await {
            Ok(mut body) => {
                body.push_str("ok\n");
                body
            }
            Err(e) => format!("err {}\n", e.replace('\n', " ")),
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
}

fn parse_jid(s: Option<&str>) -> Result<proto::BareJid, String> {
    let s = s.ok_or("missing JID")?;
    proto::BareJid::parse(s).map_err(|e| format!("invalid JID {s}: {e}"))
}

fn password(s: Option<&str>) -> Result<String, String> {
    let raw = B64
        .decode(s.ok_or("missing password")?)
        .map_err(|_| "bad password encoding".to_string())?;
    String::from_utf8(raw).map_err(|_| "password is not UTF-8".to_string())
}

async fn execute(core: &Core, line: &str) -> Result<String, String> {
    let mut parts = line.split_whitespace();
    let err = |e: AccountError| e.to_string();
    match parts.next() {
        Some("add") => {
            let jid = parse_jid(parts.next())?;
            core.add_account(&jid, &password(parts.next())?)
                .await
                .map_err(err)?;
            Ok(String::new())
        }
        Some("passwd") => {
            let jid = parse_jid(parts.next())?;
            core.set_password(&jid, &password(parts.next())?)
                .await
                .map_err(err)?;
            Ok(String::new())
        }
        Some("del") => {
            let jid = parse_jid(parts.next())?;
            core.delete_account(&jid)
                .await
                .map_err(|e: CoreError| e.to_string())?;
            Ok(String::new())
        }
        Some("list") => {
            let users = core.list_users(parts.next()).await.map_err(err)?;
            Ok(users.iter().map(|u| format!("{u}\n")).collect())
        }
        _ => Err("unknown command".into()),
    }
}

/// Client side: send one request to a running server. `Ok(None)` if no
/// server listens on the socket.
pub async fn request(
    path: &Path,
    line: &str,
) -> anyhow::Result<Option<Result<Vec<String>, String>>> {
    let s = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let (r, mut w) = s.into_split();
    w.write_all(line.as_bytes()).await?;
    w.write_all(b"\n").await?;
    let mut lines = BufReader::new(r).lines();
    let mut body = Vec::new();
    while let Some(l) = lines.next_line().await? {
        if l == "ok" {
            return Ok(Some(Ok(body)));
        }
        if let Some(e) = l.strip_prefix("err ") {
            return Ok(Some(Err(e.to_string())));
        }
        body.push(l);
    }
    anyhow::bail!("the server closed the admin connection")
}

pub fn encode_password(p: &str) -> String {
    B64.encode(p.as_bytes())
}
