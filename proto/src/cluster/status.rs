//! Errors that cross the tiers: the one place where they become gRPC
//! statuses and come back, and the one place where the edge learns which
//! stanza error (RFC 6120 §8.3.3) a sender gets for them.
//!
//! A redirect to the shard's leader travels as `FAILED_PRECONDITION` with
//! the leader's id and address in the status metadata, so that an edge can
//! follow leader changes without a round trip to the meta group.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::StanzaCondition;

const LEADER_ID: &str = "x-xmppd-leader-id";
const LEADER_ADDR: &str = "x-xmppd-leader-addr";
const REDIRECT: &str = "not the leader";

/// What went wrong on the other tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// This node does not lead the group; `leader` is who does, if known.
    #[error("not the leader (leader: {leader:?} at {address:?})")]
    NotLeader {
        leader: Option<u64>,
        address: Option<String>,
    },
    /// The node is stopping, or the peer cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The peer's queues are full: slow down (back-pressure).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The request itself is wrong (a bad envelope, an unknown group).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A bug or a storage failure on the other side.
    #[error("internal: {0}")]
    Internal(String),
}

impl ClusterError {
    /// Whether trying again (at the leader, or after a pause) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::NotLeader { .. }
                | ClusterError::Unavailable(_)
                | ClusterError::Overloaded(_)
                | ClusterError::Timeout(_)
        )
    }

    /// The stanza error for the sender of a stanza that could not be
    /// routed, once retries are used up.
    pub fn stanza_condition(&self) -> StanzaCondition {
        match self {
            ClusterError::NotLeader { .. } | ClusterError::Unavailable(_) => {
                StanzaCondition::ServiceUnavailable
            }
            ClusterError::Overloaded(_) => StanzaCondition::ResourceConstraint,
            ClusterError::Timeout(_) => StanzaCondition::RemoteServerTimeout,
            ClusterError::BadRequest(_) => StanzaCondition::BadRequest,
            ClusterError::Internal(_) => StanzaCondition::InternalServerError,
        }
    }
}

impl From<ClusterError> for Status {
    fn from(e: ClusterError) -> Status {
        match e {
            ClusterError::NotLeader { leader, address } => {
                let mut s = Status::failed_precondition(REDIRECT);
                if let Some(id) = leader {
                    s.metadata_mut().insert(LEADER_ID, MetadataValue::from(id));
                }
                // An address that is not a valid header value is left out:
                // the edge then asks the meta group.
                if let Some(v) = address.and_then(|a| MetadataValue::try_from(a.as_str()).ok()) {
                    s.metadata_mut().insert(LEADER_ADDR, v);
                }
                s
            }
            ClusterError::Unavailable(m) => Status::unavailable(m),
            ClusterError::Overloaded(m) => Status::resource_exhausted(m),
            ClusterError::BadRequest(m) => Status::invalid_argument(m),
            ClusterError::Timeout(m) => Status::deadline_exceeded(m),
            ClusterError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<Status> for ClusterError {
    fn from(s: Status) -> ClusterError {
        let msg = s.message().to_owned();
        match s.code() {
            Code::FailedPrecondition if msg == REDIRECT => {
                let md = s.metadata();
                ClusterError::NotLeader {
                    leader: md
                        .get(LEADER_ID)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok()),
                    address: md
                        .get(LEADER_ADDR)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                }
            }
            Code::Unavailable | Code::Cancelled | Code::Aborted => ClusterError::Unavailable(msg),
            Code::ResourceExhausted => ClusterError::Overloaded(msg),
            Code::InvalidArgument | Code::OutOfRange | Code::NotFound => {
                ClusterError::BadRequest(msg)
            }
            Code::DeadlineExceeded => ClusterError::Timeout(msg),
            _ => ClusterError::Internal(format!("{:?}: {msg}", s.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<ClusterError> {
        vec![
            ClusterError::NotLeader {
                leader: Some(3),
                address: Some("127.0.0.3:7001".into()),
            },
            ClusterError::NotLeader {
                leader: None,
                address: None,
            },
            ClusterError::Unavailable("stopping".into()),
            ClusterError::Overloaded("queue full".into()),
            ClusterError::BadRequest("no kind".into()),
            ClusterError::Timeout("5 s".into()),
        ]
    }

    #[test]
    fn every_error_survives_a_status_round_trip() {
        for e in all() {
            let back = ClusterError::from(Status::from(e.clone()));
            assert_eq!(back, e);
        }
        let internal = ClusterError::from(Status::from(ClusterError::Internal("disk".into())));
        assert!(matches!(internal, ClusterError::Internal(m) if m.contains("disk")));
    }

    #[test]
    fn a_leader_address_that_is_no_header_value_is_left_out() {
        let e = ClusterError::NotLeader {
            leader: Some(1),
            address: Some("bad\naddress".into()),
        };
        assert_eq!(
            ClusterError::from(Status::from(e)),
            ClusterError::NotLeader {
                leader: Some(1),
                address: None
            }
        );
    }

    #[test]
    fn senders_get_the_stanza_error_that_fits() {
        let conds: Vec<_> = all().iter().map(ClusterError::stanza_condition).collect();
        assert_eq!(
            conds,
            [
                StanzaCondition::ServiceUnavailable,
                StanzaCondition::ServiceUnavailable,
                StanzaCondition::ServiceUnavailable,
                StanzaCondition::ResourceConstraint,
                StanzaCondition::BadRequest,
                StanzaCondition::RemoteServerTimeout,
            ]
        );
        assert!(
            all()
                .iter()
                .all(|e| e.is_retryable() != matches!(e, ClusterError::BadRequest(_)))
        );
    }
}
