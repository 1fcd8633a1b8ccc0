//! What committing a shard's writes through its Raft group costs against
//! writing the same change straight to RocksDB (the path before shards
//! had Raft groups), measured in one run: N offline-message pushes each
//! way, in alternating rounds, and N messages to an offline user routed
//! through the core (where a shard commits the messages queued together
//! as one Raft entry); medians printed. Run with
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
    let (mut direct, mut raft, mut routed) = (Vec::new(), Vec::new(), Vec::new());
    let offline_user = BareJid::parse("offline@localhost").expect("jid");
    core.add_account(&offline_user, "a long password")
        .await
        .expect("account");
    let mut stored = 0usize;
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
        let t = Instant::now();
        for i in 0..n {
            let raw = format!(
                "<message from='sender@localhost/r' to='offline@localhost' type='chat'><body>{i}</body></message>"
            );
            let st = proto::stanza::Stanza::parse(raw.as_bytes()).expect("stanza");
            core.route(st).await.expect("route");
        }
        stored += n;
        while store
            .storage()
            .offline()
            .count(&offline_user)
            .expect("count")
            < stored
        {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
        routed.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, r, m) = (median(&mut direct), median(&mut raft), median(&mut routed));
    println!("offline pushes of 200 bytes, {n} per round, {rounds} rounds, medians:");
    println!("  direct RocksDB write, one by one      : {d:>10.0} /s");
    println!("  single-member Raft, one by one        : {r:>10.0} /s");
    println!("  messages routed to an offline user    : {m:>10.0} /s");
    println!("  raft / direct                         : {:>10.2}", r / d);
    println!("  routed / direct                       : {:>10.2}", m / d);
    core.shutdown().await;
}
