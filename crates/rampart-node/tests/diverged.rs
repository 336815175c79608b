//! A node whose own trainer diverges (NaN or ±∞ in its gradient) stops with
//! an error that names the cause, instead of sending an input its peers
//! refuse and timing out round after round.

use std::time::Duration;

use futures::future::select_all;
use rampart_gar::Rule;
use rampart_node::{Event, LinearRegression, TestNet, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_trainer_fails_the_node_with_the_cause() {
    let n = 4;
    // 20,000 weights at the default learning rate of 0.1: far outside the
    // trainer's stable range (about 30 weights), the error grows about
    // 40-fold a round and the gradients overflow within about 25 rounds.
    let dim = 20_000;
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(Rule::Average)
            .rounds(500)
            .round_timeout(Duration::from_secs(20))
            .job_tag("diverged")
            .trainer(LinearRegression::new(dim, 3, i as u64, 8))
    })
    .await
    .unwrap();
    // The first node whose gradient overflows fails; the others, left
    // waiting for its input, are stopped at the end.
    let waits = net.events.iter_mut().enumerate().map(|(i, rx)| {
        Box::pin(async move {
            let mut completed = 0u64;
            let error = wait_for(rx, timeout, |ev| match ev {
                Event::Failed { error } => Some(error.clone()),
                Event::RoundCompleted { .. } => {
                    completed += 1;
                    None
                }
                Event::Finished { .. } => panic!("node {i} finished a diverging job"),
                _ => None,
            })
            .await;
            (i, error, completed)
        })
    });
    let ((i, error, completed), _, _) = select_all(waits).await;
    let error = error.unwrap_or_else(|e| panic!("node {i}: no failure: {e}"));
    assert!(
        error.contains("NaN or infinite") && error.contains("diverged"),
        "node {i}: {error}"
    );
    assert!(completed < 100, "node {i} ran {completed} rounds");
    net.shutdown().await;
}
