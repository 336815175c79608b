//! Value attacks forged from what reached the attacker over the network: the
//! attacker holds its input back, collects the round's honest inputs, forges
//! with `rampart-attack` and only then sends. Checked bit for bit against a
//! single-process replay of the same job, for IPM (f = 1) and for two
//! colluding ALIE nodes (f = 2); and an attacker that never gets every
//! honest input still sends by its deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::PeerId;
use rampart_attack::{Attack as Formula, ForgeContext};
use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{
    Attack, Event, LinearRegression, TestNet, Trainer, ValueAttack, aggregate_inputs, f32_to_le,
    payload_hash,
};

const DIM: usize = 17;
const JOB_SEED: u64 = 77;
const SAMPLES: usize = 64;

fn trainer(i: usize) -> LinearRegression {
    LinearRegression::new(DIM, JOB_SEED, i as u64, SAMPLES)
}

fn multi_bulyan(f: usize) -> Rule {
    Rule::MultiBulyan {
        f,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every event of node `rx` up to `Finished`.
async fn events_to_end(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    timeout: Duration,
) -> Vec<Event> {
    let mut all = Vec::new();
    rampart_node::wait_for(rx, timeout, |ev| {
        all.push(ev.clone());
        match ev {
            Event::Finished { .. } => Some(()),
            Event::Failed { error } => panic!("node failed: {error}"),
            _ => None,
        }
    })
    .await
    .unwrap();
    all
}

/// Runs `n` nodes of which `bad` forge `formula` (colluding), then replays
/// the job in one process: every round, the honest gradients at the common
/// parameters, the forged vector from them, and the aggregate. Checks each
/// `Forged` event (senders and payload hash), that every honest node
/// aggregated all n inputs well before the timeout, and that the honest
/// nodes end with the replay's parameters, bit for bit.
async fn forged_from_received(n: usize, f: usize, bad: &[usize], formula: Formula, rounds: u64) {
    let rule = multi_bulyan(f);
    let roster = TestNet::roster(n);
    let colluders: Vec<PeerId> = bad.iter().map(|&b| roster[b]).collect();
    let round_timeout = Duration::from_secs(8);
    let timeout = Duration::from_secs(60);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(rule.clone())
            .rounds(rounds)
            .round_timeout(round_timeout)
            .job_tag(format!("value-attack-{n}"))
            .trainer(trainer(i));
        if bad.contains(&i) {
            let mut va = ValueAttack::new(formula.clone());
            va.colluders = colluders
                .iter()
                .filter(|p| **p != roster[i])
                .copied()
                .collect();
            va.seed = 5;
            b.value_attack(va)
        } else {
            b
        }
    })
    .await
    .unwrap();
    let mut events = Vec::with_capacity(n);
    for rx in &mut net.events {
        events.push(events_to_end(rx, timeout).await);
    }

    let honest: Vec<usize> = (0..n).filter(|i| !bad.contains(i)).collect();
    let honest_peers: Vec<PeerId> = {
        let mut p: Vec<PeerId> = honest.iter().map(|&i| roster[i]).collect();
        p.sort();
        p
    };
    let mut replicas: Vec<LinearRegression> = (0..n).map(trainer).collect();
    let ctx = ForgeContext { n, f, seed: 0 };
    for round in 0..rounds {
        let mut grads: BTreeMap<PeerId, Vec<f32>> = BTreeMap::new();
        for &i in &honest {
            grads.insert(roster[i], replicas[i].gradient(round).unwrap().1);
        }
        let rows: Vec<&[f32]> = grads.values().map(Vec::as_slice).collect();
        let forged: Vec<f32> = formula.forge(&rows, &ctx).unwrap();
        let hash = payload_hash(&f32_to_le(&forged));
        for &b in bad {
            let (from, sent) = events[b]
                .iter()
                .find_map(|ev| match ev {
                    Event::Forged {
                        round: r,
                        from,
                        payload_hash,
                    } if *r == round => Some((from.clone(), *payload_hash)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("node {b} did not forge round {round}"));
            assert_eq!(from, honest_peers, "node {b} round {round}");
            assert_eq!(
                sent, hash,
                "node {b} round {round}: not the formula's vector"
            );
        }
        let mut inputs = grads.clone();
        for &b in bad {
            // The attacker's own gradient advances its trainer as usual.
            replicas[b].gradient(round).unwrap();
            inputs.insert(roster[b], forged.clone());
        }
        let update = aggregate_inputs(&rule, n, &inputs).unwrap();
        for r in &mut replicas {
            r.apply(&update, round).unwrap();
        }
    }
    for &i in &honest {
        let completed: Vec<(u64, usize, Duration)> = events[i]
            .iter()
            .filter_map(|ev| match ev {
                Event::RoundCompleted {
                    round,
                    accepted,
                    timings,
                    ..
                } => Some((*round, *accepted, timings.total)),
                _ => None,
            })
            .collect();
        assert_eq!(completed.len() as u64, rounds, "node {i}");
        for (round, accepted, total) in completed {
            assert_eq!(accepted, n, "node {i} round {round}");
            assert!(
                total < round_timeout / 2,
                "node {i} round {round} took {total:?}: it waited for the timeout"
            );
        }
        let p = net.handles[i].parameters().await.unwrap();
        assert_eq!(
            bits(&p),
            bits(&replicas[i].parameters().unwrap()),
            "node {i}"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipm_attacker_sends_minus_tau_times_the_mean_of_what_it_received() {
    forged_from_received(7, 1, &[3], Formula::Ipm { tau: 2.0 }, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_colluding_alie_nodes_forge_from_the_nine_honest_inputs() {
    let alie = Formula::Alie { tau: None, ddof: 1 };
    forged_from_received(11, 2, &[2, 9], alie, 4).await;
}

/// One honest-looking member is silent: the attacker never gets all the
/// honest inputs, forges at its deadline (a margin before the round timeout)
/// from the ones it has, and every honest node still completes each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_short_of_inputs_sends_by_its_deadline() {
    let n = 7;
    let (attacker, silent) = (5, 1);
    let rounds = 3;
    let round_timeout = Duration::from_millis(1500);
    let margin = Duration::from_millis(500);
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(multi_bulyan(1))
            .rounds(rounds)
            .round_timeout(round_timeout)
            .job_tag("value-attack-deadline")
            .trainer(trainer(i));
        match i {
            i if i == attacker => {
                let mut va = ValueAttack::new(Formula::Alie { tau: None, ddof: 1 });
                va.margin = Some(margin);
                b.value_attack(va)
            }
            i if i == silent => b.adversary([Attack::Silent]),
            _ => b,
        }
    })
    .await
    .unwrap();
    let roster = TestNet::roster(n);
    let events = events_to_end(&mut net.events[attacker], timeout).await;
    let forged: Vec<&Vec<PeerId>> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::Forged { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    assert_eq!(forged.len() as u64, rounds);
    for from in forged {
        assert_eq!(from.len(), n - 2);
        assert!(!from.contains(&roster[silent]) && !from.contains(&roster[attacker]));
    }
    for i in (0..n).filter(|&i| i != attacker && i != silent) {
        let evs = events_to_end(&mut net.events[i], timeout).await;
        let accepted: Vec<usize> = evs
            .iter()
            .filter_map(|ev| match ev {
                Event::RoundCompleted { accepted, .. } => Some(*accepted),
                _ => None,
            })
            .collect();
        // The five honest inputs it is not silent about, its own, and the
        // forged one, sent before the round timeout.
        assert_eq!(accepted, vec![n - 1; rounds as usize], "node {i}");
    }
    net.shutdown().await;
}

/// The honest nodes' rounds when member `bad` follows `attack`: (accepted,
/// round time) per round, for every honest node.
async fn rounds_under(
    attack: Attack,
    rounds: u64,
    round_timeout: Duration,
    tag: &str,
) -> Vec<Vec<(usize, Duration)>> {
    let n = 7;
    let bad = 4;
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(multi_bulyan(1))
            .rounds(rounds)
            .round_timeout(round_timeout)
            .job_tag(tag.to_owned())
            .trainer(trainer(i));
        if i == bad { b.adversary([attack]) } else { b }
    })
    .await
    .unwrap();
    let mut out = Vec::new();
    for (i, rx) in net.events.iter_mut().enumerate() {
        if i == bad {
            continue;
        }
        let evs = events_to_end(rx, timeout).await;
        out.push(
            evs.iter()
                .filter_map(|ev| match ev {
                    Event::RoundCompleted {
                        accepted, timings, ..
                    } => Some((*accepted, timings.total)),
                    _ => None,
                })
                .collect(),
        );
    }
    net.shutdown().await;
    out
}

/// Garbage bytes pushed by a member are refused at once; the round closes
/// on the n − 1 valid inputs without waiting for the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_make_rounds_wait_for_the_timeout() {
    let round_timeout = Duration::from_secs(8);
    for (i, rounds) in rounds_under(Attack::Garbage, 5, round_timeout, "garbage-fast")
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(rounds.len(), 5, "node {i}");
        for (r, (accepted, total)) in rounds.into_iter().enumerate() {
            assert_eq!(accepted, 6, "node {i} round {r}");
            assert!(total < round_timeout / 2, "node {i} round {r}: {total:?}");
        }
    }
}

/// A member that sends its input late: within the timeout the rounds wait
/// for it and use it; beyond the timeout they close without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_inputs_are_waited_for_up_to_the_timeout() {
    let within = rounds_under(
        Attack::Delay { ms: 300 },
        3,
        Duration::from_secs(5),
        "delay-within",
    )
    .await;
    for (i, rounds) in within.into_iter().enumerate() {
        assert_eq!(rounds.len(), 3, "node {i}");
        for (r, (accepted, total)) in rounds.into_iter().enumerate() {
            assert_eq!(accepted, 7, "node {i} round {r}");
            // Rounds of a few milliseconds without the delay (the nodes do
            // not start at the same instant, so allow some slack).
            assert!(
                total >= Duration::from_millis(150),
                "node {i} round {r}: {total:?}"
            );
        }
    }
    let beyond = rounds_under(
        Attack::Delay { ms: 5000 },
        3,
        Duration::from_millis(600),
        "delay-beyond",
    )
    .await;
    for (i, rounds) in beyond.into_iter().enumerate() {
        assert_eq!(rounds.len(), 3, "node {i}");
        for (r, (accepted, _)) in rounds.into_iter().enumerate() {
            assert_eq!(accepted, 6, "node {i} round {r}");
        }
    }
}
