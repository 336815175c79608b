//! Two roster members whose jobs differ (one roster file was edited) learn
//! it when they connect: each emits `JobMismatch` naming the other's job id
//! and its own, instead of every request failing as "protocol not
//! supported".

use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{Event, LinearRegression, TestNet, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_report_the_other_job() {
    let timeout = Duration::from_secs(20);
    // Same members, different hyper-parameters (the job tag stands for the
    // rest of the roster file).
    let net = TestNet::start(2, timeout, |i, b| {
        b.rule(Rule::Average)
            .rounds(1)
            .start_timeout(Duration::from_secs(60))
            .job_tag(if i == 0 { "lr=0.1" } else { "lr=0.2" })
            .trainer(LinearRegression::new(4, 1, i as u64, 8))
    })
    .await
    .unwrap();
    let mut net = net;
    let mut seen = Vec::new();
    for i in 0..2 {
        let (peer, theirs, ours) = wait_for(&mut net.events[i], timeout, |ev| match ev {
            Event::JobMismatch { peer, theirs, ours } => {
                Some((*peer, theirs.clone(), ours.clone()))
            }
            Event::RoundCompleted { .. } => panic!("node {i} trained with a foreign job"),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("node {i} saw no JobMismatch: {e}"));
        assert_eq!(peer, net.keys[1 - i].public().to_peer_id());
        assert_ne!(theirs, ours);
        assert_eq!(theirs.len(), 64);
        seen.push((theirs, ours));
    }
    // Each names the other's job as theirs.
    assert_eq!(seen[0].0, seen[1].1);
    assert_eq!(seen[1].0, seen[0].1);
    // Neither counts the other as a connected member.
    for h in &net.handles {
        assert!(h.status().await.unwrap().connected.is_empty());
    }
    net.shutdown().await;
}

/// Node 0's roster leaves node 1 out (its roster file lists other
/// members): node 0 denies node 1's connections after the handshake and
/// says so (`ConnectionDenied`); node 1, whose roster lists node 0, learns
/// it too (`RefusedByPeer`) instead of seeing only closed connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_left_out_of_a_roster_learns_it_too() {
    let timeout = Duration::from_secs(20);
    let roster = TestNet::roster(3);
    let net = TestNet::start(3, timeout, |i, b| {
        let b = b
            .rule(Rule::Average)
            .rounds(1)
            .start_timeout(Duration::from_secs(60))
            // Unconnected members are redialled every round_timeout / 5.
            .round_timeout(Duration::from_millis(500))
            .trainer(LinearRegression::new(4, 1, i as u64, 8));
        if i == 0 {
            b.roster([roster[0], roster[2]])
        } else {
            b
        }
    })
    .await
    .unwrap();
    let mut net = net;
    let denied = wait_for(&mut net.events[0], timeout, |ev| match ev {
        Event::ConnectionDenied { peer } => Some(*peer),
        _ => None,
    })
    .await
    .expect("node 0 denied no connection");
    assert_eq!(denied, roster[1]);
    let refused = wait_for(&mut net.events[1], timeout, |ev| match ev {
        Event::RefusedByPeer { peer } => Some(*peer),
        _ => None,
    })
    .await
    .expect("node 1 was not told that node 0 refused it");
    assert_eq!(refused, roster[0]);
    // Node 1 reports it once, not at each of the ~10 redials in a second.
    let again = wait_for(&mut net.events[1], Duration::from_secs(1), |ev| match ev {
        Event::RefusedByPeer { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(again.is_err(), "RefusedByPeer reported twice");
    // Nodes 1 and 2, whose rosters agree, still see each other normally:
    // node 2 reports no refusal.
    assert!(
        wait_for(
            &mut net.events[2],
            Duration::from_millis(500),
            |ev| match ev {
                Event::RefusedByPeer { peer } if *peer == roster[1] => Some(()),
                _ => None,
            }
        )
        .await
        .is_err()
    );
    net.shutdown().await;
}
