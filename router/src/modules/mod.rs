//! The core-side XMPP modules. Stanza handling is split by kind
//! (`message`, `presence` with `subscription`, `iq`), and IQ payloads are
//! served by the handlers listed in `registry.rs`, one per XEP. A module
//! sees only its narrow context (`context.rs`): the shard's sessions
//! (`state.rs`), the stores to read and the writes it plans, and ways to
//! send. It never sees a Raft group, a relay or another module's records.

pub mod caps;
pub mod carbons;
pub mod component;
pub mod context;
pub mod disco;
pub mod dispatch;
pub mod handler;
pub mod iq;
pub mod message;
pub mod muc;
pub mod ping;
pub mod presence;
pub mod private;
pub mod pubsub;
pub mod register;
pub mod registry;
pub mod roster;
pub mod sm;
pub mod state;
pub mod subscription;
pub mod vcard;
pub mod version;

pub(crate) use context::{CommitFailed, Ctx, Effect, Env, presence_of};
