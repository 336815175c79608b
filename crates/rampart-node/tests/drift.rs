//! Drift control (DESIGN §3): every K rounds the nodes exchange their models
//! and replace them by the coordinate-wise median.
//!
//! * Honest models that drift apart (here: every node's arithmetic is
//!   perturbed a little each round, as nondeterministic hardware or a
//!   missed input would) are pulled back together at every drift step; the
//!   spread each step reports equals the one a single-process simulation of
//!   the same job measures, and the final models (the last round is followed
//!   by a step) are bit-identical.
//! * A Byzantine member that sends a wild model in the drift step does not
//!   move the honest models at all: they stay bit-identical to a simulation
//!   without drift control, and the spread leaves the wild model out.

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::PeerId;
use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{
    Event, LinearRegression, TestNet, Trainer, TrainerError, aggregate_inputs, drift_step,
};

const DIM: usize = 17;
const SEED: u64 = 91;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn diameter(models: &[Vec<f32>]) -> f64 {
    let mut d = 0.0f64;
    for (i, a) in models.iter().enumerate() {
        for b in &models[i + 1..] {
            d = d.max(l2(a, b));
        }
    }
    d
}

/// An honest trainer whose model drifts: after each update it adds a small
/// deterministic perturbation of its own (node, round).
struct Jittery {
    inner: LinearRegression,
    node: u64,
}

impl Jittery {
    fn new(node: usize) -> Self {
        Self {
            inner: LinearRegression::new(DIM, SEED, node as u64, 32),
            node: node as u64,
        }
    }
}

impl Trainer for Jittery {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn gradient(&mut self, round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        self.inner.gradient(round)
    }
    fn apply(&mut self, update: &[f32], round: u64) -> Result<(), TrainerError> {
        self.inner.apply(update, round)?;
        let mut p = self.inner.parameters()?;
        let mut s = (self.node << 32) ^ round ^ 0x5eed;
        for w in &mut p {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *w += 1e-3 * (((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5);
        }
        self.inner.set_parameters(&p)
    }
    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        self.inner.parameters()
    }
    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        self.inner.set_parameters(params)
    }
}

/// Byzantine in the drift step only: trains honestly, but the model it
/// reports (and so sends for drift control) is wild.
struct Wild(LinearRegression);

impl Trainer for Wild {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn gradient(&mut self, round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        self.0.gradient(round)
    }
    fn apply(&mut self, update: &[f32], round: u64) -> Result<(), TrainerError> {
        self.0.apply(update, round)
    }
    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        Ok((0..self.dim())
            .map(|i| if i % 2 == 0 { 1e6 } else { -1e6 })
            .collect())
    }
    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        self.0.set_parameters(params)
    }
}

/// Runs the job in one process: every round all gradients, sorted by
/// PeerId, are aggregated once and applied to every model; after every
/// `drift`-th round the models are replaced by `drift_step` of all of them.
/// Returns the final models and the spread of each drift step.
fn simulate<T: Trainer>(
    trainers: &mut [T],
    rule: &Rule,
    rounds: u64,
    drift: u64,
    f: usize,
) -> (Vec<Vec<f32>>, BTreeMap<u64, f64>) {
    let n = trainers.len();
    let roster = TestNet::roster(n);
    let mut spreads = BTreeMap::new();
    for round in 0..rounds {
        let mut inputs: BTreeMap<PeerId, Vec<f32>> = BTreeMap::new();
        for (peer, t) in roster.iter().zip(trainers.iter_mut()) {
            inputs.insert(*peer, t.gradient(round).unwrap().1);
        }
        let update = aggregate_inputs(rule, n, &inputs).unwrap();
        for t in trainers.iter_mut() {
            t.apply(&update, round).unwrap();
        }
        if drift > 0 && (round + 1).is_multiple_of(drift) {
            let models: BTreeMap<PeerId, Vec<f32>> = roster
                .iter()
                .zip(trainers.iter())
                .map(|(p, t)| (*p, t.parameters().unwrap()))
                .collect();
            let (median, spread) = drift_step(&models, f).unwrap();
            for t in trainers.iter_mut() {
                t.set_parameters(&median).unwrap();
            }
            spreads.insert(round, spread);
        }
    }
    let models = trainers.iter().map(|t| t.parameters().unwrap()).collect();
    (models, spreads)
}

/// Each node's `RoundCompleted` spreads, by round.
fn spreads(events: &[Event]) -> BTreeMap<u64, f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoundCompleted {
                round,
                honest_spread: Some(s),
                ..
            } => Some((*round, *s)),
            Event::Failed { error } => panic!("node failed: {error}"),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_control_pulls_diverging_honest_models_together() {
    let n = 5;
    let rounds = 16;
    let k = 4;
    let rule = Rule::MultiBulyan {
        f: 0,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_secs(10))
            .drift_period(k)
            .job_tag("drift-jitter")
            .trainer(Jittery::new(i))
    })
    .await
    .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    let mut params = Vec::new();
    for h in &net.handles {
        params.push(h.parameters().await.unwrap());
    }
    net.shutdown().await;

    let mut with: Vec<Jittery> = (0..n).map(Jittery::new).collect();
    let (expected, expected_spreads) = simulate(&mut with, &rule, rounds, k, 0);
    let mut without: Vec<Jittery> = (0..n).map(Jittery::new).collect();
    let (free, _) = simulate(&mut without, &rule, rounds, 0, 0);
    let free_spread = diameter(&free);

    println!("drift-step spreads {expected_spreads:?}; without drift control {free_spread:.3e}");
    let drift_rounds: Vec<u64> = (0..rounds).filter(|r| (r + 1).is_multiple_of(k)).collect();
    for (i, events) in per_node.iter().enumerate() {
        assert_eq!(events.len(), rounds as usize, "node {i}");
        let got = spreads(events);
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), drift_rounds);
        // The spread each step measured is the simulation's, bit for bit.
        assert_eq!(got, expected_spreads, "node {i}");
        for s in got.values() {
            // The models had drifted apart (K rounds of perturbation) ...
            assert!(*s > 1e-4, "node {i}: spread {s}");
            // ... but never as far as without drift control.
            assert!(*s < free_spread, "node {i}: {s} vs {free_spread}");
        }
    }
    // After the last step every model is the same median: the spread fell
    // to 0, and the models are the simulation's.
    for (i, p) in params.iter().enumerate() {
        assert_eq!(bits(p), bits(&expected[0]), "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wild_model_in_the_drift_step_does_not_move_honest_models() {
    let n = 7;
    let wild = 6;
    let rounds = 9;
    let k = 3;
    let rule = Rule::MultiBulyan {
        f: 1,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let linreg = |i: usize| LinearRegression::new(DIM, SEED, i as u64, 32);
    let timeout = Duration::from_secs(30);
    let mut net = TestNet::start(n, timeout, |i, b| {
        let b = b
            .rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_secs(10))
            .drift_period(k)
            .job_tag("drift-wild");
        if i == wild {
            b.trainer(Wild(linreg(i)))
        } else {
            b.trainer(linreg(i))
        }
    })
    .await
    .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    let mut params = Vec::new();
    for h in &net.handles[..wild] {
        params.push(h.parameters().await.unwrap());
    }
    net.shutdown().await;

    // Without drift control: the wild node's gradients are honest, so this
    // is what honest nodes reach if the wild models have no effect.
    let mut sim: Vec<LinearRegression> = (0..n).map(linreg).collect();
    let (expected, _) = simulate(&mut sim, &rule, rounds, 0, 1);
    for (i, events) in per_node[..wild].iter().enumerate() {
        assert_eq!(events.len(), rounds as usize, "node {i}");
        let got = spreads(events);
        assert_eq!(got.len(), (rounds / k) as usize, "node {i}");
        // Six identical honest models are kept, the wild one is dropped.
        assert!(got.values().all(|s| *s == 0.0), "node {i}: {got:?}");
    }
    for (i, p) in params.iter().enumerate() {
        assert_eq!(bits(p), bits(&expected[i]), "honest node {i}");
        assert!(p.iter().all(|x| x.abs() < 1e3), "honest node {i}: {p:?}");
    }
}
