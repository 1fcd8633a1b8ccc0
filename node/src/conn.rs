//! The connection driver: reads bytes into the stream parser, feeds the
//! parser's events to the stream machine, carries out its actions on the
//! socket and the core, writes what the core delivers, and keeps the
//! timers (handshake deadline, idle ping, ping answer) and the read rate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::error::StreamCondition;
use proto::xml::{StreamEvent, StreamParser};
use router::{Outbound, Received, SessionInbox, SessionSink};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};

use crate::edge::{Edge, Slot};
use crate::io::Io;
use crate::metrics::Listener;
use crate::stream::{Action, Event, Machine};
use crate::throttle::{Budget, StanzaBudget};

mod abuse;
mod sm;

const READ_CHUNK: usize = 16 * 1024;
/// Queued stanzas written together, at most this many bytes (a TLS record
/// holds 16 KiB).
const BATCH_BYTES: usize = 16 * 1024;
/// Turns of the scheduler a delivery waits for more to batch with it.
const MAX_YIELDS: usize = 4;
/// Stanzas queued after which it waits no longer.
const BATCH_STANZAS: usize = 16;
/// Deliveries closer together than this are a steady stream, worth the
/// wait.
const STEADY: Duration = Duration::from_millis(20);

thread_local! {
    /// The one read buffer of each worker thread: an idle connection holds
    /// no buffer of its own (bytes go straight into the stream parser).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

/// Read what is available into the parser, through the thread's buffer.
/// Each poll borrows the buffer only for its own duration, so nothing is
/// held across an await.
async fn read_into(io: &mut Io, parser: &mut StreamParser) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut rb = tokio::io::ReadBuf::new(buf);
            match std::pin::Pin::new(&mut *io).poll_read(cx, &mut rb) {
                std::task::Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    parser.feed(rb.filled());
                    std::task::Poll::Ready(Ok(n))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
    })
    .await
}

struct Conn {
    edge: Arc<Edge>,
    /// The edge's limits when the connection came (a reload changes
    /// those of later connections).
    limits: Arc<crate::edge::EdgeLimits>,
    /// When this stream is closed because the edge drains.
    drain_at: Option<Instant>,
    io: Io,
    parser: StreamParser,
    machine: Machine,
    inbox: Option<SessionInbox>,
    conn_id: u64,
    peer: SocketAddr,
    /// Read-rate bucket (bytes).
    tokens: f64,
    last_refill: Instant,
    last_read: Instant,
    /// When the last stanza was delivered to this session.
    last_delivery: Instant,
    ping_sent: Option<Instant>,
    started: Instant,
    /// Stanzas this session may still send (`limits.stanza_rate_per_sec`).
    stanzas: StanzaBudget,
    /// While the client says it is inactive (XEP-0352): what is held back
    /// for it. None while active (nothing kept).
    held: Option<Box<crate::csi::Held>>,
    /// Stream management (XEP-0198), once the client enabled it.
    sm: Option<Box<sm::Sm>>,
    /// The client closed its stream (`</stream:stream>`): the session
    /// ends for good, even a resumable one.
    peer_closed: bool,
    /// The session has Message Carbons (XEP-0280) on: its messages go
    /// through its own shard first, which copies them to the account's
    /// other sessions (`Trail::via_sender`).
    carbons: bool,
    done: bool,
}

/// Serve one accepted TCP connection to the end.
pub(crate) async fn run(
    edge: Arc<Edge>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    _slot: Slot,
) {
    let _ = tcp.set_nodelay(true);
    let listener = if direct_tls {
        Listener::DirectTls
    } else {
        Listener::StartTls
    };
    let _open = edge.metrics.open(listener);
    let mut c = Conn::new(edge.clone(), tcp, peer);
    // Boxed: the handshake's state is large and needed only once; the task
    // of an idle session keeps only what the main loop needs.
    if direct_tls && !Box::pin(c.accept_direct_tls()).await {
        return;
    }
    c.main_loop().await;
    Box::pin(c.finish()).await;
}
/// Serve one WebSocket (RFC 7395) to the end: the same stream, over its
/// framing.
pub(crate) async fn run_ws(
    edge: Arc<Edge>,
    socket: axum::extract::ws::WebSocket,
    see_other_uri: Option<String>,
    peer: SocketAddr,
    _slot: Slot,
    listener: Listener,
) {
    let _open = edge.metrics.open(listener);
    let mut c = Conn::over(
        edge.clone(),
        Io::Ws(Box::new(crate::ws::WsIo::new(socket, see_other_uri))),
        peer,
    );
    // The transport's security is the WebSocket's (wss) or a proxy's in
    // front of a plain listener: no STARTTLS in this stream (RFC 7395
    // §3.7), and no channel binding.
    c.machine.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    c.main_loop().await;
    Box::pin(c.finish()).await;
}

/// Serve one BOSH session (XEP-0124, XEP-0206) to the end: the same
/// stream, carried by HTTP requests.
pub(crate) async fn run_bosh(
    edge: Arc<Edge>,
    io: crate::bosh::BoshIo,
    peer: SocketAddr,
    _slot: Slot,
) {
    let _open = edge.metrics.open(Listener::Bosh);
    let mut c = Conn::over(edge.clone(), Io::Bosh(Box::new(io)), peer);
    // As for WebSocket: the HTTP layer's TLS (or a proxy's) protects the
    // stream; no STARTTLS inside it (XEP-0206 §2), no channel binding.
    c.machine.on_event(Event::TlsEstablished {
        channel_bindings: Vec::new(),
    });
    c.main_loop().await;
    Box::pin(c.finish()).await;
}

impl Conn {
    fn new(edge: Arc<Edge>, tcp: TcpStream, peer: SocketAddr) -> Conn {
        Conn::over(edge, Io::Plain(tcp), peer)
    }

    fn over(edge: Arc<Edge>, io: Io, peer: SocketAddr) -> Conn {
        let stream_id = format!("{:016x}", rand::random::<u64>());
        let now = Instant::now();
        let limits = edge.limits();
        Conn {
            parser: StreamParser::new(limits.parser),
            tokens: limits.read_burst as f64,
            machine: Machine::new(edge.settings(), stream_id),
            conn_id: edge.next_conn_id(),
            stanzas: StanzaBudget::new(limits.stanza_rate, limits.stanza_burst, now.into_std()),
            limits,
            drain_at: None,
            edge,
            io,
            inbox: None,
            peer,
            last_refill: now,
            last_read: now,
            last_delivery: now,
            ping_sent: None,
            started: now,
            held: None,
            sm: None,
            peer_closed: false,
            carbons: false,
            done: false,
        }
    }

    /// XEP-0368: TLS from the first byte. False if the handshake failed.
    async fn accept_direct_tls(&mut self) -> bool {
        let Some(tls) = self.edge.tls() else {
            return false;
        };
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            return false;
        };
        match timeout(self.limits.handshake_timeout, tls.direct.accept(tcp)).await {
            Ok(Ok(t)) => self.io = Io::Tls(Box::new(t)),
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "tls handshake failed");
                return false;
            }
            Err(_) => return false,
        }
        let channel_bindings = self.io.channel_bindings(tls.end_point.as_deref());
        self.machine
            .on_event(Event::TlsEstablished { channel_bindings });
        true
    }

    /// The life of a stream after any direct-TLS handshake. An idle
    /// session's task sits in the `select!` below, so everything that runs
    /// from one of its branches is boxed: the task then keeps only the
    /// futures it waits on, not the largest state of stanza processing,
    /// which costs one allocation per wake-up instead of about 2 KB per
    /// session for its whole life.
    async fn main_loop(&mut self) {
        let shutdown = self.edge.shutdown.clone();
        let mut drain = self.edge.drain_signal();
        // Draining already (a connection accepted just before it began).
        if drain.borrow_and_update().is_some() {
            self.drain_at = Some(Instant::now());
        }
        // The edge's signals, waited for by one future that lives until
        // one comes, not by two made again at every wake-up.
        let mut signals = Box::pin(next_signal(
            shutdown.clone(),
            drain,
            self.drain_at.is_none(),
        ));
        // One timer for the session's deadlines, armed at or before the
        // next one and moved only when that comes earlier or the timer
        // fires (`on_timer` checks the real deadline): a wake-up for a
        // delivery or a read then costs no timer registration.
        let timer = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(timer);
        while !self.done {
            let deadline = self.next_deadline();
            if deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            let read_at = self.read_allowed_at();
            tokio::select! {
                r = read_into(&mut self.io, &mut self.parser), if read_at.is_none() => match r {
                    // A WebSocket message that breaks the framing (RFC 7395
                    // §3.3.3) or the size limit: said before the close.
                    Err(e) if matches!(self.io, Io::Ws(_)) && matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::FileTooLarge) => {
                        let cond = if e.kind() == std::io::ErrorKind::FileTooLarge {
                            StreamCondition::PolicyViolation
                        } else {
                            StreamCondition::BadFormat
                        };
                        Box::pin(self.fail(cond, Some(e.to_string()))).await;
                    }
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.edge.metrics.bytes_received.inc_by(n as u64);
                        self.charge(n);
                        self.last_read = Instant::now();
                        Box::pin(self.pump()).await;
                        self.parser.shrink();
                    }
                },
                _ = sleep_until(read_at.unwrap_or_else(Instant::now)), if read_at.is_some() => {}
                out = recv(&mut self.inbox) => Box::pin(self.deliver(out)).await,
                _ = &mut timer => {
                    Box::pin(self.on_timer()).await;
                    timer.as_mut().reset(self.next_deadline());
                }
                signal = &mut signals => match signal {
                    Signal::Shutdown => {
                        Box::pin(self.fail(StreamCondition::SystemShutdown, Some("the server is shutting down".into()))).await;
                    }
                    Signal::Drain(window, seen) => {
                        if let Some(w) = window {
                            let spread = w.mul_f64(rand::random::<f64>());
                            self.drain_at = Some(Instant::now() + spread);
                        }
                        // The receiver that saw this change waits for the next.
                        signals.set(next_signal(shutdown.clone(), seen, self.drain_at.is_none()));
                    }
                },
            }
        }
    }

    /// Turn buffered bytes into events and events into actions.
    async fn pump(&mut self) {
        while !self.done {
            let ev = match self.parser.next_event() {
                Ok(Some(StreamEvent::Open(h))) => Event::Header(h),
                Ok(Some(StreamEvent::Element(e))) => {
                    // Every stanza of a bound session counts against its
                    // rate, those the edge answers itself (pings) too.
                    if self.machine.is_bound() && e.ns == proto::ns::CLIENT {
                        match self.stanzas.take(std::time::Instant::now()) {
                            Budget::Take => self.sm_received(),
                            Budget::Refuse => {
                                self.sm_received();
                                if let Ok(st) = proto::stanza::Stanza::from_top(e) {
                                    self.refuse_stanza(&st).await;
                                }
                                continue;
                            }
                            Budget::Close => {
                                // RFC 6120 §4.9.3.14: a client that goes on
                                // violating the local policy loses its stream.
                                tracing::info!(peer = %self.peer, "stream closed: too many stanzas");
                                let text =
                                    "too many stanzas: the rate limit was exceeded for too long";
                                self.fail(StreamCondition::PolicyViolation, Some(text.into()))
                                    .await;
                                break;
                            }
                        }
                    }
                    Event::Element(e)
                }
                Ok(Some(StreamEvent::Close)) => {
                    self.peer_closed = true;
                    Event::PeerClosed
                }
                Ok(None) => break,
                Err(e) => Event::XmlError(e),
            };
            self.feed(ev).await;
        }
    }

    /// Give the machine one event and carry out what follows, including the
    /// events that the actions produce.
    async fn feed(&mut self, ev: Event) {
        let mut events = VecDeque::from([ev]);
        while let Some(ev) = events.pop_front() {
            let actions = self.machine.on_event(ev);
            for a in actions {
                if self.done {
                    return;
                }
                if let Some(next) = self.act(a).await {
                    events.push_back(next);
                }
            }
        }
    }

    async fn act(&mut self, a: Action) -> Option<Event> {
        match a {
            Action::Send(b) => self.write(&b).await,
            Action::ResetParser => self.parser.reset(),
            // Boxed: the handshake state is large and needed only once.
            Action::StartTls => return Box::pin(self.start_tls()).await,
            Action::LookupCredentials(user) => {
                let now = std::time::Instant::now();
                if self.edge.logins.ip_wait(self.peer.ip(), now).is_some() {
                    return Some(Event::AuthThrottled);
                }
                let wait = self.edge.logins.account_wait(user.as_str(), now);
                if !wait.is_zero() {
                    Box::pin(self.pause(wait)).await;
                    if self.done {
                        return None;
                    }
                }
                let creds = match self.edge.core.credentials(&user).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "credential lookup failed");
                        None
                    }
                };
                return Some(Event::Credentials(creds));
            }
            Action::Register {
                iq_type,
                id,
                payload,
                domain,
            } => {
                use crate::core_link::RegisterOutcome;
                let id = proto::element::escape(&id).into_owned();
                let admitted = if iq_type == "set" {
                    match self.admit_registration() {
                        Ok(a) => Some(a),
                        Err(e) => {
                            let reply = format!("<iq type='error' id='{id}'>{}</iq>", e.to_xml());
                            return Some(Event::Registered(Bytes::from(reply)));
                        }
                    }
                } else {
                    None
                };
                let r = self.edge.core.register(&domain, &iq_type, &payload).await;
                if let Some(a) = admitted {
                    if matches!(r, Ok(RegisterOutcome::Done)) {
                        self.edge.metrics.registrations.inc();
                        tracing::info!(ip = %self.peer.ip(), port = self.peer.port(), "in-band registration made");
                    } else {
                        self.edge.registrations.failed(a);
                    }
                }
                let reply = match r {
                    Ok(RegisterOutcome::Form(form)) => {
                        format!("<iq type='result' id='{id}'>{form}</iq>")
                    }
                    Ok(RegisterOutcome::Done) => format!("<iq type='result' id='{id}'/>"),
                    Ok(RegisterOutcome::Error(e)) => {
                        format!("<iq type='error' id='{id}'>{e}</iq>")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "registration failed at the core");
                        let e = proto::error::StanzaError::new(
                            proto::error::StanzaCondition::InternalServerError,
                        );
                        format!("<iq type='error' id='{id}'>{}</iq>", e.to_xml())
                    }
                };
                return Some(Event::Registered(Bytes::from(reply)));
            }
            Action::AuthOutcome(o) => Box::pin(self.auth_outcome(o)).await,
            Action::Bind(jid) => {
                let (sink, inbox) = SessionSink::channel(self.conn_id, self.limits.outbound_queue);
                let r = self.edge.core.bind(jid, sink).await;
                if r.is_ok() {
                    self.inbox = Some(inbox);
                }
                return Some(Event::Bound(r));
            }
            Action::Route(mut st) => {
                self.edge.metrics.received(st.kind);
                st.trail.received_us = proto::trail::now_us();
                // A sampled trace starts here; its span ends once the
                // stanza is handed to the core.
                let span = router::trace::root("stanza receive", || {
                    vec![
                        router::trace::Attr::new("xmpp.stanza.kind", st.kind.name()),
                        router::trace::Attr::new("xmpp.stanza.type", stanza_type(&st)),
                    ]
                });
                if let Some(sp) = &span {
                    st.trail = sp.continue_trail(&st.trail);
                }
                match st.kind {
                    proto::stanza::Kind::Message => st.trail.via_sender = self.carbons,
                    proto::stanza::Kind::Iq => {
                        if let Some(on) = carbons_request(&st) {
                            self.carbons = on;
                        }
                        // Behind the session's messages (RFC 6120 §10.1).
                        st.trail.via_sender = self.carbons;
                    }
                    proto::stanza::Kind::Presence => {}
                }
                if self.edge.core.route(st).await.is_err() {
                    self.fail(StreamCondition::SystemShutdown, None).await;
                }
                drop(span);
            }
            Action::Fail(cond, text) => {
                self.write(&cond.to_bytes(text.as_deref())).await;
                self.done = true;
            }
            Action::Close => {
                self.write(b"</stream:stream>").await;
                self.done = true;
            }
            Action::ClientState(true) => {
                Box::pin(self.flush_held()).await;
                self.held = None;
            }
            Action::ClientState(false) => {
                self.held.get_or_insert_default();
            }
            Action::Reply(b) => self.reply(b).await,
            Action::SmEnable { resume, max } => return Box::pin(self.sm_enable(resume, max)).await,
            Action::SmResume { previd, h } => return Box::pin(self.sm_resume(previd, h)).await,
            Action::SmRequested => self.sm_answer().await,
            Action::SmAcked(h) => self.sm_acked(h).await,
        }
        None
    }

    /// Write what was held for the inactive client, in order, at once.
    async fn flush_held(&mut self) {
        let Some(h) = self.held.as_mut() else { return };
        if h.is_empty() {
            return;
        }
        let n = h.len() as u64;
        self.edge.metrics.csi_superseded.inc_by(h.superseded);
        h.superseded = 0;
        let buf = h.take();
        self.write(&buf).await;
        if !self.done {
            self.edge.metrics.stanzas_sent.inc_by(n);
            if self.sm_sent(n as usize) {
                self.write(sm::REQUEST).await;
            }
        }
    }

    /// [`Conn::deliver`] for an inactive client (XEP-0352): what can wait
    /// is held; something urgent, a close, or too much held writes all
    /// that is held, in order, in one write.
    async fn deliver_inactive(&mut self, first: Bytes, to_me: bool) {
        let (max, chat_states) = (self.limits.csi_max_held, self.limits.csi_chat_states_urgent);
        let me = self.machine.jid().map_or("", |j| j.as_str());
        let me = proto::element::escape(me).into_owned();
        let addressed = |raw: Bytes, to_me: bool| -> Bytes {
            if !to_me {
                return raw;
            }
            let mut v = Vec::with_capacity(raw.len() + me.len() + 6);
            put(&mut v, &raw, Some(&me));
            Bytes::from(v)
        };
        let mut items = vec![addressed(first, to_me)];
        let mut then = None;
        if let Some(rx) = self.inbox.as_mut() {
            while items.len() < BATCH_STANZAS * 16 {
                match rx.try_recv() {
                    Some((Outbound::Stanza(b), _)) => items.push(addressed(b, false)),
                    Some((Outbound::Addressed(b), _)) => items.push(addressed(b, true)),
                    Some((close, _)) => {
                        then = Some(close);
                        break;
                    }
                    None => break,
                }
            }
        }
        let Some(h) = self.held.as_mut() else { return };
        let mut urgent = false;
        let mut waiting = 0;
        // With stream management counting, a presence is never dropped
        // for a newer one: the core keeps every stanza sent until the
        // client counts it, so each must reach the client.
        let keep_all = self.sm.as_ref().is_some_and(|s| s.counting);
        for b in items {
            let class = match crate::csi::classify(&b, chat_states) {
                crate::csi::Class::Urgent => crate::csi::Class::Urgent,
                _ if keep_all => crate::csi::Class::Hold,
                c => c,
            };
            match class {
                // Held like the rest, so that it goes after them.
                crate::csi::Class::Urgent => {
                    urgent = true;
                    h.push(crate::csi::Class::Hold, b);
                }
                c => {
                    waiting += 1;
                    h.push(c, b);
                }
            }
        }
        self.edge.metrics.csi_held.inc_by(waiting);
        if urgent || then.is_some() || h.len() >= max {
            Box::pin(self.flush_held()).await;
        }
        match then {
            Some(Outbound::Close(cond, text)) => self.fail(cond, text).await,
            Some(Outbound::SmStart) => self.sm_start().await,
            _ => {}
        }
    }

    async fn start_tls(&mut self) -> Option<Event> {
        let _ = self.io.flush().await;
        let Some(tls) = self.edge.tls() else {
            self.done = true;
            return None;
        };
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            self.done = true;
            return None;
        };
        match timeout(self.limits.handshake_timeout, tls.starttls.accept(tcp)).await {
            Ok(Ok(t)) => {
                self.io = Io::Tls(Box::new(t));
                self.parser.discard_buffer();
                self.parser.reset();
                Some(Event::TlsEstablished {
                    channel_bindings: self.io.channel_bindings(tls.end_point.as_deref()),
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "starttls handshake failed");
                self.done = true;
                None
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }

    /// Write what the core delivered, together with whatever else is
    /// already queued (up to `BATCH_BYTES`): one TLS record and one system
    /// call for a burst rather than one per stanza.
    async fn deliver(&mut self, first: Received) {
        // The first stanza, and whether the session's JID goes into it.
        let (b, to_me, first) = match first {
            Received::Item(Outbound::Stanza(b), t) => (b, false, t),
            Received::Item(Outbound::Addressed(b), t) => (b, true, t),
            Received::Item(Outbound::Close(cond, text), _) => {
                return self.fail(cond, text).await;
            }
            Received::Item(Outbound::SmStart, _) => return self.sm_start().await,
            Received::Overflowed => {
                self.edge.metrics.slow_clients.inc();
                let text = "too many stanzas queued: the client reads too slowly";
                return self
                    .fail(StreamCondition::PolicyViolation, Some(text.into()))
                    .await;
            }
            Received::Closed => {
                return self.fail(StreamCondition::InternalServerError, None).await;
            }
        };
        if self.held.is_some() {
            return Box::pin(self.deliver_inactive(b, to_me)).await;
        }
        self.wait_for_more().await;
        // The routing latency of each stanza is observed as it is
        // written (one clock reading for the batch), and sampled traces
        // get a span for the write.
        let now = proto::trail::now_us();
        let mut spans = Vec::new();
        Self::note_in(&self.edge, now, &mut spans, &first);
        let mut stanzas = 1;
        // Stanzas addressed here are written with their 'to' straight
        // into the batch, not copied once to address them and again to
        // batch them.
        let me = self.machine.jid().map_or("", |j| j.as_str());
        let me = proto::element::escape(me);
        let mut batch: Option<Vec<u8>> = None;
        let mut then = None;
        if let Some(rx) = self.inbox.as_mut() {
            while batch.as_ref().map_or(b.len(), Vec::len) < BATCH_BYTES {
                let (more, addr) = match rx.try_recv() {
                    Some((Outbound::Stanza(more), t)) => {
                        Self::note_in(&self.edge, now, &mut spans, &t);
                        (more, false)
                    }
                    Some((Outbound::Addressed(more), t)) => {
                        Self::note_in(&self.edge, now, &mut spans, &t);
                        (more, true)
                    }
                    Some((close, _)) => {
                        then = Some(close);
                        break;
                    }
                    None => break,
                };
                let buf = batch.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(2 * (b.len() + more.len()) + 2 * me.len());
                    put(&mut v, &b, to_me.then_some(me.as_ref()));
                    v
                });
                put(buf, &more, addr.then_some(me.as_ref()));
                stanzas += 1;
            }
        }
        if batch.is_none() && to_me {
            let mut v = Vec::with_capacity(b.len() + me.len() + 6);
            put(&mut v, &b, Some(me.as_ref()));
            batch = Some(v);
        }
        drop(me);
        // XEP-0198: an acknowledgement asked for in the same write, every
        // `sm.request_every` stanzas.
        if self.sm_sent(stanzas as usize) {
            let buf = batch.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(b.len() + sm::REQUEST.len());
                v.extend_from_slice(&b);
                v
            });
            buf.extend_from_slice(sm::REQUEST);
        }
        match &batch {
            Some(buf) => self.write(buf).await,
            None => self.write(&b).await,
        }
        // Counted once written: a write that failed or timed out ended the
        // session.
        if !self.done {
            self.edge.metrics.stanzas_sent.inc_by(stanzas);
        } else {
            for sp in &mut spans {
                sp.error("the write to the client failed");
            }
        }
        drop(spans);
        match then {
            Some(Outbound::Close(cond, text)) => self.fail(cond, text).await,
            Some(Outbound::SmStart) => self.sm_start().await,
            _ => {}
        }
    }

    /// A stanza is about to be written at `now` (µs since the epoch):
    /// observe the time since its cause was read, and start a span for
    /// its write if its trace is sampled.
    fn note_in(
        edge: &Edge,
        now: u64,
        spans: &mut Vec<router::trace::Span>,
        t: &proto::trail::Trail,
    ) {
        if t.received_us != 0 {
            let us = now.saturating_sub(t.received_us);
            edge.metrics
                .routing_latency
                .observe(us as f64 / 1_000_000.0);
        }
        if let Some(sp) = router::trace::child(
            t,
            "stanza write",
            router::trace::Kind::Internal,
            None,
            Vec::new,
        ) {
            spans.push(sp);
        }
    }

    /// A session that is being delivered to steadily lets the other ready
    /// tasks run first, those fanning out included, for as long as more
    /// stanzas for it keep arriving (a few turns at most): under load they
    /// then go out in the same record and system call. A stanza after a
    /// quiet spell (one item to 100,000 subscribers once a second) goes out
    /// at once, as there is nothing to batch it with.
    async fn wait_for_more(&mut self) {
        let now = Instant::now();
        let steady = now.duration_since(self.last_delivery) < STEADY;
        self.last_delivery = now;
        if !steady {
            return;
        }
        let queued = |c: &Conn| c.inbox.as_ref().map_or(0, SessionInbox::queued);
        let mut before = queued(self);
        for _ in 0..MAX_YIELDS {
            tokio::task::yield_now().await;
            let after = queued(self);
            if after == before || after >= BATCH_STANZAS {
                break;
            }
            before = after;
        }
    }

    async fn write(&mut self, b: &[u8]) {
        if self.done {
            return;
        }
        let w = async {
            self.io.write_all(b).await?;
            self.io.flush().await
        };
        match timeout(self.limits.write_timeout, w).await {
            Ok(Ok(())) => {
                self.edge.metrics.bytes_sent.inc_by(b.len() as u64);
                self.edge.metrics.writes.inc();
            }
            Ok(Err(_)) => self.done = true,
            Err(_) => {
                self.edge.metrics.slow_clients.inc();
                self.done = true;
            }
        }
    }

    async fn fail(&mut self, cond: StreamCondition, text: Option<String>) {
        let mut out = Vec::new();
        self.machine.fail(cond, text, &mut out);
        for a in out {
            match a {
                Action::Send(b) => self.write(&b).await,
                Action::Fail(cond, text) => self.write(&cond.to_bytes(text.as_deref())).await,
                _ => {}
            }
        }
        self.done = true;
    }

    /// The edge drains: send the client elsewhere (RFC 6120 §4.9.3.19
    /// `<see-other-host/>`) or tell it the server goes down, which clients
    /// answer by reconnecting (to another edge behind the same name).
    async fn leave_drained(&mut self) {
        // A WebSocket names the other endpoint on its <close/> (RFC 7395
        // §3.6.1), by URI.
        if let Io::Ws(w) = &self.io
            && let Some(uri) = w.see_other_uri()
        {
            let close = format!(
                "<close xmlns='{}' see-other-uri='{}'/>",
                crate::ws::NS_FRAMING,
                proto::element::escape(uri)
            );
            self.write(close.as_bytes()).await;
            self.done = true;
            return;
        }
        let redirect = self
            .edge
            .drain_signal()
            .borrow()
            .as_ref()
            .and_then(|d| d.redirect.clone());
        let text = "this server is draining: connect again";
        let Some(host) = redirect else {
            return self
                .fail(StreamCondition::SystemShutdown, Some(text.into()))
                .await;
        };
        let mut out = Vec::new();
        self.machine
            .fail(StreamCondition::SystemShutdown, None, &mut out);
        for a in out {
            match a {
                Action::Send(b) => self.write(&b).await,
                Action::Fail(..) => {
                    self.write(&proto::error::see_other_host_bytes(&host, Some(text)))
                        .await
                }
                _ => {}
            }
        }
        self.done = true;
    }

    fn next_deadline(&self) -> Instant {
        let l = &self.limits;
        let due = if !self.machine.is_bound() {
            self.started + l.handshake_timeout
        } else {
            match self.ping_sent {
                Some(t) => t + l.ping_timeout,
                None => self.last_read + l.idle_timeout,
            }
        };
        match self.drain_at {
            Some(d) if d < due => d,
            _ => due,
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if now < self.next_deadline() {
            return;
        }
        if self.drain_at.is_some_and(|d| now >= d) {
            return self.leave_drained().await;
        }
        if !self.machine.is_bound() {
            return self
                .fail(
                    StreamCondition::ConnectionTimeout,
                    Some("no session was established in time".into()),
                )
                .await;
        }
        match self.ping_sent {
            // The client answered something since the ping: it is alive.
            Some(t) if self.last_read > t => {
                self.ping_sent = None;
                self.machine.ping_id = None;
            }
            Some(_) => {
                self.fail(
                    StreamCondition::ConnectionTimeout,
                    Some("no answer to ping".into()),
                )
                .await
            }
            None if self.sm.as_ref().is_some_and(|s| s.counting) => {
                // XEP-0198: with stream management, an ack request is the
                // ping (any answer shows the client is there), and it
                // adds nothing to the counts.
                self.ping_sent = Some(now);
                self.write(sm::REQUEST).await;
            }
            None => {
                // XEP-0199 §4.2: the server pings a silent client.
                let id = format!("ping-{:x}", rand::random::<u32>());
                let to = self
                    .machine
                    .jid()
                    .map(|j| j.to_string())
                    .unwrap_or_default();
                let ping = format!(
                    "<iq type='get' id='{id}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                    proto::element::escape(self.machine.domain()),
                    proto::element::escape(&to)
                );
                self.machine.ping_id = Some(id);
                self.ping_sent = Some(now);
                self.write(ping.as_bytes()).await;
            }
        }
    }

    /// When reading may resume, if the rate limit says wait.
    fn read_allowed_at(&mut self) -> Option<Instant> {
        let rate = self.limits.read_rate as f64;
        if rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.limits.read_burst as f64);
        if self.tokens >= 0.0 {
            return None;
        }
        Some(now + Duration::from_secs_f64(-self.tokens / rate))
    }

    fn charge(&mut self, n: usize) {
        if self.limits.read_rate > 0 {
            self.tokens -= n as f64;
        }
    }

    async fn finish(&mut self) {
        if let (true, Some(jid)) = (self.inbox.is_some(), self.machine.jid().cloned()) {
            // XEP-0198: the client's last acknowledgement (often sent
            // right before its </stream:stream>) is in before the end.
            if let Some(sm) = self.sm.as_ref().filter(|s| s.counting) {
                let (h, handled) = (sm.acked, sm.handled);
                self.edge
                    .core
                    .sm_ack_now(jid.clone(), self.conn_id, h, handled)
                    .await;
            }
            match self.sm.as_ref() {
                // XEP-0198 §5: a connection lost (not closed by the client)
                // leaves a resumable session waiting for its client.
                Some(sm) if sm.resume && !self.peer_closed => {
                    let handled = sm.handled;
                    self.edge.core.sm_detach(jid, self.conn_id, handled).await;
                }
                _ => {
                    self.edge.core.unbind(jid.clone(), self.conn_id).await;
                    Box::pin(self.hand_back(&jid)).await;
                }
            }
        }
        // A lingering close: after our side is shut, read and drop what the
        // client still sends until it closes too. Closing a socket with
        // unread data in it sends a reset, and a reset can destroy the
        // stream error the client has not read yet (a flooding client's
        // policy-violation, say).
        let io = &mut self.io;
        let _ = timeout(Duration::from_secs(2), async {
            io.shutdown().await?;
            let mut sink = [0u8; 4096];
            while io.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
    }
}

impl Conn {
    /// The session ended without stream management: the messages still
    /// queued or held for it go back to the core for the account's other
    /// resources or offline storage (`undelivered`), not to nobody.
    async fn hand_back(&mut self, jid: &proto::FullJid) {
        let mut left: Vec<Bytes> = Vec::new();
        if let Some(h) = self.held.as_mut() {
            left.extend(h.take_each());
        }
        if let Some(rx) = self.inbox.as_mut() {
            while let Some((out, _)) = rx.try_recv() {
                if let Outbound::Stanza(b) | Outbound::Addressed(b) = out {
                    left.push(b);
                }
            }
        }
        for b in left {
            if let Some(st) = crate::undelivered::returned(&b, Some(jid)) {
                self.edge.metrics.handed_back.inc();
                let _ = self.edge.core.route(st).await;
            }
        }
    }
}

/// A stanza written without 'to' for many sessions, addressed to this one.
/// The stanza's type for a span: one of the values RFC 6120 and RFC
/// 6121 define (the edge checked iq and presence types; a message's
/// unknown type is named "other", not echoed).
fn stanza_type(st: &proto::stanza::Stanza) -> &'static str {
    use proto::stanza::Kind;
    match st.stype() {
        // What no type means (RFC 6120 §8.2.3, RFC 6121 §4.7.1, §5.2.2).
        "" => match st.kind {
            Kind::Message => "normal",
            Kind::Presence => "available",
            Kind::Iq => "none",
        },
        "get" => "get",
        "set" => "set",
        "result" => "result",
        "error" => "error",
        "chat" => "chat",
        "groupchat" => "groupchat",
        "headline" => "headline",
        "normal" => "normal",
        "unavailable" => "unavailable",
        "subscribe" => "subscribe",
        "subscribed" => "subscribed",
        "unsubscribe" => "unsubscribe",
        "unsubscribed" => "unsubscribed",
        "probe" => "probe",
        _ => "other",
    }
}

/// What the edge tells its connections.
enum Signal {
    Shutdown,
    /// The drain signal changed: the window to close within, if
    /// draining; and the receiver that saw the change.
    Drain(
        Option<Duration>,
        tokio::sync::watch::Receiver<Option<Arc<crate::edge::Drain>>>,
    ),
}

/// The next signal: shutdown, or (while `drain_too`) a change of the
/// drain signal.
async fn next_signal(
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut drain: tokio::sync::watch::Receiver<Option<Arc<crate::edge::Drain>>>,
    drain_too: bool,
) -> Signal {
    tokio::select! {
        _ = shutdown.changed() => Signal::Shutdown,
        r = drain.changed(), if drain_too => match r {
            Ok(()) => {
                let window = drain.borrow_and_update().as_ref().map(|d| d.window);
                Signal::Drain(window, drain)
            }
            // The edge is going: its shutdown comes.
            Err(_) => {
                let _ = shutdown.changed().await;
                Signal::Shutdown
            }
        },
    }
}

/// Append `raw` to `out`, with `to` (escaped already) on its start tag
/// when given (a stanza of a fan-out, written without one).
fn put(out: &mut Vec<u8>, raw: &[u8], to: Option<&str>) {
    match to {
        Some(to) => proto::stanza::write_with_to(out, raw, to),
        None => out.extend_from_slice(raw),
    }
}

async fn recv(inbox: &mut Option<SessionInbox>) -> Received {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether `iq` turns Message Carbons (XEP-0280) on or off for its
/// session: an IQ set to the server or the account with `<enable/>` or
/// `<disable/>` (the core answers it; the connection only routes by it).
fn carbons_request(iq: &proto::stanza::Stanza) -> Option<bool> {
    const NS: &str = router::modules::carbons::NS;
    if iq.stype() != "set" || crate::scan::find(&iq.raw, NS.as_bytes()).is_none() {
        return None;
    }
    // Handled by the server only without 'to', or to the account's bare
    // JID or its domain (anything else is routed on to its addressee).
    let from = iq.from.as_ref()?;
    if let Some(t) = &iq.to {
        let bare = t.resource().is_none();
        let own_bare = bare && t.bare_str() == from.bare_str();
        let own_domain = bare && t.local().is_none() && t.domain() == from.domain();
        if !own_bare && !own_domain {
            return None;
        }
    }
    let el = iq.element(proto::ns::CLIENT).ok()?;
    let p = el.elements().next()?;
    match (p.ns == NS, p.name.as_str()) {
        (true, "enable") => Some(true),
        (true, "disable") => Some(false),
        _ => None,
    }
}
