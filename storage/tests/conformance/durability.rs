//! Data survives: a clean drop and reopen, a drop without flush, and a
//! crash-style copy of the live directory (the files exactly as a killed
//! process would leave them), with and without `sync_writes`.

use super::*;

fn write_world(s: &Store) {
    for u in ["a@x", "b@x", "al@xy"] {
        populate(s, u);
    }
    s.rosters()
        .remove(&jid("a@x"), &jid("c2@z"))
        .expect("remove");
    s.offline().remove_through(&jid("b@x"), 1).expect("remove");
}

fn check_world(s: &Store) {
    assert_populated(s, "al@xy");
    assert_eq!(s.accounts().count().expect("count"), 3);
    let (v, items) = s.rosters().get_all(&jid("a@x")).expect("roster");
    assert_eq!((v, items.len()), (3, 1));
    assert_eq!(
        s.offline().list(&jid("b@x")).expect("list"),
        vec![(2, b"<message>2</message>".to_vec())]
    );
    assert_eq!(s.offline().count(&jid("b@x")).expect("count"), 1);
    // Counters carry on where they were.
    assert_eq!(s.offline().push(&jid("b@x"), b"m").expect("push"), Ok(3));
    assert_eq!(
        s.rosters()
            .put(&jid("a@x"), &item("n@z", None, &[], Subscription::None))
            .expect("put"),
        4
    );
}

#[test]
fn reopen_after_flush_and_drop_keeps_everything() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = reopen(d.path());
    write_world(&s);
    s.flush().expect("flush");
    drop(s);
    check_world(&reopen(d.path()));
}

#[test]
fn reopen_after_drop_without_flush_keeps_everything() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = reopen(d.path());
    write_world(&s);
    let clone = s.clone();
    drop(s);
    drop(clone);
    check_world(&reopen(d.path()));
}

/// Copies the directory of an open, never flushed database: what a crashed
/// process leaves behind (the WAL has been written, no memtable flushed).
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn crash_copy_recovers(opts: StoreOptions) {
    let d = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path(), opts).expect("open");
    write_world(&s);
    copy_dir(d.path(), crashed.path());
    drop(s);
    check_world(&reopen(crashed.path()));
}

#[test]
fn crash_without_flush_recovers_from_the_wal() {
    crash_copy_recovers(StoreOptions::default());
}

#[test]
fn crash_with_sync_writes_recovers_from_the_wal() {
    crash_copy_recovers(StoreOptions {
        sync_writes: true,
        ..StoreOptions::default()
    });
}

/// The write-ahead log stays near its bound while one family is written
/// heavily and another holds an early, never-flushed write: without the
/// bound, that one write pins every log file written after it.
#[test]
fn a_rarely_written_family_does_not_pin_the_write_ahead_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(
        d.path(),
        StoreOptions {
            max_wal_bytes: 1 << 20,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    populate(&s, "cold@x");
    let card = vec![b'v'; 8 * 1024];
    for i in 0..4_000 {
        s.vcards()
            .set(&jid(&format!("u{i}@x")), Some(&card))
            .expect("vcard");
    }
    // Flushes run in the background: the obsolete log files go once they
    // are done.
    let wal_bytes = || -> u64 {
        std::fs::read_dir(d.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let mut wal = wal_bytes();
    for _ in 0..50 {
        if wal < 12 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        wal = wal_bytes();
    }
    assert!(
        wal < 12 << 20,
        "{wal} bytes of write-ahead log for 32 MB written"
    );
    drop(s);
    assert_populated(&reopen(d.path()), "cold@x");
}

#[test]
fn open_creates_missing_directories() {
    let d = tempfile::tempdir().expect("tempdir");
    let deep = d.path().join("a/b/c");
    let s = reopen(&deep);
    populate(&s, "al@x");
    drop(s);
    assert_populated(&reopen(&deep), "al@x");
}

#[test]
fn second_open_of_a_live_database_is_an_error() {
    let (d, _s) = fresh();
    assert!(matches!(
        Store::open(d.path(), StoreOptions::default()),
        Err(storage::StorageError::Rocks(_))
    ));
}

#[test]
fn options_are_kept() {
    let opts = StoreOptions {
        sync_writes: true,
        offline_limit: 7,
        max_wal_bytes: 1 << 20,
    };
    let (_d, s) = fresh_with(opts.clone());
    assert_eq!(s.options(), &opts);
}
