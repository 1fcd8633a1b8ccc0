//! The generated cluster services over a real HTTP/2 connection on
//! loopback: envelopes stream up and come back as deliveries with their
//! bytes intact, and a redirect to the leader crosses the wire as a status
//! that the client turns back into `ClusterError::NotLeader`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use proto::cluster::ClusterError;
use proto::cluster::envelope::{
    DeliveryAction, from_delivery, from_envelope, to_delivery, to_envelope,
};
use proto::cluster::pb::core_client::CoreClient;
use proto::cluster::pb::core_server::{Core, CoreServer};
use proto::cluster::pb::{self, EnvelopeBatch};
use proto::stanza::Stanza;
use tonic::{Request, Response, Status, Streaming};

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A core that delivers every envelope back to session `shard` on the
/// sending edge, and is never the leader for binds.
struct Echo;

#[tonic::async_trait]
impl Core for Echo {
    type ForwardStream = Out<pb::DeliveryBatch>;

    async fn forward(
        &self,
        req: Request<Streaming<EnvelopeBatch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let out = req.into_inner().map(|batch| {
            let mut deliveries = Vec::new();
            for e in batch?.envelopes {
                let (shard, st) = from_envelope(e)
                    .map_err(|e| Status::from(ClusterError::BadRequest(e.to_string())))?;
                deliveries.push(to_delivery(
                    vec![u64::from(shard)],
                    DeliveryAction::Stanza(st.raw),
                    &st.trail,
                ));
            }
            Ok(pb::DeliveryBatch { deliveries })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn bind(&self, _: Request<pb::BindRequest>) -> Result<Response<pb::BindReply>, Status> {
        Err(ClusterError::NotLeader {
            leader: Some(2),
            address: Some("127.0.0.2:7001".into()),
        }
        .into())
    }

    async fn unbind(
        &self,
        _: Request<pb::UnbindRequest>,
    ) -> Result<Response<pb::UnbindReply>, Status> {
        Ok(Response::new(pb::UnbindReply { kept: false }))
    }

    async fn credentials(
        &self,
        _: Request<pb::AccountRequest>,
    ) -> Result<Response<pb::CredentialsReply>, Status> {
        Ok(Response::new(pb::CredentialsReply { credentials: None }))
    }

    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        Err(Status::unimplemented("no registration here"))
    }

    async fn relay(
        &self,
        _: Request<Streaming<EnvelopeBatch>>,
    ) -> Result<Response<pb::Empty>, Status> {
        Err(Status::unimplemented("no relaying here"))
    }

    type RelayAckedStream = Out<pb::RelayAck>;

    async fn relay_acked(
        &self,
        _: Request<Streaming<EnvelopeBatch>>,
    ) -> Result<Response<Self::RelayAckedStream>, Status> {
        Err(Status::unimplemented("no relaying here"))
    }

    async fn sm(&self, _: Request<pb::SmRequest>) -> Result<Response<pb::SmReply>, Status> {
        Err(Status::unimplemented("no stream management here"))
    }
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CoreServer::new(Echo))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

#[tokio::test]
async fn envelopes_stream_up_and_deliveries_come_back() {
    let url = serve().await;
    let mut client = CoreClient::connect(url).await.expect("connect");
    let stanzas: Vec<Stanza> = (0..300)
        .map(|i| {
            let raw = format!(
                "<message to='u{i}@example.com' from='a@example.com/r' id='m{i}' type='chat'><body>{}</body></message>",
                "x".repeat(i)
            );
            let mut st = Stanza::parse(raw.as_bytes()).expect("valid stanza");
            // Every third one with a trace, all with a read time.
            st.trail = proto::trail::Trail::from_wire(
                1_000 + i as u64,
                (i % 3 == 0).then_some(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            );
            st
        })
        .collect();
    // Three batches of a hundred envelopes on one stream.
    let batches: Vec<EnvelopeBatch> = stanzas
        .chunks(100)
        .enumerate()
        .map(|(b, chunk)| EnvelopeBatch {
            envelopes: chunk
                .iter()
                .enumerate()
                .map(|(i, st)| to_envelope((b * 100 + i) as u32, st))
                .collect(),
        })
        .collect();
    let mut down = client
        .forward(futures::stream::iter(batches))
        .await
        .expect("forward")
        .into_inner();
    let mut got = Vec::new();
    while let Some(batch) = down.next().await {
        for d in batch.expect("a delivery batch").deliveries {
            got.push(from_delivery(d).expect("a valid delivery"));
        }
    }
    assert_eq!(got.len(), stanzas.len());
    for (i, (sessions, action, trail)) in got.into_iter().enumerate() {
        assert_eq!(sessions, vec![i as u64]);
        assert_eq!(trail, stanzas[i].trail);
        assert_eq!(action, DeliveryAction::Stanza(stanzas[i].raw.clone()));
    }
}

#[tokio::test]
async fn a_bad_envelope_ends_the_stream_with_invalid_argument() {
    let url = serve().await;
    let mut client = CoreClient::connect(url).await.expect("connect");
    let st = Stanza::parse(b"<presence/>").expect("valid");
    let mut bad = to_envelope(1, &st);
    bad.head_len = 1000;
    let batch = EnvelopeBatch {
        envelopes: vec![bad],
    };
    let mut down = client
        .forward(futures::stream::iter([batch]))
        .await
        .expect("forward")
        .into_inner();
    let err = match down.next().await {
        Some(Err(s)) => ClusterError::from(s),
        other => panic!("expected an error status, got {other:?}"),
    };
    assert!(matches!(err, ClusterError::BadRequest(m) if m.contains("start tag")));
}

#[tokio::test]
async fn a_redirect_to_the_leader_crosses_the_wire() {
    let url = serve().await;
    let mut client = CoreClient::connect(url).await.expect("connect");
    let status = client
        .bind(pb::BindRequest {
            edge: 1,
            session: 7,
            full_jid: "a@example.com/r".into(),
            component: false,
        })
        .await
        .expect_err("never the leader");
    assert_eq!(
        ClusterError::from(status),
        ClusterError::NotLeader {
            leader: Some(2),
            address: Some("127.0.0.2:7001".into())
        }
    );
}
