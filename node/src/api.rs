//! The admin HTTP API: JSON under `/api/v1` on the HTTP listener, for
//! operators and their tools. Accounts (add, password, delete, list with
//! pages), sessions (list, kick), MUC rooms (list with their occupant
//! counts, destroy), PubSub nodes (list, delete) and the cluster (status,
//! add and remove a core node). Every call but the OpenAPI document needs
//! `Authorization: Bearer <token>`, the token read from `admin.token_file`;
//! without that file the API is not served. `docs/openapi.json` describes
//! it and is served at `/api/v1/openapi.json`.
//!
//! Everything a caller sends is checked as the admin socket checks it
//! (RFC 7622 addresses of served domains, bounded bodies, no unknown
//! fields), and every answer, errors included, is JSON.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use proto::cluster::pb;
use proto::{BareJid, FullJid};
use router::service::CoreService;
use router::{AccountError, Core};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{account_jid, list_domain};
use crate::services::{self, Service};

/// The OpenAPI document of this API, kept in the repository.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Largest request body read.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Entries per page when the caller names no `limit`, and the most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Longest password taken.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest token accepted from `admin.token_file`.
pub const MIN_TOKEN_BYTES: usize = 16;

/// What the handlers need: the token from the start, the core once it
/// runs.
pub struct ApiState {
    token: std::sync::RwLock<Vec<u8>>,
    inner: OnceLock<Inner>,
    /// `POST /drain` asks the node to drain and stop (see `main`).
    drain: tokio::sync::watch::Sender<bool>,
    /// Federation on this node, for `GET /s2s`.
    s2s: OnceLock<Arc<crate::s2s::S2s>>,
}

struct Inner {
    core: Core,
    /// The node's `Admin` service, called in-process for the cluster.
    admin: CoreService,
    domains: Vec<String>,
}

impl ApiState {
    pub fn new(token: String) -> Arc<ApiState> {
        Arc::new(ApiState {
            token: std::sync::RwLock::new(token.into_bytes()),
            inner: OnceLock::new(),
            drain: tokio::sync::watch::channel(false).0,
            s2s: OnceLock::new(),
        })
    }

    /// Federation on this node (listed by `GET /s2s`).
    pub fn set_s2s(&self, s2s: Arc<crate::s2s::S2s>) {
        let _ = self.s2s.set(s2s);
    }

    /// Turns true when an operator asked the node to drain and stop.
    pub fn drain_requested(&self) -> tokio::sync::watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// A new token (the file read again on SIGHUP): the old one stops
    /// working.
    pub fn set_token(&self, token: String) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token.into_bytes();
    }

    /// The core of this process runs: the API serves from now on.
    pub fn set_core(&self, core: Core, admin: CoreService, domains: Vec<String>) {
        let _ = self.inner.set(Inner {
            core,
            admin,
            domains,
        });
    }

    fn ready(&self) -> ApiResult<&Inner> {
        self.inner.get().ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is starting, or holds no core (an edge): ask a core node".into(),
            )
        })
    }
}

/// Read the bearer token from `path`: its first line, without surrounding
/// white space, at least [`MIN_TOKEN_BYTES`] long.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < MIN_TOKEN_BYTES {
        anyhow::bail!(
            "{}: the token must be at least {MIN_TOKEN_BYTES} characters on its first line",
            path.display()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "{}: the token may hold only printable ASCII characters, without spaces",
            path.display()
        );
    }
    Ok(token)
}

/// The routes, to be nested at `/api/v1` in the HTTP listener's router.
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{jid}", delete(delete_user))
        .route("/users/{jid}/password", put(set_password))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{jid}", delete(kick))
        .route("/cluster", get(cluster_status))
        .route("/cluster/nodes", post(add_node))
        .route("/cluster/nodes/{id}", delete(remove_node))
        .route("/rooms", get(list_rooms))
        .route("/rooms/{jid}", delete(destroy_room))
        .route("/pubsub/nodes", get(list_nodes))
        .route("/pubsub/nodes/{node}", delete(delete_node))
        .route("/drain", post(drain))
        .route("/s2s", get(list_s2s))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such call".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "this call does not take that method".into(),
            )
        })
        .with_state(state)
}

/// An error answer: `{"error": "..."}` with its status.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"xmppd\""),
            );
        }
        r
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        let status = match &e {
            AccountError::Exists(_) => StatusCode::CONFLICT,
            AccountError::NoSuchUser(_) => StatusCode::NOT_FOUND,
            AccountError::BadPassword(_)
            | AccountError::NotAUser(_)
            | AccountError::UnknownDomain(_) => StatusCode::BAD_REQUEST,
            AccountError::NotCommitted(_) => StatusCode::SERVICE_UNAVAILABLE,
            AccountError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        use tonic::Code;
        let status = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, proto::cluster::ClusterError::from(s).to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Only callers with the token get past this; the comparison takes the
/// same time whatever the bytes that differ.
async fn authorize(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    // A body announced longer than any call takes is refused before it
    // is waited for.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is longer than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        Some(t)
            if same(
                t.as_bytes(),
                &st.token.read().unwrap_or_else(|p| p.into_inner()),
            ) =>
        {
            next.run(req).await
        }
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into()).into_response(),
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "an Authorization: Bearer header is required".into(),
        )
        .into_response(),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The query string's parameters, each once, all of them among `known`.
fn query(raw: Option<String>, known: &[&str]) -> ApiResult<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::bad("the query string is not UTF-8"))
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if !known.contains(&k.as_str()) {
            return Err(ApiError::bad(format!(
                "unknown query parameter {k:?} (known: {})",
                known.join(", ")
            )));
        }
        if out.iter().any(|(o, _)| *o == k) {
            return Err(ApiError::bad(format!("query parameter {k:?} given twice")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `limit` as given (1 to `MAX_LIMIT`), or the default.
fn limit(q: &[(String, String)]) -> ApiResult<usize> {
    match param(q, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(format!(
                "limit must be a number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// One page of `items` (sorted by `key`): those after `after`, at most
/// `limit`, and the key to ask the next page with.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.is_none_or(|a| key(i) > a))
        .collect();
    let next = (rest.len() > limit).then(|| key(&rest[limit - 1]).to_string());
    rest.truncate(limit);
    (rest, next)
}

/// A JSON body of type `T`, refused with a JSON error when it is not one.
fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> ApiResult<T> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json".into(),
        ));
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is longer than {MAX_BODY_BYTES} bytes"),
        ));
    }
    // serde would take an array for a struct's fields in order: only an
    // object is the body the document describes.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("malformed body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad(format!("malformed body: {e}")))
}

/// Passwords are 1 to `MAX_PASSWORD_BYTES` bytes (the document says so;
/// PRECIS and `registration.min_password_len` judge the rest).
fn password_size(p: &str) -> ApiResult<()> {
    if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad(format!(
            "a password is 1 to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn path_value<T>(p: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad(format!("bad path: {}", e.body_text())))
}

fn user(st: &Inner, raw: &str) -> ApiResult<BareJid> {
    account_jid(raw, &st.domains).map_err(|e| ApiError::bad(e.to_string()))
}

#[derive(Serialize)]
struct UserPage {
    users: Vec<String>,
    next: Option<String>,
}

async fn list_users(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<axum::Json<UserPage>> {
    let st = st.ready()?;
    let q = query(q, &["domain", "after", "limit"])?;
    let limit = limit(&q)?;
    let domain = param(&q, "domain")
        .map(list_domain)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let users = st.core.list_users(domain.as_deref()).await?;
    // `after` is a JID of the last page: compared in normalised form.
    let after = param(&q, "after").map(|a| {
        BareJid::parse(a)
            .map(|j| j.to_string())
            .unwrap_or_else(|_| a.to_string())
    });
    let (users, next) = page(users, |u| u.as_str(), after.as_deref(), limit);
    Ok(axum::Json(UserPage {
        users: users.iter().map(ToString::to_string).collect(),
        next,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    jid: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn add_user(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<impl IntoResponse> {
    query(q, &[])?;
    let st = st.ready()?;
    let req: NewUser = body(&headers, &bytes)?;
    password_size(&req.password)?;
    let jid = user(st, &req.jid)?;
    st.core.add_account(&jid, &req.password).await?;
    tracing::info!(user = %jid, "account created through the admin HTTP API");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "jid": jid.to_string() })),
    ))
}

async fn set_password(
    State(st): State<Arc<ApiState>>,
    jid: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    query(q, &[])?;
    let st = st.ready()?;
    let jid = user(st, &path_value(jid)?)?;
    let req: NewPassword = body(&headers, &bytes)?;
    password_size(&req.password)?;
    st.core.set_password(&jid, &req.password).await?;
    tracing::info!(user = %jid, "password changed through the admin HTTP API");
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(st): State<Arc<ApiState>>,
    jid: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    query(q, &[])?;
    let st = st.ready()?;
    let jid = user(st, &path_value(jid)?)?;
    st.core.delete_account(&jid).await.map_err(core_error)?;
    tracing::info!(user = %jid, "account deleted through the admin HTTP API");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct SessionOut {
    jid: String,
    /// The edge node holding the connection; absent for the node's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    edge: Option<u64>,
    available: bool,
    priority: i32,
}

#[derive(Serialize)]
struct SessionPage {
    sessions: Vec<SessionOut>,
    next: Option<String>,
}

async fn list_sessions(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<axum::Json<SessionPage>> {
    let st = st.ready()?;
    let q = query(q, &["user", "after", "limit"])?;
    let limit = limit(&q)?;
    let who = param(&q, "user").map(|u| user(st, u)).transpose()?;
    let all = st.core.list_sessions(who.as_ref()).await;
    let after = param(&q, "after").map(|a| {
        FullJid::parse(a)
            .map(|j| j.to_string())
            .unwrap_or_else(|_| a.to_string())
    });
    let (list, next) = page(all, |s| s.jid.as_str(), after.as_deref(), limit);
    Ok(axum::Json(SessionPage {
        sessions: list
            .into_iter()
            .map(|s| SessionOut {
                jid: s.jid.to_string(),
                edge: s.edge,
                available: s.available,
                priority: s.priority,
            })
            .collect(),
        next,
    }))
}

async fn kick(
    State(st): State<Arc<ApiState>>,
    jid: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    query(q, &[])?;
    let st = st.ready()?;
    let raw = path_value(jid)?;
    let jid = FullJid::parse(&raw)
        .map_err(|e| ApiError::bad(format!("{raw:?} is not a full JID: {e}")))?;
    user(st, jid.bare_str())?;
    match st.core.kick(&jid, 0).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {jid}"))),
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// The server-to-server streams of this node (`xmppd s2s status`).
#[derive(serde::Serialize)]
struct S2sStreams {
    enabled: bool,
    streams: Vec<crate::s2s::StreamInfo>,
}

async fn list_s2s(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<impl IntoResponse> {
    query(q, &[])?;
    let reply = match st.s2s.get() {
        Some(f) => S2sStreams {
            enabled: true,
            streams: f.status(),
        },
        None => S2sStreams {
            enabled: false,
            streams: Vec::new(),
        },
    };
    Ok(axum::Json(reply))
}

async fn cluster_status(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<impl IntoResponse> {
    use pb::admin_server::Admin;
    query(q, &[])?;
    let st = st.ready()?;
    let s = st
        .admin
        .status(tonic::Request::new(pb::StatusRequest { map_only: false }))
        .await?
        .into_inner();
    let members: Vec<_> = s
        .members
        .iter()
        .map(|m| {
            let role = match pb::Role::try_from(m.role) {
                Ok(pb::Role::Edge) => "edge",
                _ => "core",
            };
            json!({
                "id": m.id,
                "role": role,
                "address": m.address,
                "healthy": m.healthy,
                "sessions": m.sessions,
                "state": if m.state.is_empty() { "member" } else { m.state.as_str() },
            })
        })
        .collect();
    let shards: Vec<_> = s
        .shards
        .iter()
        .map(|p| {
            json!({
                "shard": p.shard,
                "leader": p.leader,
                "replicas": p.replicas,
                "applied": p.applied,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "meta_leader": s.meta_leader,
        "members": members,
        "shards": shards,
    })))
}

/// An error of the core as the API answers it.
fn core_error(e: router::CoreError) -> ApiError {
    match e {
        router::CoreError::Internal(m) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, m),
        router::CoreError::Account(a) => ApiError::from(a),
        other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

#[derive(Serialize)]
struct RoomOut {
    jid: String,
    name: String,
    persistent: bool,
    public: bool,
    members_only: bool,
    password_protected: bool,
    /// Created and not yet configured by its owner.
    locked: bool,
    occupants: u32,
}

#[derive(Serialize)]
struct RoomPage {
    rooms: Vec<RoomOut>,
    next: Option<String>,
}

async fn list_rooms(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<axum::Json<RoomPage>> {
    let st = st.ready()?;
    let q = query(q, &["service", "after", "limit"])?;
    let limit = limit(&q)?;
    let service = services::named_or_default(&st.core, param(&q, "service"), Service::Muc)
        .and_then(|s| services::muc_service(&st.core, &s))
        .map_err(ApiError::bad)?;
    // `after` is the last room JID of the previous page: rooms are in the
    // order of their local parts.
    let after = match param(&q, "after") {
        None => None,
        Some(a) => {
            let jid = BareJid::parse(a)
                .ok()
                .filter(|j| j.domain() == service && j.local().is_some())
                .ok_or_else(|| ApiError::bad(format!("after: {a:?} is not a room of {service}")))?;
            jid.local().map(str::to_string)
        }
    };
    let mut rooms = st
        .core
        .list_rooms(&service, after.as_deref(), limit + 1)
        .await
        .map_err(core_error)?;
    let next = (rooms.len() > limit).then(|| rooms[limit - 1].jid.clone());
    rooms.truncate(limit);
    Ok(axum::Json(RoomPage {
        rooms: rooms
            .into_iter()
            .map(|r| RoomOut {
                jid: r.jid,
                name: r.name,
                persistent: r.persistent,
                public: r.public,
                members_only: r.members_only,
                password_protected: r.password_protected,
                locked: r.locked,
                occupants: r.occupants,
            })
            .collect(),
        next,
    }))
}

/// Destroy a room as its owner would (XEP-0045 §10.9): its occupants get
/// unavailable presence with the reason and alternate venue, if given.
async fn destroy_room(
    State(st): State<Arc<ApiState>>,
    jid: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let st = st.ready()?;
    let q = query(q, &["reason", "alternate"])?;
    let room = services::room_jid(&st.core, &path_value(jid)?).map_err(ApiError::bad)?;
    let reason = services::reason(param(&q, "reason")).map_err(ApiError::bad)?;
    let alternate = services::alternate(param(&q, "alternate")).map_err(ApiError::bad)?;
    match st.core.destroy_room(&room, reason, alternate, 0).await {
        Ok(true) => {
            tracing::info!(room = %room, "room destroyed through the admin HTTP API");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(ApiError(StatusCode::NOT_FOUND, format!("no room {room}"))),
        Err(e) => Err(core_error(e)),
    }
}

/// The PubSub service `service=` names, or the default one.
fn pubsub_service(st: &Inner, q: &[(String, String)]) -> ApiResult<BareJid> {
    services::named_or_default(&st.core, param(q, "service"), Service::Pubsub)
        .and_then(|s| services::pubsub_service(&st.core, &s))
        .map_err(ApiError::bad)
}

#[derive(Serialize)]
struct NodeOut {
    node: String,
    creator: String,
    items: u64,
    /// Milliseconds since the Unix epoch.
    created_ms: u64,
}

#[derive(Serialize)]
struct NodePage {
    nodes: Vec<NodeOut>,
    next: Option<String>,
}

async fn list_nodes(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<axum::Json<NodePage>> {
    let st = st.ready()?;
    let q = query(q, &["service", "after", "limit"])?;
    let limit = limit(&q)?;
    let service = pubsub_service(st, &q)?;
    let after = param(&q, "after")
        .map(services::node_id)
        .transpose()
        .map_err(ApiError::bad)?;
    let mut nodes = st
        .core
        .list_nodes(&service, after, limit + 1)
        .await
        .map_err(core_error)?;
    let next = (nodes.len() > limit).then(|| nodes[limit - 1].node.clone());
    nodes.truncate(limit);
    Ok(axum::Json(NodePage {
        nodes: nodes
            .into_iter()
            .map(|n| NodeOut {
                node: n.node,
                creator: n.creator,
                items: n.items,
                created_ms: n.created_ms,
            })
            .collect(),
        next,
    }))
}

/// Delete a node with everything in it as its owner would (XEP-0060
/// §8.4): its subscribers are told when its configuration says so.
async fn delete_node(
    State(st): State<Arc<ApiState>>,
    node: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let st = st.ready()?;
    let q = query(q, &["service"])?;
    let raw = path_value(node)?;
    let id = services::node_id(&raw).map_err(ApiError::bad)?;
    let service = pubsub_service(st, &q)?;
    match st.core.delete_node(&service, id, 0).await {
        Ok(true) => {
            tracing::info!(service = %service, node = id, "pubsub node deleted through the admin HTTP API");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no node {id:?} at {service}"),
        )),
        Err(e) => Err(core_error(e)),
    }
}

/// Drain and stop, as on SIGTERM: `[shutdown] drain_secs` (at least
/// at once when it is 0). The answer comes before the drain starts.
async fn drain(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> ApiResult<impl IntoResponse> {
    query(q, &[])?;
    let first = !st.drain.send_replace(true);
    if first {
        tracing::info!("drain asked through the admin HTTP API");
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "draining": true })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNode {
    id: u64,
    address: String,
}

fn node_id(id: u64) -> ApiResult<u64> {
    if (1..=65_535).contains(&id) {
        Ok(id)
    } else {
        Err(ApiError::bad("a node id is 1 to 65535"))
    }
}

async fn add_node(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<impl IntoResponse> {
    use pb::admin_server::Admin;
    query(q, &[])?;
    let st = st.ready()?;
    let req: NewNode = body(&headers, &bytes)?;
    let id = node_id(req.id)?;
    if req.address.parse::<std::net::SocketAddr>().is_err() {
        return Err(ApiError::bad(format!(
            "{:?} is not a host:port address",
            req.address
        )));
    }
    let r = st
        .admin
        .add_node(tonic::Request::new(pb::AddNodeRequest {
            id,
            address: req.address,
        }))
        .await?
        .into_inner();
    tracing::info!(node = id, "core node added through the admin HTTP API");
    Ok(axum::Json(json!({ "members": r.members })))
}

async fn remove_node(
    State(st): State<Arc<ApiState>>,
    id: Result<Path<u64>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult<impl IntoResponse> {
    use pb::admin_server::Admin;
    query(q, &[])?;
    let st = st.ready()?;
    let id = node_id(path_value(id)?)?;
    let r = st
        .admin
        .remove_node(tonic::Request::new(pb::RemoveNodeRequest { id }))
        .await?
        .into_inner();
    tracing::info!(
        node = id,
        "core node removal asked through the admin HTTP API"
    );
    Ok(axum::Json(json!({ "members": r.members })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_continue_after_the_last_key() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (p, next) = page(items.clone(), |s| s.as_str(), None, 2);
        assert_eq!(
            (p, next.as_deref()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        let (p, next) = page(items.clone(), |s| s.as_str(), Some("b"), 2);
        assert_eq!(
            (p, next.as_deref()),
            (vec!["c".into(), "d".into()], Some("d"))
        );
        let (p, next) = page(items, |s| s.as_str(), Some("d"), 2);
        assert_eq!((p, next), (vec!["e".to_string()], None));
    }

    #[test]
    fn queries_take_known_parameters_once() {
        let q = query(
            Some("domain=a%2Eexample&limit=5".into()),
            &["domain", "limit"],
        )
        .unwrap_or_else(|_| panic!("valid query"));
        assert_eq!(param(&q, "domain"), Some("a.example"));
        assert!(limit(&q).is_ok_and(|n| n == 5));
        assert!(query(Some("x=1".into()), &["domain"]).is_err());
        assert!(query(Some("limit=1&limit=2".into()), &["limit"]).is_err());
        for bad in ["0", "1001", "-1", "ten"] {
            let q = vec![("limit".to_string(), bad.to_string())];
            assert!(limit(&q).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcdeX"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcde"));
    }

    #[test]
    fn the_openapi_document_is_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/users",
            "/api/v1/users/{jid}",
            "/api/v1/users/{jid}/password",
            "/api/v1/sessions",
            "/api/v1/sessions/{jid}",
            "/api/v1/cluster",
            "/api/v1/cluster/nodes",
            "/api/v1/cluster/nodes/{id}",
            "/api/v1/drain",
            "/api/v1/s2s",
        ] {
            assert!(paths.contains_key(p), "{p} missing from docs/openapi.json");
        }
    }
}
