//! A node started 5 rounds after the others (no checkpoint) catches up
//! from its peers' models and finishes the job with them; the others do
//! not wait for it (they close rounds with an n − f quorum meanwhile).

use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{
    LinearRegression, NodeConfigBuilder, Rejoin, TestNet, follow_to_end, last_rounds,
    round_completed,
};

const N: usize = 5;
const ROUNDS: u64 = 15;
const LATE_BY: u64 = 5;

fn configure(i: usize, b: NodeConfigBuilder) -> NodeConfigBuilder {
    // f = 1: rounds close with n - 1 inputs at the timeout.
    b.rule(Rule::TrimmedMean { f: 1 })
        .rounds(ROUNDS)
        .round_timeout(Duration::from_millis(300))
        // Start once n - f members are connected, after this long.
        .start_timeout(Duration::from_millis(500))
        .job_tag("late-join")
        .trainer(LinearRegression::new(9, 77, i as u64, 32))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_started_five_rounds_late_finishes_with_the_others() {
    let timeout = Duration::from_secs(30);
    let late = N - 1;
    let mut net = TestNet::start_first(N, late, timeout, configure)
        .await
        .unwrap();
    // The others train without it for 5 rounds.
    round_completed(&mut net.events[0], LATE_BY - 1, timeout)
        .await
        .unwrap();

    let config = configure(late, TestNet::builder(N, late)).build().unwrap();
    let (h, mut rx) = net.spawn(late, config).await.unwrap();
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

    let lasts = last_rounds(&mut net.events, None, timeout).await.unwrap();
    for (i, last) in lasts.into_iter().enumerate() {
        // The last round aggregated all n inputs, the late node's included.
        assert_eq!(last, Some((ROUNDS - 1, N)), "node {i}");
    }
    assert!(h.parameters().await.unwrap().iter().all(|x| x.is_finite()));
    h.shutdown().await.unwrap();
    net.shutdown().await;
}
