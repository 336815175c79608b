//! `NodeHandle::pause` / `resume` (DESIGN §2): a paused node stops training
//! at the next round start while staying connected (the others, with f = 1,
//! close rounds without it); resumed, it catches up from its peers' models
//! and trains to the last round with them.

use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{
    Event, LinearRegression, Rejoin, TestNet, follow_to_end, last_rounds, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_node_stops_training_and_rejoins_when_resumed() {
    let n = 5;
    let sleeper = 4;
    let rounds = 20;
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(Rule::TrimmedMean { f: 1 })
            .rounds(rounds)
            .round_timeout(Duration::from_millis(300))
            .job_tag("pause")
            .trainer(LinearRegression::new(9, 5, i as u64, 32))
    })
    .await
    .unwrap();

    wait_for(&mut net.events[sleeper], timeout, |ev| match ev {
        Event::RoundCompleted { round: 2, .. } => Some(()),
        _ => None,
    })
    .await
    .unwrap();
    net.handles[sleeper].pause().await.unwrap();
    let paused_at = wait_for(&mut net.events[sleeper], timeout, |ev| match ev {
        Event::Paused { round } => Some(*round),
        Event::Failed { error } => panic!("{error}"),
        _ => None,
    })
    .await
    .unwrap();
    assert!((3..=4).contains(&paused_at), "paused at {paused_at}");

    // The others go on without it for a few rounds.
    let ahead = paused_at + 4;
    wait_for(&mut net.events[0], timeout, |ev| match ev {
        Event::RoundCompleted { round, .. } if *round == ahead => Some(()),
        _ => None,
    })
    .await
    .unwrap();
    let s = net.handles[sleeper].status().await.unwrap();
    assert!(s.paused);
    assert_eq!(s.round, paused_at);
    assert!(!s.finished);
    assert_eq!(s.connected.len(), n - 1, "a paused node stays connected");

    net.handles[sleeper].resume().await.unwrap();
    assert!(!net.handles[sleeper].status().await.unwrap().paused);
    let Rejoin {
        unpaused,
        caught_up,
        completed,
        ..
    } = follow_to_end(&mut net.events[sleeper], timeout)
        .await
        .unwrap();
    assert_eq!(unpaused, Some(paused_at));
    let (joined, answers) = caught_up.expect("no CaughtUp after resume");
    // Node 0 had completed round `ahead`; the slowest peers may still be in
    // it, and the node joins the round 2f + 1 peers have reached.
    assert!(joined >= ahead, "joined at {joined}");
    assert!(answers >= 3, "{answers}");
    assert_eq!(completed.first(), Some(&joined));
    assert_eq!(completed.last(), Some(&(rounds - 1)));

    // Everyone finishes; the last round had all five inputs again.
    let lasts = last_rounds(&mut net.events, Some(sleeper), timeout)
        .await
        .unwrap();
    for (i, last) in lasts.into_iter().enumerate() {
        assert_eq!(last, Some((rounds - 1, n)), "node {i}");
    }
    net.shutdown().await;
}
