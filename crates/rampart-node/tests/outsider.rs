//! Property 4: a peer outside the roster, with a valid Ed25519 key, cannot
//! hold a connection to a roster member nor get anything accepted.

use std::time::Duration;

use rampart_gar::Rule;
use rampart_node::{Event, LinearRegression, NodeConfig, NodeHandle, TestNet, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_is_denied_at_the_connection() {
    let n = 4;
    let rounds = 3;
    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(Rule::Median)
            .rounds(rounds)
            .job_tag("outsider")
            .trainer(LinearRegression::new(9, 5, i as u64, 32))
    })
    .await
    .unwrap();

    // The outsider believes it belongs: its own roster lists the four
    // members and itself.
    let key = TestNet::key(100);
    let outsider_id = key.public().to_peer_id();
    let mut roster = TestNet::roster(n);
    roster.push(outsider_id);
    let config = NodeConfig::builder()
        .keypair(key)
        .roster(roster.clone())
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .rule(Rule::Median)
        .rounds(1)
        .job_tag("outsider")
        .trainer(LinearRegression::new(9, 5, 100, 32))
        .build()
        .unwrap();
    let (outsider, _rx) = NodeHandle::spawn(config).unwrap();
    for (peer, addr) in roster.iter().zip(&net.addrs) {
        outsider.dial(*peer, addr.clone()).await.unwrap();
    }

    for (i, rx) in net.events.iter_mut().enumerate() {
        let mut denied = false;
        let mut completed = 0;
        wait_for(rx, timeout, |ev| match ev {
            Event::ConnectionDenied { peer } => {
                assert_eq!(*peer, outsider_id);
                denied = true;
                (completed == rounds).then_some(())
            }
            Event::RoundCompleted { accepted, .. } => {
                assert_eq!(*accepted, n, "node {i}");
                completed += 1;
                None
            }
            Event::Finished { .. } => denied.then_some(()),
            _ => None,
        })
        .await
        .unwrap();
        assert!(denied, "node {i}");
    }
    for h in &net.handles {
        let s = h.status().await.unwrap();
        assert!(!s.connected.contains(&outsider_id));
        assert_eq!(s.counters.rejected(), 0);
    }
    // The outsider never reached a quorum of connections, so never started.
    let s = outsider.status().await.unwrap();
    assert_eq!(s.round, 0);
    assert!(!s.finished);
    outsider.shutdown().await.unwrap();
    net.shutdown().await;
}
