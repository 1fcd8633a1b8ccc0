//! The Raft log store and state machine on a real RocksDB in a temporary
//! directory: openraft's own storage test suite, groups sharing one
//! database without seeing each other, state surviving a reopen, and a
//! snapshot of one node's group installed on another node.

use std::io::Cursor;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use storage::raft::{Command, LogStore, Op, ShardRaft, StateMachine};
use storage::{Store, StoreOptions};

struct Builder;

impl StoreBuilder<ShardRaft, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        // A group other than 0, so that key prefixes are really exercised.
        let (log, sm) = store.raft_group(7, false);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft's storage suite failed: {e}");
    }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(index: u64, key: &str, value: &str) -> Entry<ShardRaft> {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Command {
            ops: vec![Op::Put {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            }],
        }),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry<ShardRaft>>) {
    log.blocking_append(entries).await.expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_share_a_database_without_seeing_each_other_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let (mut log1, mut sm1) = store.raft_group(1, true);
        let (mut log2, mut sm2) = store.raft_group(2, false);
        append(&mut log1, vec![put(1, "k", "one"), put(2, "j", "uno")]).await;
        append(&mut log2, vec![put(1, "k", "two")]).await;
        log1.save_vote(&Vote::new(3, 1)).await.expect("vote");
        sm1.apply(vec![put(1, "k", "one"), put(2, "j", "uno")])
            .await
            .expect("apply 1");
        sm2.apply(vec![put(1, "k", "two")]).await.expect("apply 2");

        assert_eq!(sm1.get(b"k").expect("get"), Some(b"one".to_vec()));
        assert_eq!(sm2.get(b"k").expect("get"), Some(b"two".to_vec()));
        assert_eq!(sm2.get(b"j").expect("get"), None, "group 1's key");
        assert_eq!(log2.read_vote().await.expect("vote"), None, "group 1's vote");
        assert_eq!(
            log2.try_get_log_entries(0..10).await.expect("read").len(),
            1
        );
        let st = log1.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(log_id(1, 2)));
    }
    // Reopened: log, vote and applied state are where they were.
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let (mut log1, mut sm1) = store.raft_group(1, true);
    assert_eq!(
        log1.read_vote().await.expect("vote"),
        Some(Vote::new(3, 1))
    );
    let entries = log1.try_get_log_entries(1..=2).await.expect("read");
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let (applied, _) = sm1.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 2)));
    assert_eq!(sm1.get(b"j").expect("get"), Some(b"uno".to_vec()));

    // Purge and truncate move only this group's log.
    log1.purge(log_id(1, 1)).await.expect("purge");
    let st = log1.get_log_state().await.expect("state");
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(st.last_log_id, Some(log_id(1, 2)));
    let (mut log2, _) = store.raft_group(2, false);
    assert_eq!(
        log2.try_get_log_entries(0..10).await.expect("read").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_moves_a_group_to_another_node() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open(a_dir.path(), StoreOptions::default()).expect("open a");
    let b = Store::open(b_dir.path(), StoreOptions::default()).expect("open b");
    let (_, mut sm_a) = a.raft_group(5, false);
    let entries: Vec<_> = (1..=50)
        .map(|i| put(i, &format!("user{i:03}"), &format!("roster of {i}")))
        .collect();
    sm_a.apply(entries).await.expect("apply");
    sm_a.apply(vec![Entry {
        log_id: log_id(1, 51),
        payload: EntryPayload::Normal(Command {
            ops: vec![Op::Delete {
                key: b"user007".to_vec(),
            }],
        }),
    }])
    .await
    .expect("apply delete");

    let snap = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 51)));

    // Node b has stale data in that group, and data in another group.
    let (_, mut sm_b) = b.raft_group(5, false);
    let (_, mut other_b) = b.raft_group(6, false);
    sm_b.apply(vec![put(1, "stale", "x")]).await.expect("stale");
    other_b.apply(vec![put(1, "user001", "keep me")])
        .await
        .expect("other");
    let data = snap.snapshot.into_inner();
    sm_b.install_snapshot(&snap.meta, Box::new(Cursor::new(data.clone())))
        .await
        .expect("install");

    assert_eq!(sm_b.records().expect("b"), sm_a.records().expect("a"));
    assert_eq!(sm_b.records().expect("b").len(), 49);
    assert_eq!(sm_b.get(b"stale").expect("get"), None);
    assert_eq!(
        other_b.get(b"user001").expect("get"),
        Some(b"keep me".to_vec()),
        "another group is untouched"
    );
    let (applied, _) = sm_b.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 51)));
    let current = sm_b
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, snap.meta);

    // A corrupt snapshot is refused and changes nothing.
    let mut bad = data;
    bad.truncate(bad.len() - 3);
    assert!(
        sm_b.install_snapshot(&snap.meta, Box::new(Cursor::new(bad)))
            .await
            .is_err()
    );
    assert_eq!(sm_b.records().expect("b").len(), 49);
}
