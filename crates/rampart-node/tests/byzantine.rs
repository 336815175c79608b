//! Seven nodes, f = 1: one roster member cycles through the protocol attacks
//! (garbage bytes, wrong dimension, NaN, replay of an old round,
//! impersonation of another member, a payload altered after signing, a
//! round far in the future, another job's gradient, a frame over the size
//! limit, equivocation). The six honest nodes complete
//! every round, count each bad input under its reason, exclude the
//! equivocator, and never hold the impersonated member responsible.

use std::time::Duration;

use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{
    Attack, ENVELOPE_LIMIT, Event, LinearRegression, Reason, TestNet, follow_to_end, wait_for,
};

const DIM: usize = 17;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_honest_nodes_survive_a_protocol_attacker() {
    let n = 7;
    let bad = 3;
    let rounds = 14;
    let rule = Rule::MultiBulyan {
        f: 1,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let script = [
        Attack::Honest,
        Attack::Garbage,
        Attack::WrongDimension,
        Attack::NonFinite,
        Attack::Replay,
        Attack::Impersonate,
        Attack::Tamper,
        Attack::FutureRound,
        Attack::WrongJob,
        Attack::Oversize,
        Attack::Equivocate,
        Attack::Honest,
    ];
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_millis(700))
            .job_tag("byzantine-7")
            .trainer(LinearRegression::new(DIM, 11, i as u64, 64));
        if i == bad {
            // Its own frame limit lets the oversize push leave.
            b.adversary(script)
                .max_frame(2 * (DIM * 4 + ENVELOPE_LIMIT))
        } else {
            b
        }
    })
    .await
    .unwrap();
    let attacker = net.handles[bad].peer_id();

    for (i, rx) in net.events.iter_mut().enumerate() {
        if i == bad {
            continue;
        }
        let mut completed = 0u64;
        let mut excluded = false;
        wait_for(rx, timeout, |ev| match ev {
            Event::RoundCompleted {
                round, accepted, ..
            } => {
                assert_eq!(*round, completed, "node {i}");
                // The honest six (and the attacker's input when it was valid).
                assert!(*accepted >= n - 1, "node {i} round {round}: {accepted}");
                completed += 1;
                None
            }
            Event::PeerExcluded { peer, evidence } => {
                assert_eq!(*peer, attacker);
                assert!(evidence.verify());
                excluded = true;
                None
            }
            Event::Failed { error } => panic!("node {i} failed: {error}"),
            Event::Finished { .. } => Some(()),
            _ => None,
        })
        .await
        .unwrap();
        assert_eq!(completed, rounds, "node {i}");
        assert!(excluded, "node {i} did not exclude the equivocator");
    }

    let mut equivocation_seen = 0;
    for (i, h) in net.handles.iter().enumerate() {
        if i == bad {
            continue;
        }
        let s = h.status().await.unwrap();
        assert!(s.finished);
        assert_eq!(s.excluded, vec![attacker], "node {i}");
        let c = &s.counters;
        assert!(c.get(Reason::Undecodable) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::WrongDimension) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::NonFinite) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::RoundTooOld) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::BadSignature) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::HashMismatch) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::RoundTooFarAhead) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::WrongJob) >= 1, "node {i}: {c:?}");
        assert!(c.get(Reason::Oversize) >= 1, "node {i}: {c:?}");
        equivocation_seen += c.get(Reason::Equivocation);
    }
    // Peers that received the second payload detect the equivocation
    // themselves; the others learn it from the gossiped proof.
    assert!(equivocation_seen >= 1);

    // The honest nodes hold the same model, up to the equivocation round
    // where some may have aggregated the attacker's input before the proof:
    // check only that every honest model is finite.
    for (i, h) in net.handles.iter().enumerate() {
        if i != bad {
            assert!(h.parameters().await.unwrap().iter().all(|x| x.is_finite()));
        }
    }
    net.shutdown().await;
}

/// A member whose push is refused with a rejecting reason will not send a
/// valid input that round, whatever sender its header names: the honest
/// nodes close the round on the others' inputs at once. With a round
/// timeout of a minute, four rounds of such attacks finish within the
/// test's 30 s only if no round waits for its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pushes_do_not_hold_up_the_round() {
    let n = 4;
    let bad = 1;
    let rounds = 4;
    let script = [
        Attack::Impersonate,
        Attack::Tamper,
        Attack::WrongJob,
        Attack::Oversize,
    ];
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(Rule::TrimmedMean { f: 1 })
            .rounds(rounds)
            .round_timeout(Duration::from_secs(60))
            .job_tag("refused-pushes")
            .trainer(LinearRegression::new(DIM, 3, i as u64, 64));
        if i == bad {
            b.adversary(script)
                .max_frame(2 * (DIM * 4 + ENVELOPE_LIMIT))
        } else {
            b
        }
    })
    .await
    .unwrap();
    for (i, rx) in net.events.iter_mut().enumerate() {
        if i == bad {
            continue;
        }
        let seen = follow_to_end(rx, timeout).await.unwrap();
        assert_eq!(seen.completed, (0..rounds).collect::<Vec<_>>(), "node {i}");
        assert!(
            seen.accepted.iter().all(|&a| a == n - 1),
            "node {i}: {seen:?}"
        );
    }
    net.shutdown().await;
}
