//! A node started 5 rounds after the others (no checkpoint) catches up
//! from its peers' models and finishes the job with them; the others do
//! not wait for it (they close rounds with an n − f quorum meanwhile).

use std::time::Duration;

use libp2p::Multiaddr;
use rampart_gar::Rule;
use rampart_node::{
    Event, LinearRegression, NodeConfig, NodeHandle, Rejoin, TestNet, follow_to_end, last_rounds,
    spawn_and_dial, wait_for,
};

const N: usize = 5;
const ROUNDS: u64 = 15;
const LATE_BY: u64 = 5;

fn config(i: usize) -> NodeConfig {
    NodeConfig::builder()
        .keypair(TestNet::key(i))
        .roster(TestNet::roster(N))
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        // f = 1: rounds close with n - 1 inputs at the timeout.
        .rule(Rule::TrimmedMean { f: 1 })
        .rounds(ROUNDS)
        .round_timeout(Duration::from_millis(300))
        // Start once n - f members are connected, after this long.
        .start_timeout(Duration::from_millis(500))
        .job_tag("late-join")
        .trainer(LinearRegression::new(9, 77, i as u64, 32))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_started_five_rounds_late_finishes_with_the_others() {
    let timeout = Duration::from_secs(30);
    let roster = TestNet::roster(N);
    let late = N - 1;
    let mut handles = Vec::new();
    let mut events = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for i in 0..late {
        let (h, mut rx) = NodeHandle::spawn(config(i)).unwrap();
        let addr = wait_for(&mut rx, timeout, |ev| match ev {
            Event::Listening { addr } => Some(addr.clone()),
            _ => None,
        })
        .await
        .unwrap();
        handles.push(h);
        events.push(rx);
        addrs.push(addr);
    }
    for (i, h) in handles.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i != j {
                h.dial(roster[j], a.clone()).await.unwrap();
            }
        }
    }
    // The others train without it for 5 rounds.
    wait_for(&mut events[0], timeout, |ev| match ev {
        Event::RoundCompleted { round, .. } if *round + 1 == LATE_BY => Some(()),
        Event::Failed { error } => panic!("node 0 failed: {error}"),
        _ => None,
    })
    .await
    .unwrap();

    let (h, mut rx) = spawn_and_dial(config(late), roster.iter().copied().zip(addrs.clone()))
        .await
        .unwrap();
    let Rejoin {
        caught_up,
        completed,
        finished: rounds,
        ..
    } = follow_to_end(&mut rx, timeout).await.unwrap();
    assert_eq!(rounds, ROUNDS);
    let (joined, answers) = caught_up.expect("the late node never caught up");
    assert!(joined >= LATE_BY, "joined at round {joined}");
    assert!(
        answers >= 3,
        "median of {answers} models (2f + 1 = 3 needed)"
    );
    // It trained every round from the one it joined to the last.
    let from_join: Vec<u64> = completed.iter().copied().filter(|r| *r >= joined).collect();
    assert_eq!(from_join, (joined..ROUNDS).collect::<Vec<_>>());

    let lasts = last_rounds(&mut events, None, timeout).await.unwrap();
    for (i, last) in lasts.into_iter().enumerate() {
        // The last round aggregated all n inputs, the late node's included.
        assert_eq!(last, Some((ROUNDS - 1, N)), "node {i}");
    }
    assert!(h.parameters().await.unwrap().iter().all(|x| x.is_finite()));
    h.shutdown().await.unwrap();
    for h in &handles {
        let _ = h.shutdown().await;
    }
}
