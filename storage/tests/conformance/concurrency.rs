//! Several threads writing at once. The router's model is one writer per
//! user and many users in parallel; the store's per-user counters must be
//! exact under it, and stay exact even when a caller breaks the model and
//! writes one user from several threads.

use std::sync::Barrier;
use std::thread;

use super::*;

const THREADS: usize = 6;
const USERS_PER_THREAD: usize = 20;
const OPS: usize = 15;

#[test]
fn many_users_from_several_threads() {
    let (_d, s) = fresh();
    let barrier = Barrier::new(THREADS);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let s = s.clone();
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for op in 0..OPS {
                    for n in 0..USERS_PER_THREAD {
                        let u = jid(&format!("u{t}-{n}@x"));
                        if op == 0 {
                            assert!(s.accounts().create(&u, &creds(t as u8)).expect("create"));
                        }
                        let c = item(&format!("c{op}@y"), None, &[], Subscription::Both);
                        assert_eq!(s.rosters().put(&u, &c).expect("put"), op as u64 + 1);
                        assert_eq!(s.offline().push(&u, b"m").expect("push"), Ok(op as u64 + 1));
                        s.vcards()
                            .set(&u, Some(u.as_str().as_bytes()))
                            .expect("vcard");
                    }
                }
            });
        }
    });
    assert_eq!(
        s.accounts().count().expect("count"),
        (THREADS * USERS_PER_THREAD) as u64
    );
    assert_eq!(
        s.accounts().list(None).expect("list").len(),
        THREADS * USERS_PER_THREAD
    );
    for t in 0..THREADS {
        for n in 0..USERS_PER_THREAD {
            let u = jid(&format!("u{t}-{n}@x"));
            let (v, items) = s.rosters().get_all(&u).expect("roster");
            assert_eq!((v, items.len()), (OPS as u64, OPS));
            assert_eq!(s.offline().count(&u).expect("count"), OPS);
            assert_eq!(
                s.vcards().get(&u).expect("vcard"),
                Some(u.as_str().as_bytes().to_vec())
            );
        }
    }
}

#[test]
fn one_user_from_several_threads_keeps_counters_exact() {
    let (_d, s) = fresh();
    let u = jid("hot@x");
    let barrier = Barrier::new(THREADS);
    let seqs: Vec<Vec<u64>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (s, u, barrier) = (s.clone(), u.clone(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::new();
                    for i in 0..OPS {
                        mine.push(s.offline().push(&u, b"m").expect("push").expect("room"));
                        let c = item(&format!("c{t}-{i}@y"), None, &[], Subscription::None);
                        s.rosters().put(&u, &c).expect("put");
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut all: Vec<u64> = seqs.into_iter().flatten().collect();
    all.sort();
    let want: Vec<u64> = (1..=(THREADS * OPS) as u64).collect();
    assert_eq!(all, want, "every push got its own sequence number");
    assert_eq!(s.offline().count(&u).expect("count"), THREADS * OPS);
    assert_eq!(
        s.rosters().version(&u).expect("version"),
        (THREADS * OPS) as u64
    );
}

#[test]
fn concurrent_create_and_delete_keep_the_account_count_exact() {
    let (_d, s) = fresh();
    thread::scope(|scope| {
        for t in 0..THREADS {
            let s = s.clone();
            scope.spawn(move || {
                for n in 0..USERS_PER_THREAD {
                    // Every thread races for the same JIDs.
                    let u = jid(&format!("shared{n}@x"));
                    s.accounts().create(&u, &creds(t as u8)).expect("create");
                    if n % 2 == 0 {
                        s.accounts().delete(&u).expect("delete");
                    }
                }
            });
        }
    });
    let listed = s.accounts().list(None).expect("list").len() as u64;
    assert_eq!(s.accounts().count().expect("count"), listed);
}
