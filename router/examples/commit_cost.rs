//! What committing a shard's writes through its Raft group costs against
//! writing the same change straight to RocksDB (the path before shards
//! had Raft groups), measured in one run: N offline-message pushes each
//! way, in alternating rounds, medians printed. Run with
//! `cargo run --release -p router --example commit_cost -- [N] [ROUNDS]`.

use std::time::Instant;

use proto::BareJid;
use router::{Core, CoreConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = router::open_store(&dir.path().join("db"), false, usize::MAX).expect("store");
    let core = Core::start(
        CoreConfig {
            shards: 1,
            ..CoreConfig::default()
        },
        store.clone(),
    )
    .await
    .expect("core");
    let direct_user = BareJid::parse("direct@localhost").expect("jid");
    let raft_user = BareJid::parse("raft@localhost").expect("jid");
    let msg = vec![b'x'; 200];
    let (mut direct, mut raft) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n {
            store
                .storage()
                .offline()
                .push(&direct_user, &msg)
                .expect("write")
                .expect("room");
        }
        direct.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..n {
            let mut b = storage::Batch::new();
            store
                .storage()
                .offline()
                .push_in(&mut b, &raft_user, &msg)
                .expect("plan")
                .expect("room");
            core.commit(0, b).await.expect("commit");
        }
        raft.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, r) = (median(&mut direct), median(&mut raft));
    println!("offline pushes of 200 bytes, {n} per round, {rounds} rounds, medians:");
    println!("  direct RocksDB write : {d:>10.0} /s");
    println!("  single-member Raft   : {r:>10.0} /s");
    println!("  raft / direct        : {:>10.2}", r / d);
    core.shutdown().await;
}
