//! A node never signs two different gradients for one round, even across a
//! restart: before sending, it records `(job, round, payload hash)` next to
//! its checkpoint, and a node that finds, at start, a record of the round it
//! is about to send with another hash (its trainer did not recompute the
//! same bits) sends nothing that round. The others close the round with
//! n − 1 inputs at the timeout and nobody is excluded. A record with the
//! same hash changes nothing.

use std::path::Path;
use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{
    Encoding, Event, JobId, LinearRegression, NodeConfigBuilder, PayloadKind, SignedPayload,
    TestNet, Trainer, node_dirs,
};

const DIM: usize = 11;
const N: usize = 4;
const NODE: usize = 3;
const ROUNDS: u64 = 4;
const SIGNED_FILE: &str = "rampart-node.signed";

fn trainer(i: usize) -> LinearRegression {
    LinearRegression::new(DIM, 5, i as u64, 32)
}

fn configure(dirs: &[std::path::PathBuf], i: usize, b: NodeConfigBuilder) -> NodeConfigBuilder {
    b.rule(Rule::TrimmedMean { f: 1 })
        .rounds(ROUNDS)
        .round_timeout(Duration::from_millis(400))
        .job_tag("signed-record")
        .checkpoint_dir(&dirs[i])
        .trainer(trainer(i))
}

/// The on-disk record: magic, job id, round (LE), payload hash.
fn record(job: &JobId, round: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut b = b"rampart-signed1\n".to_vec();
    b.extend_from_slice(&job.0);
    b.extend_from_slice(&round.to_le_bytes());
    b.extend_from_slice(hash);
    b
}

fn recorded_round(dir: &Path) -> u64 {
    let b = std::fs::read(dir.join(SIGNED_FILE)).unwrap();
    assert_eq!(b.len(), 16 + 32 + 8 + 32);
    u64::from_le_bytes(b[48..56].try_into().unwrap())
}

/// Runs the job with `hash` recorded for node NODE's round 0; returns the
/// inputs each node accepted per round, by node.
async fn run_with_record(hash: impl FnOnce(&JobId) -> [u8; 32]) -> Vec<Vec<usize>> {
    let base = tempfile::tempdir().unwrap();
    let dirs = node_dirs(base.path(), N).unwrap();
    let job = configure(&dirs, NODE, TestNet::builder(N, NODE))
        .build()
        .unwrap()
        .job();
    std::fs::write(dirs[NODE].join(SIGNED_FILE), record(&job, 0, &hash(&job))).unwrap();

    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(N, timeout, |i, b| configure(&dirs, i, b))
        .await
        .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    let mut accepted = Vec::new();
    for (i, events) in per_node.iter().enumerate() {
        let mut a = Vec::new();
        for ev in events {
            match ev {
                Event::RoundCompleted {
                    accepted: k,
                    excluded,
                    ..
                } => {
                    assert!(excluded.is_empty(), "node {i}: {ev:?}");
                    a.push(*k);
                }
                other => panic!("node {i}: unexpected {other:?}"),
            }
        }
        assert_eq!(a.len(), ROUNDS as usize, "node {i}");
        accepted.push(a);
    }
    // Honest nodes that aggregated the same inputs agree bit for bit.
    let first = net.handles[0].parameters().await.unwrap();
    for h in &net.handles[1..] {
        assert_eq!(h.parameters().await.unwrap(), first);
    }
    // Every node recorded its last round's gradient.
    for dir in &dirs {
        assert_eq!(recorded_round(dir), ROUNDS - 1);
    }
    net.shutdown().await;
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_signed_with_another_hash_before_a_restart_is_not_signed_again() {
    let accepted = run_with_record(|_| [0xab; 32]).await;
    for (i, a) in accepted.iter().enumerate() {
        // Round 0 closed without NODE's input, on every node (NODE's own
        // included); every later round had all four.
        assert_eq!(a, &[N - 1, N, N, N], "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_signed_with_the_same_hash_is_sent_as_usual() {
    let accepted = run_with_record(|job| {
        let grad = trainer(NODE).gradient(0).unwrap().1;
        let (payload, _) = SignedPayload::push(
            &TestNet::key(NODE),
            *job,
            0,
            PayloadKind::Gradient,
            &grad,
            Encoding::F32Le,
        )
        .unwrap();
        payload.header.header.payload_hash
    })
    .await;
    for (i, a) in accepted.iter().enumerate() {
        assert_eq!(a, &[N; ROUNDS as usize], "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_stops_the_node_with_what_to_do() {
    let base = tempfile::tempdir().unwrap();
    let dirs = node_dirs(base.path(), 1).unwrap();
    std::fs::write(dirs[0].join(SIGNED_FILE), b"not a record").unwrap();
    let config = TestNet::builder(1, 0)
        .rule(Rule::Average)
        .checkpoint_dir(&dirs[0])
        .trainer(trainer(0))
        .build()
        .unwrap();
    let (_handle, mut rx) = rampart_node::NodeHandle::spawn(config).unwrap();
    let error = rampart_node::wait_for(&mut rx, Duration::from_secs(10), |ev| match ev {
        Event::Failed { error } => Some(error.clone()),
        Event::RoundCompleted { .. } => panic!("a round ran: {ev:?}"),
        _ => None,
    })
    .await
    .unwrap();
    assert!(
        error.contains("not a signed-gradient record")
            && error.contains(
                "remove the file if no node of this job ever ran from this checkpoint directory"
            ),
        "{error}"
    );
}
