//! Test harness: a server on ports chosen by the OS with a temporary data
//! directory, and a raw XMPP client over real sockets (STARTTLS or direct
//! TLS, SCRAM or PLAIN) that reads whole stanzas with the server's own
//! stream parser.
#![allow(dead_code)]

pub mod caps;
pub mod cores;
pub mod procs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use node::config::Config;
use node::server::Server;
use proto::Element;
use proto::xml::{Limits, StreamEvent, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A test configuration: loopback, port 0, data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.listeners.c2s = Some("127.0.0.1:0".into());
    cfg.listeners.c2s_direct_tls = Some("127.0.0.1:0".into());
    cfg.listeners.http = Some("127.0.0.1:0".into());
    cfg.registration.min_password_len = 4;
    cfg
}

pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        let server = Server::start(cfg).await.expect("server starts");
        let addr = server.c2s_addr.expect("c2s");
        let tls_addr = server.direct_tls_addr.expect("direct tls");
        TestServer {
            server: Some(server),
            addr,
            tls_addr,
            dir,
        }
    }

    pub fn add_user(&self, jid: &str, password: &str) {
        let s = self.server.as_ref().expect("running");
        s.core
            .as_ref()
            .expect("a core in this process")
            .accounts()
            .add(&proto::BareJid::parse(jid).expect("jid"), password)
            .expect("add user");
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }

    /// Stop, then start a new server (default configuration, new ports)
    /// on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let server = Server::start(test_config(self.dir.path()))
            .await
            .expect("server starts again");
        self.addr = server.c2s_addr.expect("c2s");
        self.tls_addr = server.direct_tls_addr.expect("direct tls");
        self.server = Some(server);
    }
}

/// The client's transport.
pub enum CIo {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    None,
}

impl CIo {
    pub async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            CIo::Tcp(s) => s.write_all(b).await,
            CIo::Tls(s) => s.write_all(b).await,
            CIo::None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    pub async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            CIo::Tcp(s) => s.flush().await,
            CIo::Tls(s) => s.flush().await,
            CIo::None => Ok(()),
        }
    }
    pub async fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            CIo::Tcp(s) => s.read(b).await,
            CIo::Tls(s) => s.read(b).await,
            CIo::None => Ok(0),
        }
    }
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            CIo::Tcp(s) => s.shutdown().await,
            CIo::Tls(s) => s.shutdown().await,
            CIo::None => Ok(()),
        }
    }
}

pub struct Client {
    pub io: CIo,
    parser: StreamParser,
    pub jid: String,
    pub cb: Option<Vec<u8>>,
    /// Send SCRAM's 'y' flag with a plain mechanism (a client that could
    /// bind but saw no -PLUS offer).
    pub y_flag: bool,
    pub features: Option<Element>,
    /// The id of the server's last stream header.
    pub stream_id: String,
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(node::tls::client_config_insecure())
}

fn client_cb(c: &tokio_rustls::client::TlsStream<TcpStream>) -> Option<Vec<u8>> {
    node::channel_binding::exporter_client(c.get_ref().1)
}

pub fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

impl Client {
    /// A plain TCP connection, nothing sent yet.
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Client {
            io: CIo::Tcp(tcp),
            parser: StreamParser::new(Limits::default()),
            jid: String::new(),
            cb: None,
            y_flag: false,
            features: None,
            stream_id: String::new(),
        }
    }

    /// [`Client::connect`] from the local address `from` (e.g. 127.0.0.2,
    /// another client address on loopback).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::new(from, 0)).expect("bind");
        let tcp = sock.connect(addr).await.expect("connect");
        Client {
            io: CIo::Tcp(tcp),
            parser: StreamParser::new(Limits::default()),
            jid: String::new(),
            cb: None,
            y_flag: false,
            features: None,
            stream_id: String::new(),
        }
    }

    /// Direct TLS (XEP-0368), nothing sent yet.
    pub async fn connect_direct_tls(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tls_connector().connect(name, tcp).await.expect("tls");
        let cb = client_cb(&tls);
        Client {
            io: CIo::Tls(Box::new(tls)),
            parser: StreamParser::new(Limits::default()),
            jid: String::new(),
            cb,
            y_flag: false,
            features: None,
            stream_id: String::new(),
        }
    }

    pub async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.io.write_all(b).await?;
        self.io.flush().await
    }

    /// The next stream event, or an error at timeout / EOF.
    pub async fn next(&mut self) -> anyhow::Result<StreamEvent> {
        let mut buf = [0u8; 8192];
        loop {
            match self.parser.next_event() {
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => bail!("client parser: {e}"),
            }
            let n = tokio::time::timeout(TIMEOUT, self.io.read(&mut buf))
                .await
                .context("read timed out")??;
            if n == 0 {
                bail!("connection closed");
            }
            self.parser.feed(&buf[..n]);
        }
    }

    /// The next top-level element, parsed.
    pub async fn next_element(&mut self) -> anyhow::Result<Element> {
        loop {
            match self.next().await? {
                StreamEvent::Element(e) => {
                    return Element::parse(
                        &e.raw,
                        proto::ns::CLIENT,
                        self.parser.stream_prefixes(),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"));
                }
                StreamEvent::Open(_) => continue,
                StreamEvent::Close => bail!("stream closed"),
            }
        }
    }

    /// Skip elements until one matches.
    pub async fn expect(&mut self, pred: impl Fn(&Element) -> bool) -> anyhow::Result<Element> {
        loop {
            let e = self.next_element().await?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// Read until the stream error; return its condition.
    pub async fn stream_error(&mut self) -> anyhow::Result<String> {
        loop {
            let e = self.next_element().await?;
            if e.name == "error" && e.ns == proto::ns::STREAM {
                let cond = e
                    .elements()
                    .find(|c| c.ns == proto::ns::STREAMS_ERR && c.name != "text");
                return Ok(cond.map(|c| c.name.clone()).unwrap_or_default());
            }
        }
    }

    /// Expect a new stream from the server (after a restart the client
    /// makes by hand).
    pub fn restart(&mut self) {
        self.parser.reset();
    }

    /// Open a stream and read the features.
    pub async fn open(&mut self, domain: &str) -> anyhow::Result<Element> {
        self.parser.reset();
        self.send(&header(domain)).await;
        match self.next().await? {
            StreamEvent::Open(h) => self.stream_id = h.id.unwrap_or_default(),
            other => bail!("expected a stream header, got {other:?}"),
        }
        let f = self.next_element().await?;
        if f.name != "features" {
            bail!("expected features, got {}", f.name);
        }
        self.features = Some(f.clone());
        Ok(f)
    }

    pub async fn starttls(&mut self) -> anyhow::Result<()> {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.starttls_after_request().await
    }

    /// The rest of STARTTLS once `<starttls/>` was sent: read `<proceed/>`
    /// and start TLS.
    pub async fn starttls_after_request(&mut self) -> anyhow::Result<()> {
        let e = self.next_element().await?;
        if e.name != "proceed" {
            bail!("starttls refused: {}", e.name);
        }
        let CIo::Tcp(tcp) = std::mem::replace(&mut self.io, CIo::None) else {
            bail!("not plain TCP")
        };
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tls_connector().connect(name, tcp).await?;
        self.cb = client_cb(&tls);
        self.io = CIo::Tls(Box::new(tls));
        self.parser = StreamParser::new(Limits::default());
        Ok(())
    }

    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.child("mechanisms", proto::ns::SASL))
            .map(|m| m.elements().map(Element::text).collect())
            .unwrap_or_default()
    }

    /// SASL with the named mechanism; Ok(()) on success.
    pub async fn sasl(&mut self, mech: &str, user: &str, password: &str) -> anyhow::Result<()> {
        use proto::sasl::Mechanism;
        use proto::sasl::client::ScramClient;
        let m = Mechanism::parse(mech).context("mechanism")?;
        if m == Mechanism::Plain {
            let msg = format!("\0{user}\0{password}");
            self.send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                B64.encode(msg)
            ))
            .await;
            let e = self.next_element().await?;
            return if e.name == "success" {
                Ok(())
            } else {
                bail!(
                    "sasl {}: {:?}",
                    e.name,
                    e.first_element().map(|c| c.name.clone())
                )
            };
        }
        let cb = if m.is_plus() || self.y_flag {
            self.cb.clone()
        } else {
            None
        };
        let mut c = ScramClient::new(m, user, password, cb)?;
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(c.first())
        ))
        .await;
        let e = self.next_element().await?;
        if e.name != "challenge" {
            bail!(
                "sasl {}: {:?}",
                e.name,
                e.first_element().map(|c| c.name.clone())
            );
        }
        let server_first = B64.decode(e.text().trim())?;
        let final_msg = c.finish(&server_first)?;
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(final_msg)
        ))
        .await;
        let e = self.next_element().await?;
        if e.name != "success" {
            bail!(
                "sasl {}: {:?}",
                e.name,
                e.first_element().map(|c| c.name.clone())
            );
        }
        c.verify(&B64.decode(e.text().trim())?)?;
        Ok(())
    }

    pub async fn bind(&mut self, resource: Option<&str>) -> anyhow::Result<String> {
        let r = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{r}</bind></iq>")).await;
        let e = self
            .expect(|e| e.name == "iq" && e.attr("id") == Some("bind1"))
            .await?;
        let jid = e
            .child("bind", proto::ns::BIND)
            .and_then(|b| b.child("jid", proto::ns::BIND))
            .map(Element::text)
            .with_context(|| format!("bind failed: {}", e.to_xml(proto::ns::CLIENT)))?;
        self.jid = jid.clone();
        Ok(jid)
    }

    /// STARTTLS, SCRAM-SHA-256, bind: a ready session.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Client> {
        let (local, domain) = user.split_once('@').context("jid")?;
        let mut c = Client::connect(addr).await;
        c.open(domain).await?;
        c.starttls().await?;
        c.open(domain).await?;
        c.sasl("SCRAM-SHA-256", local, password).await?;
        c.open(domain).await?;
        c.bind(Some(resource)).await?;
        Ok(c)
    }

    /// Login, roster get and initial presence.
    pub async fn online(
        addr: SocketAddr,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Client> {
        let mut c = Client::login(addr, user, password, resource).await?;
        c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        c.expect(|e| e.attr("id") == Some("r1")).await?;
        c.send("<presence/>").await;
        Ok(c)
    }
}

/// Open an external component's stream (XEP-0114) for `domain`, in
/// namespace `ns`; the client and the server's stream id.
pub async fn component_open(
    addr: SocketAddr,
    domain: &str,
    ns: &str,
) -> anyhow::Result<(Client, String)> {
    let mut c = Client::connect(addr).await;
    c.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ))
    .await;
    let id = match c.next().await? {
        StreamEvent::Open(h) => h.id.unwrap_or_default(),
        other => bail!("expected a header, got {other:?}"),
    };
    Ok((c, id))
}

/// The component's `<handshake/>` for stream `id` and `secret`.
pub fn component_handshake(id: &str, secret: &str) -> String {
    use sha1::{Digest, Sha1};
    let hex: String = Sha1::digest(format!("{id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<handshake>{hex}</handshake>")
}

/// A component's stream for `domain`, authenticated.
pub async fn component(addr: SocketAddr, domain: &str, secret: &str) -> anyhow::Result<Client> {
    let (mut c, id) = component_open(addr, domain, "jabber:component:accept").await?;
    c.send(&component_handshake(&id, secret)).await;
    let e = c.next_element().await?;
    anyhow::ensure!(e.name == "handshake", "got {}", e.name);
    Ok(c)
}
