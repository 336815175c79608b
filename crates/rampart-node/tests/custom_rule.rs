//! A node aggregating with a rule of the user's own
//! (`NodeConfigBuilder::custom_rule`): the honest nodes agree bit for bit
//! with a single-process simulation that calls the same rule, a silent
//! member is aggregated around after the timeout with n − f inputs, and a
//! rule that returns a vector of the wrong length stops the node with an
//! error that names it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::PeerId;
use rampart_gar::{Aggregate, Aggregation, GarError};
use rampart_node::{Attack, Event, LinearRegression, TestNet, Trainer, follow_to_end, wait_for};

const DIM: usize = 21;
const SEED: u64 = 77;

fn trainer(i: usize) -> LinearRegression {
    LinearRegression::new(DIM, SEED, i as u64, 64)
}

/// Per coordinate, the mean of the inputs after dropping the `f` largest and
/// the `f` smallest values (sums in ascending order of value). Counts its
/// calls and the inputs it saw.
struct Trim {
    f: usize,
    calls: Arc<AtomicUsize>,
    inputs: Arc<AtomicUsize>,
}

impl Trim {
    fn new(f: usize) -> Self {
        Self {
            f,
            calls: Arc::default(),
            inputs: Arc::default(),
        }
    }

    fn sharing(&self) -> Self {
        Self {
            f: self.f,
            calls: Arc::clone(&self.calls),
            inputs: Arc::clone(&self.inputs),
        }
    }
}

impl Aggregate<f32> for Trim {
    fn name(&self) -> &'static str {
        "test-trim"
    }

    fn check(&self, n: usize) -> Result<(), GarError> {
        if n > 2 * self.f {
            Ok(())
        } else {
            Err(GarError::Precondition {
                rule: "test-trim",
                n,
                f: self.f,
                m: None,
                bound: "n > 2f",
            })
        }
    }

    fn aggregate(&self, inputs: &[&[f32]]) -> Result<Aggregation<f32>, GarError> {
        let d = rampart_gar::validate(inputs)?;
        self.check(inputs.len())?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inputs.fetch_add(inputs.len(), Ordering::SeqCst);
        let keep = inputs.len() - 2 * self.f;
        let out = (0..d)
            .map(|c| {
                let mut v: Vec<f32> = inputs.iter().map(|x| x[c]).collect();
                v.sort_by(f32::total_cmp);
                v[self.f..self.f + keep].iter().sum::<f32>() / keep as f32
            })
            .collect();
        Ok(Aggregation::new(out))
    }
}

/// Returns one value too many.
struct TooLong;

impl Aggregate<f32> for TooLong {
    fn name(&self) -> &'static str {
        "too-long"
    }

    fn check(&self, _n: usize) -> Result<(), GarError> {
        Ok(())
    }

    fn aggregate(&self, inputs: &[&[f32]]) -> Result<Aggregation<f32>, GarError> {
        let mut out = inputs[0].to_vec();
        out.push(0.0);
        Ok(Aggregation::new(out))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_nodes_agree_with_a_simulation_of_the_custom_rule() {
    let n = 5;
    let rounds = 20;
    let rule = Trim::new(1);
    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.custom_rule(rule.sharing(), 1)
            .rounds(rounds)
            .round_timeout(Duration::from_secs(10))
            .job_tag("custom-5")
            .trainer(trainer(i))
    })
    .await
    .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    for events in &per_node {
        assert_eq!(events.len(), rounds as usize);
        for ev in events {
            assert!(
                matches!(ev, Event::RoundCompleted { accepted, rejected: 0, .. } if *accepted == n),
                "{ev:?}"
            );
        }
    }
    // Every node called the rule once a round, on all n inputs.
    assert_eq!(rule.calls.load(Ordering::SeqCst), n * rounds as usize);
    assert_eq!(rule.inputs.load(Ordering::SeqCst), n * n * rounds as usize);

    // The same job in one process, with the same rule on the inputs sorted
    // by PeerId.
    let roster = TestNet::roster(n);
    let mut sim: Vec<LinearRegression> = (0..n).map(trainer).collect();
    let plain = Trim::new(1);
    for round in 0..rounds {
        let inputs: BTreeMap<PeerId, Vec<f32>> = roster
            .iter()
            .zip(&mut sim)
            .map(|(p, t)| (*p, t.gradient(round).unwrap().1))
            .collect();
        let rows: Vec<&[f32]> = inputs.values().map(Vec::as_slice).collect();
        let update = plain.aggregate(&rows).unwrap().output;
        for t in &mut sim {
            t.apply(&update, round).unwrap();
        }
    }
    let expected: Vec<u32> = sim[0]
        .parameters()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    for (i, h) in net.handles.iter().enumerate() {
        let got: Vec<u32> = h
            .parameters()
            .await
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got, expected, "node {i}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_aggregated_around_with_n_minus_f_inputs() {
    let n = 5;
    let silent = 2;
    let rounds = 3;
    let rule = Trim::new(1);
    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .custom_rule(rule.sharing(), 1)
            .rounds(rounds)
            .round_timeout(Duration::from_millis(300))
            .job_tag("custom-silent")
            .trainer(trainer(i));
        if i == silent {
            b.adversary([Attack::Silent])
        } else {
            b
        }
    })
    .await
    .unwrap();
    for (i, rx) in net.events.iter_mut().enumerate() {
        if i == silent {
            continue;
        }
        let seen = follow_to_end(rx, timeout).await.unwrap();
        assert_eq!(seen.completed, (0..rounds).collect::<Vec<_>>(), "node {i}");
        assert!(
            seen.accepted.iter().all(|&a| a == n - 1),
            "node {i}: {seen:?}"
        );
    }
    // The silent member's rule ran too (it aggregates what it receives).
    let calls = rule.calls.load(Ordering::SeqCst);
    assert!(calls >= (n - 1) * rounds as usize, "{calls}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_output_of_the_wrong_length_stops_the_node() {
    let n = 3;
    let timeout = Duration::from_secs(20);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.custom_rule(TooLong, 0)
            .rounds(2)
            .job_tag("custom-too-long")
            .trainer(trainer(i))
    })
    .await
    .unwrap();
    for rx in &mut net.events {
        let error = wait_for(rx, timeout, |ev| match ev {
            Event::Failed { error } => Some(error.clone()),
            Event::RoundCompleted { .. } | Event::Finished { .. } => {
                panic!("a round completed with a wrong-length update: {ev:?}")
            }
            _ => None,
        })
        .await
        .unwrap();
        assert!(
            error.contains("too-long") && error.contains(&format!("{} values", DIM + 1)),
            "{error}"
        );
    }
    net.shutdown().await;
}
