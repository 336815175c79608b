//! Property 7: a node killed mid-job restarts from its checkpoint, catches up
//! from its peers' models and rejoins; the others keep going meanwhile.

use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{
    CHECKPOINT_FILE, LinearRegression, Rejoin, TestNet, follow_to_end, last_rounds, node_dirs,
    round_completed,
};

const DIM: usize = 9;

fn trainer(i: usize) -> LinearRegression {
    LinearRegression::new(DIM, 77, i as u64, 32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_resumes_from_checkpoint_and_rejoins() {
    let n = 5;
    let victim = 4;
    let rounds = 25;
    let kill_after = 5;
    // f = 1: the others may close rounds with n - 1 inputs while it is down.
    let rule = Rule::TrimmedMean { f: 1 };
    let timeout = Duration::from_secs(30);
    // Removed when the test ends, whether it passes or not.
    let base = tempfile::tempdir().unwrap();
    let dirs = node_dirs(base.path(), n).unwrap();
    let configure = |i: usize, b: rampart_node::NodeConfigBuilder| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_millis(400))
            .job_tag("restart")
            .checkpoint_dir(&dirs[i])
            .trainer(trainer(i))
    };
    let mut net = TestNet::start(n, timeout, configure).await.unwrap();

    round_completed(&mut net.events[victim], kill_after, timeout)
        .await
        .unwrap();
    net.handles[victim].shutdown().await.unwrap();
    assert!(dirs[victim].join(CHECKPOINT_FILE).exists());
    // The others go on without it for a few rounds (each closes at the
    // timeout with n - 1 inputs).
    let ahead = kill_after + 4;
    round_completed(&mut net.events[0], ahead, timeout)
        .await
        .unwrap();

    // Restart with a fresh model: everything comes from the checkpoint and
    // the peers.
    let config = configure(victim, TestNet::builder(n, victim))
        .build()
        .unwrap();
    let (handle, mut rx) = net.spawn(victim, config).await.unwrap();
    let Rejoin {
        resumed,
        caught_up,
        completed,
        ..
    } = follow_to_end(&mut rx, timeout).await.unwrap();
    let resumed = resumed.expect("no Resumed event");
    assert!(resumed > kill_after, "resumed at {resumed}");
    // It skipped the rounds it missed, taking the median of its peers'
    // models (n - 1 answers, at least 2f + 1).
    let (joined, answers) = caught_up.expect("no CaughtUp event");
    // Node 0 had completed round `ahead`; the slowest peers may still be in
    // it, and the node joins the round 2f + 1 peers have reached.
    assert!(joined >= ahead, "joined at {joined}");
    assert!(answers >= 3, "{answers} answers");
    assert_eq!(completed.first(), Some(&joined));
    // It trained again after the restart, up to the last round.
    assert!(!completed.is_empty());
    assert_eq!(*completed.last().unwrap(), rounds - 1);
    assert!(completed.windows(2).all(|w| w[1] == w[0] + 1));

    let lasts = last_rounds(&mut net.events, Some(victim), timeout)
        .await
        .unwrap();
    for (i, last) in lasts.into_iter().enumerate() {
        // The last round had the restarted node's input again.
        assert_eq!(last, Some((rounds - 1, n)), "node {i}");
    }
    assert!(
        handle
            .parameters()
            .await
            .unwrap()
            .iter()
            .all(|x| x.is_finite())
    );
    handle.shutdown().await.unwrap();
    net.shutdown().await;
}
