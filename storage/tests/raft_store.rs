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
use storage::raft::{Command, LogStore, MAX_GROUP, Op, ShardRaft, StateMachine};
use storage::{Store, StoreOptions};

/// A snapshot as a leader sends it: a snapshot point built, then the
/// current snapshot with the group's records.
async fn snapshot_now(sm: &mut StateMachine) -> openraft::Snapshot<ShardRaft> {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    sm.get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot")
}

struct Builder;

impl StoreBuilder<ShardRaft, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        // A group other than 0, so that key prefixes are really exercised.
        let (log, sm) = store.raft_group(7, false).expect("group");
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
        let (mut log1, mut sm1) = store.raft_group(1, true).expect("group");
        let (mut log2, mut sm2) = store.raft_group(2, false).expect("group");
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
        assert_eq!(
            log2.read_vote().await.expect("vote"),
            None,
            "group 1's vote"
        );
        assert_eq!(
            log2.try_get_log_entries(0..10).await.expect("read").len(),
            1
        );
        let st = log1.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(log_id(1, 2)));
    }
    // Reopened: log, vote and applied state are where they were.
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let (mut log1, mut sm1) = store.raft_group(1, true).expect("group");
    assert_eq!(log1.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
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
    let (mut log2, _) = store.raft_group(2, false).expect("group");
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
    let (_, mut sm_a) = a.raft_group(5, false).expect("group");
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

    let snap = snapshot_now(&mut sm_a).await;
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 51)));

    // Node b has stale data in that group, and data in another group.
    let (_, mut sm_b) = b.raft_group(5, false).expect("group");
    let (_, mut other_b) = b.raft_group(6, false).expect("group");
    sm_b.apply(vec![put(1, "stale", "x")]).await.expect("stale");
    other_b
        .apply(vec![put(1, "user001", "keep me")])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_snapshot_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = {
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let (_, mut sm) = store.raft_group(3, false).expect("group");
        assert!(sm.get_current_snapshot().await.expect("current").is_none());
        sm.apply(vec![put(1, "a", "1"), put(2, "b", "2")])
            .await
            .expect("apply");
        let snap = snapshot_now(&mut sm).await;
        (snap.meta, snap.snapshot.into_inner())
    };
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let (_, mut sm) = store.raft_group(3, false).expect("group");
    // Openraft's first question, at start, is for the meta alone.
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, built.0);
    // A snapshot to send carries the records, as applied now.
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, built.0);
    assert_eq!(current.snapshot.into_inner(), built.1);
}

/// Building a snapshot records only the point up to which the log may be
/// purged; the records are read when a snapshot is sent, so what is sent
/// is the data as applied then, with that applied log id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_sent_after_more_entries_carries_them_and_their_log_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let (_, mut sm) = store.raft_group(4, false).expect("group");
    sm.apply(vec![put(1, "a", "1")]).await.expect("apply");
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 1)));
    sm.apply(vec![put(2, "b", "2")]).await.expect("apply");
    let sent = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(sent.meta.last_log_id, Some(log_id(1, 2)));
    let other = tempfile::tempdir().expect("tempdir");
    let b = Store::open(other.path(), StoreOptions::default()).expect("open b");
    let (_, mut sm_b) = b.raft_group(4, false).expect("group");
    sm_b.install_snapshot(&sent.meta, sent.snapshot)
        .await
        .expect("install");
    assert_eq!(sm_b.records().expect("b"), sm.records().expect("a"));
    let (applied, _) = sm_b.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_raft_gains_the_raft_column_families() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let old = ["accounts", "rosters", "offline", "vcards"];
        drop(rocksdb::DB::open_cf(&opts, dir.path(), old).expect("raw open"));
    }
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let (mut log, mut sm) = store.raft_group(0, true).expect("group");
    append(&mut log, vec![put(1, "k", "v")]).await;
    sm.apply(vec![put(1, "k", "v")]).await.expect("apply");
    assert_eq!(sm.get(b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn group_ids_past_max_group_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    assert!(store.raft_group(MAX_GROUP, false).is_ok());
    assert!(matches!(
        store.raft_group(u64::MAX, false),
        Err(storage::StorageError::InvalidGroup(u64::MAX))
    ));
}

/// Writes raw records into the closed store at `path`.
fn poke(path: &std::path::Path, cf: &str, key: &[u8], value: &[u8]) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).expect("list");
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).expect("raw open");
    db.put_cf(db.cf_handle(cf).expect("cf"), key, value)
        .expect("raw put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_raft_records_are_storage_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path(), StoreOptions::default()).expect("open"));
    let group: u64 = 255;
    let mut log_key = group.to_be_bytes().to_vec();
    log_key.extend_from_slice(&1u64.to_be_bytes());
    poke(dir.path(), "raft_log", &log_key, b"\x01\xff\xff");
    // Seven bytes: shorter than a group prefix, yet inside group 255's
    // range (it sorts between 00..00ff and 00..0100).
    poke(dir.path(), "shard_data", &[0, 0, 0, 0, 0, 0, 1], b"v");
    let mut meta_key = group.to_be_bytes().to_vec();
    meta_key.push(4); // applied state
    poke(dir.path(), "raft_meta", &meta_key, b"not json");

    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let (mut log, mut sm) = store.raft_group(group, false).expect("group");
    assert!(log.get_log_state().await.is_err());
    assert!(log.try_get_log_entries(0..10).await.is_err());
    assert!(sm.records().is_err());
    assert!(sm.applied_state().await.is_err());
    assert!(
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .is_err()
    );
    // The neighbours are unaffected.
    let (mut log0, sm0) = store.raft_group(group - 1, false).expect("group");
    assert_eq!(log0.get_log_state().await.expect("state").last_log_id, None);
    assert_eq!(sm0.records().expect("records"), Vec::new());
}

/// A shard group owns the user data of its users: a committed batch of
/// store writes lands in the stores, a snapshot carries exactly the
/// owned users' records, and installing it on another node replaces that
/// node's copy of those users and leaves every other user alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_group_replicates_and_snapshots_the_user_data_it_owns() {
    use std::sync::Arc;

    use proto::BareJid;
    use storage::raft::Owns;
    use storage::{Batch, RosterItem};

    let jid = |s: &str| BareJid::parse(s).expect("jid");
    let item = |c: &str| RosterItem {
        jid: jid(c),
        name: Some("friend".into()),
        groups: vec!["g".into()],
        state: Default::default(),
        hidden: false,
    };
    // The group owns users whose localpart starts with "a".
    let owns: Owns = Arc::new(|bare: &str| bare.starts_with('a'));
    let (da, db) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = Store::open(da.path(), StoreOptions::default()).expect("open a");
    let b = Store::open(db.path(), StoreOptions::default()).expect("open b");

    // Plan writes for an owned user and commit them as a log entry.
    let (_, mut sm_a) = a.raft_group_owning(3, false, owns.clone()).expect("group");
    let mut batch = Batch::new();
    a.rosters()
        .put_in(&mut batch, &jid("alice@x"), &item("bob@x"))
        .expect("plan roster");
    a.rosters()
        .put_in(&mut batch, &jid("alice@x"), &item("carol@x"))
        .expect("plan roster");
    a.offline()
        .push_in(&mut batch, &jid("alice@x"), b"<message/>")
        .expect("plan offline")
        .expect("room");
    a.vcards()
        .set_in(&mut batch, &jid("alice@x"), Some(b"<vCard/>"))
        .expect("plan vcard");
    assert_eq!(
        a.rosters().get_all(&jid("alice@x")).expect("read").1,
        Vec::new(),
        "planning writes nothing"
    );
    sm_a.apply(vec![Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Normal(Command::from_batch(batch)),
    }])
    .await
    .expect("apply");
    let (ver, items) = a.rosters().get_all(&jid("alice@x")).expect("read");
    assert_eq!((ver, items.len()), (2, 2), "the second put saw the first");
    assert_eq!(a.offline().count(&jid("alice@x")).expect("count"), 1);
    // A user of another shard, written directly: not the group's.
    a.rosters().put(&jid("zed@x"), &item("bob@x")).expect("zed");

    let snap = snapshot_now(&mut sm_a).await;

    // Node b has a stale copy of alice and a user of its own.
    b.vcards()
        .set(&jid("alice@x"), Some(b"<vCard>stale</vCard>"))
        .expect("stale");
    b.rosters()
        .put(&jid("alice@x"), &item("mallory@x"))
        .expect("stale roster");
    b.rosters().put(&jid("yan@x"), &item("bob@x")).expect("yan");
    let (_, mut sm_b) = b.raft_group_owning(3, false, owns).expect("group");
    sm_b.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");

    assert_eq!(
        b.rosters().get_all(&jid("alice@x")).expect("read"),
        a.rosters().get_all(&jid("alice@x")).expect("read")
    );
    assert_eq!(
        b.vcards().get(&jid("alice@x")).expect("vcard"),
        Some(b"<vCard/>".to_vec())
    );
    assert_eq!(b.offline().list(&jid("alice@x")).expect("list").len(), 1);
    assert_eq!(
        b.rosters().get_all(&jid("zed@x")).expect("zed").1,
        Vec::new()
    );
    assert_eq!(
        b.rosters().get_all(&jid("yan@x")).expect("yan").1.len(),
        1,
        "a user the group does not own is untouched"
    );
}

/// The records of snapshot bytes (`snapshot.rs`: a version byte, then
/// length-prefixed keys and values; each key starts with its family tag).
fn snapshot_records(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (&version, mut rest) = data.split_first().expect("not empty");
    assert_eq!(version, 2);
    fn take(rest: &mut &[u8]) -> Vec<u8> {
        let (len, tail) = rest.split_first_chunk::<4>().expect("length");
        let n = u32::from_be_bytes(*len) as usize;
        let (part, tail) = tail.split_at(n);
        *rest = tail;
        part.to_vec()
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let k = take(&mut rest);
        let v = take(&mut rest);
        out.push((k, v));
    }
    out
}

/// A shard group owns the PubSub nodes whose home it serves (a user's PEP
/// service, a service's node) and its users' private storage: its
/// snapshot carries exactly those records, index entries included, and
/// installing it replaces them on another node and touches nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_group_snapshots_exactly_the_pubsub_and_private_records_it_owns() {
    use std::sync::Arc;

    use proto::{BareJid, Jid};
    use storage::pubsub::home;
    use storage::raft::Owns;
    use storage::{Affiliation, Batch, NodeRecord, Subscription, SubscriptionState};

    let jid = |s: &str| BareJid::parse(s).expect("jid");
    let full = |s: &str| Jid::parse(s).expect("jid");
    let (alice, zed, service) = (jid("alice@x"), jid("zed@x"), jid("pubsub.x"));
    assert_eq!(home(&alice, "urn:xmpp:microblog:0"), "alice@x");
    assert_eq!(home(&service, "mine"), "pubsub.x/mine");
    let owns: Owns = Arc::new(|h: &str| h == "alice@x" || h == "pubsub.x/mine");

    // Plans a node of `service` with an item, an affiliation and two
    // subscriptions (one of another user), and for a PEP service private
    // storage for its user.
    let plan = |s: &Store, b: &mut Batch, service: &BareJid, node: &str, user: &BareJid| {
        let p = s.pubsub();
        let mut rec = NodeRecord::new(user.clone(), 1, b"{}".to_vec());
        for id in ["one", "two"] {
            p.put_item_in(b, service, node, &mut rec, id, None, b"<p/>", 2)
                .expect("item");
        }
        p.put_node_in(b, service, node, &rec).expect("node");
        p.set_affiliation_in(b, service, node, user, Some(Affiliation::Owner))
            .expect("aff");
        for subscriber in ["bob@y/phone", "zed@x"] {
            let sub = Subscription {
                jid: full(subscriber),
                subid: "s1".into(),
                state: SubscriptionState::Subscribed,
                options: Vec::new(),
            };
            p.put_subscription_in(b, service, node, &sub).expect("sub");
        }
        if service == user {
            s.private()
                .put_in(b, user, "storage", "storage:bookmarks", b"<storage/>")
                .expect("private");
        }
    };
    let owned_batch = |s: &Store| {
        let mut b = Batch::new();
        plan(s, &mut b, &alice, "urn:xmpp:microblog:0", &alice);
        plan(s, &mut b, &service, "mine", &zed);
        b
    };
    let others = |s: &Store| {
        let mut b = Batch::new();
        plan(s, &mut b, &zed, "urn:xmpp:microblog:0", &zed);
        plan(s, &mut b, &service, "theirs", &alice);
        s.apply(&b).expect("others");
    };

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let open = |i: usize| Store::open(dirs[i].path(), StoreOptions::default()).expect("open");
    let (a, b, only_owned) = (open(0), open(1), open(2));

    let (_, mut sm_a) = a.raft_group_owning(3, false, owns.clone()).expect("group");
    let batch = owned_batch(&a);
    sm_a.apply(vec![Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Normal(Command::from_batch(batch)),
    }])
    .await
    .expect("apply");
    others(&a);
    let snap = snapshot_now(&mut sm_a).await;

    // Exactly the owned records: those of a store that only ever had them.
    only_owned
        .apply(&owned_batch(&only_owned))
        .expect("owned only");
    drop(only_owned);
    let records = snapshot_records(snap.snapshot.get_ref());
    for (tag, cf) in [(5u8, "pubsub"), (6, "private")] {
        let carried: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .filter(|(k, _)| k.first() == Some(&tag))
            .map(|(k, v)| (k[1..].to_vec(), v.clone()))
            .collect();
        let names =
            rocksdb::DB::list_cf(&rocksdb::Options::default(), dirs[2].path()).expect("cfs");
        let raw =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), dirs[2].path(), names).expect("raw");
        let expected: Vec<(Vec<u8>, Vec<u8>)> = raw
            .iterator_cf(raw.cf_handle(cf).expect("cf"), rocksdb::IteratorMode::Start)
            .map(|kv| {
                let (k, v) = kv.expect("read");
                (k.to_vec(), v.to_vec())
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(carried, expected, "{cf}");
    }

    // Node b has stale copies of owned nodes and records of its own.
    let mut stale = Batch::new();
    plan(&b, &mut stale, &alice, "stale-pep-node", &alice);
    plan(&b, &mut stale, &service, "mine", &alice);
    plan(&b, &mut stale, &zed, "urn:xmpp:microblog:0", &zed);
    plan(
        &b,
        &mut stale,
        &jid("yan@x"),
        "urn:xmpp:microblog:0",
        &jid("yan@x"),
    );
    b.apply(&stale).expect("stale");
    let (_, mut sm_b) = b.raft_group_owning(3, false, owns).expect("group");
    sm_b.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");

    let (pa, pb) = (a.pubsub(), b.pubsub());
    assert_eq!(
        pb.nodes(&alice, None, 10).expect("nodes"),
        ["urn:xmpp:microblog:0"],
        "the stale PEP node is gone"
    );
    for (svc, node) in [(&alice, "urn:xmpp:microblog:0"), (&service, "mine")] {
        assert_eq!(
            pb.items(svc, node, true, None, 10).expect("b"),
            pa.items(svc, node, true, None, 10).expect("a")
        );
        assert_eq!(
            pb.subscriptions(svc, node).expect("b"),
            pa.subscriptions(svc, node).expect("a")
        );
        assert_eq!(
            pb.affiliations(svc, node).expect("b"),
            pa.affiliations(svc, node).expect("a")
        );
    }
    assert_eq!(pb.nodes_created_by(&service, &zed).expect("n"), 1);
    assert_eq!(
        pb.nodes_created_by(&service, &alice).expect("n"),
        0,
        "stale"
    );
    assert_eq!(pb.nodes(&service, None, 10).expect("nodes"), ["mine"]);
    assert_eq!(
        pb.nodes(&zed, None, 10).expect("nodes").len(),
        1,
        "b's own copy of a home the group does not own is untouched"
    );
    assert_eq!(
        pb.nodes(&jid("yan@x"), None, 10).expect("nodes").len(),
        1,
        "a home the group does not own is untouched"
    );
    let e = Batch::new();
    assert!(
        b.private()
            .get_in(&e, &alice, "storage", "storage:bookmarks")
            .expect("get")
            .is_some()
    );
    assert!(
        b.private()
            .get_in(&e, &jid("yan@x"), "storage", "storage:bookmarks")
            .expect("get")
            .is_some()
    );
    assert!(
        b.private()
            .get_in(&e, &zed, "storage", "storage:bookmarks")
            .expect("get")
            .is_some()
    );
}
