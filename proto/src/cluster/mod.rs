//! The wire between xmppd's tiers (docs/cluster.md, `cluster.proto`): the
//! generated prost messages and tonic services in [`pb`], and the one place
//! where our types become wire types and back: stanzas and envelopes
//! ([`envelope`]), and errors and gRPC statuses ([`status`]).
//!
//! Only message types and service stubs live here; the clients, servers and
//! Raft groups that use them are in `router` (core) and `node` (edge).

pub mod envelope;
pub mod status;

/// Generated from `cluster.proto` by `build.rs`.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("xmppd.cluster.v1");
}

pub use envelope::ConvertError;
pub use status::ClusterError;

/// Raft group ids: the meta group is 0, shard `s` is `s + 1`.
pub const META_GROUP: u64 = 0;

/// The Raft group of shard `s`.
pub fn shard_group(shard: u32) -> u64 {
    u64::from(shard) + 1
}

/// The shard of a Raft group, or `None` for the meta group.
pub fn group_shard(group: u64) -> Option<u32> {
    group.checked_sub(1).and_then(|s| u32::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_ids_map_to_shards_and_back() {
        assert_eq!(super::group_shard(super::META_GROUP), None);
        for s in [0u32, 1, 63, 255, u32::MAX] {
            assert_eq!(super::group_shard(super::shard_group(s)), Some(s));
        }
        assert_eq!(super::group_shard(u64::MAX), None);
    }
}
