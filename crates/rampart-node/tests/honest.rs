//! Property 1 of the design: with no faults and no timeouts, every honest
//! node ends with bit-identical parameters, equal to a single-process
//! simulation of the same job.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::PeerId;
use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{
    Encoding, Event, LinearRegression, TestNet, Trainer, aggregate_inputs, quantize,
};

const DIM: usize = 33;
const JOB_SEED: u64 = 2024;
const SAMPLES: usize = 64;

fn trainer(i: usize) -> LinearRegression {
    LinearRegression::new(DIM, JOB_SEED, i as u64, SAMPLES)
}

/// The same job in one process: every round, every node's gradient (as it
/// arrives in `encoding`), sorted by PeerId, aggregated once, applied to
/// every model.
fn simulate(n: usize, rounds: u64, rule: &Rule, encoding: Encoding) -> Vec<Vec<f32>> {
    let roster = TestNet::roster(n);
    let mut trainers: Vec<LinearRegression> = (0..n).map(trainer).collect();
    for round in 0..rounds {
        let mut inputs: BTreeMap<PeerId, Vec<f32>> = BTreeMap::new();
        for (peer, t) in roster.iter().zip(&mut trainers) {
            inputs.insert(*peer, quantize(&t.gradient(round).unwrap().1, encoding));
        }
        let update = aggregate_inputs(rule, n, &inputs).unwrap();
        for t in &mut trainers {
            t.apply(&update, round).unwrap();
        }
    }
    trainers.iter().map(|t| t.parameters().unwrap()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_honest_nodes_agree_with_the_simulation() {
    five_honest_nodes(0, Encoding::F32Le).await;
}

/// Gradients in bfloat16: every sender rounds its own input as the others
/// decode it, so the nodes still agree bit for bit, with a simulation that
/// rounds every gradient the same way (and not with the f32 one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bf16_gradients_keep_honest_nodes_identical() {
    five_honest_nodes(0, Encoding::Bf16Le).await;
}

/// Drift control on (every 6 rounds, the last round included): the median
/// of identical models is that model, so nothing changes, and the spread
/// each step measures is exactly 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_control_keeps_honest_nodes_identical() {
    five_honest_nodes(6, Encoding::F32Le).await;
}

async fn five_honest_nodes(drift: u64, encoding: Encoding) {
    let n = 5;
    let rounds = 30;
    let rule = Rule::MultiBulyan {
        f: 0,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_secs(10))
            .job_tag("honest-5")
            .drift_period(drift)
            .gradient_encoding(encoding)
            .trainer(trainer(i))
    })
    .await
    .unwrap();

    let per_node = net.run_to_end(timeout).await.unwrap();
    for events in &per_node {
        assert_eq!(events.len(), rounds as usize, "{events:?}");
        for (r, ev) in events.iter().enumerate() {
            match ev {
                Event::RoundCompleted {
                    round,
                    accepted,
                    rejected,
                    excluded,
                    honest_spread,
                    ..
                } => {
                    assert_eq!(*round, r as u64);
                    let drift_round = drift > 0 && (*round + 1).is_multiple_of(drift);
                    let expected = drift_round.then_some(0.0);
                    assert_eq!(*honest_spread, expected, "round {round}");
                    assert_eq!(*accepted, n);
                    assert_eq!(*rejected, 0);
                    assert!(excluded.is_empty());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    let mut params = Vec::new();
    for h in &net.handles {
        params.push(h.parameters().await.unwrap());
    }
    let expected = simulate(n, rounds, &rule, encoding);
    if encoding != Encoding::F32Le {
        let plain = simulate(n, rounds, &rule, Encoding::F32Le);
        assert_ne!(
            bits(&plain[0]),
            bits(&params[0]),
            "the encoding changed nothing"
        );
    }
    for (i, p) in params.iter().enumerate() {
        assert_eq!(bits(p), bits(&params[0]), "node {i} differs from node 0");
        assert_eq!(
            bits(p),
            bits(&expected[i]),
            "node {i} differs from the simulation"
        );
    }
    // The job learned something (not a vacuous agreement on zeros).
    assert!(params[0].iter().any(|w| *w != 0.0));

    for h in &net.handles {
        let s = h.status().await.unwrap();
        assert!(s.finished);
        assert_eq!(s.round, rounds);
        assert_eq!(s.counters.rejected(), 0);
        assert_eq!(s.connected.len(), n - 1);
    }
    net.shutdown().await;
}
