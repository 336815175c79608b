//! Rampart nodes aggregating with a rule defined in this program, against a
//! Byzantine member.
//!
//! The rule is a norm-clipped mean: each round, every input longer (in L2)
//! than the median input length is scaled down to that length, then the
//! inputs are averaged. With at most f < n/2 Byzantine inputs the median
//! length is at most some honest input's length, so no single input can
//! move the mean by more than an honest one can. It implements
//! [`rampart_gar::Aggregate`] and goes to the nodes with
//! `NodeConfigBuilder::custom_rule`, which runs it like a built-in rule:
//! off the async executor, on the inputs sorted by sender, with a quorum of
//! n − f after a round's timeout.
//!
//! Five nodes train an MLP on the synthetic data set (lr 0.05, momentum
//! 0.9); one of them sends Gaussian noise of standard deviation 100 instead
//! of its gradient. The job runs three times: the plain average without the
//! attacker (the reference), the plain average under attack, and the
//! clipped mean under attack.
//!
//! ```text
//! cargo run --release -p rampart-examples --example custom_rule
//! ```

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use rampart_examples::{LocalNet, learners};
use rampart_gar::{Aggregate, Aggregation, GarError, Rule};
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Schedule, Split, SyntheticConfig,
};
use rampart_node::{NodeConfigBuilder, ValueAttack};

const NODES: usize = 5;
const BYZANTINE: usize = 4;
const F: usize = 1;
const ROUNDS: u64 = 200;
const SEED: u64 = 11;

/// Inputs longer than the median length are scaled down to it; then the
/// mean. Deterministic: lengths and sums in input order, in f64.
struct ClippedMean {
    f: usize,
}

impl ClippedMean {
    const NAME: &'static str = "clipped-mean";
}

impl Aggregate<f32> for ClippedMean {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn check(&self, n: usize) -> Result<(), GarError> {
        if n > 2 * self.f {
            Ok(())
        } else {
            Err(GarError::Precondition {
                rule: Self::NAME,
                n,
                f: self.f,
                m: None,
                bound: "n >= 2f + 1",
            })
        }
    }

    fn aggregate(&self, inputs: &[&[f32]]) -> Result<Aggregation<f32>, GarError> {
        let d = rampart_gar::validate(inputs)?;
        self.check(inputs.len())?;
        let norms: Vec<f64> = inputs
            .iter()
            .map(|x| {
                x.iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let mut sorted = norms.clone();
        sorted.sort_by(f64::total_cmp);
        // The lower median: an honest length or below when f < n / 2.
        let clip = sorted[(sorted.len() - 1) / 2];
        let mut sum = vec![0.0f64; d];
        for (x, norm) in inputs.iter().zip(&norms) {
            let scale = if *norm > clip { clip / norm } else { 1.0 };
            for (s, v) in sum.iter_mut().zip(x.iter()) {
                *s += scale * f64::from(*v);
            }
        }
        let n = inputs.len() as f64;
        Ok(Aggregation::new(
            sum.iter().map(|s| (s / n) as f32).collect(),
        ))
    }
}

/// Runs the job with `rule` set on every node's builder, node
/// [`BYZANTINE`] attacking when `attacked`; returns the honest nodes' test
/// accuracies.
async fn run(
    split: &Split,
    kind: &DatasetKind,
    attacked: bool,
    rule: impl Fn(NodeConfigBuilder) -> NodeConfigBuilder,
) -> Result<Vec<f64>, Box<dyn Error>> {
    let model = ModelKind::Mlp { hidden: vec![32] };
    let network = || model.build(&kind.sample_shape(), kind.num_classes(), SEED);
    let config = LearnerConfig::builder()
        .schedule(Schedule::Constant { lr: 0.05 })
        .momentum(0.9)
        .build()?;
    let mut learners = learners(&split.train, NODES, SEED, &config, network)?.into_iter();
    let mut net = LocalNet::start(NODES, |i, b| {
        let learner = learners.next().expect("one learner per node");
        let b = rule(b)
            .rounds(ROUNDS)
            .round_timeout(Duration::from_secs(5))
            .job_tag("custom-rule-example")
            .trainer(learner);
        if attacked && i == BYZANTINE {
            b.value_attack(ValueAttack::new(rampart_attack::Attack::Gaussian {
                mu: 0.0,
                sigma: 100.0,
            }))
        } else {
            b
        }
    })
    .await?;
    let honest: Vec<usize> = (0..NODES)
        .filter(|&i| !attacked || i != BYZANTINE)
        .collect();
    net.finish(honest.iter().copied()).await?;
    let mut evaluator = Learner::new(network()?, config, split.test.clone(), SEED)?;
    let mut accuracies = Vec::new();
    for &i in &honest {
        accuracies.push(net.accuracy(i, &mut evaluator, &split.test).await?);
    }
    net.shutdown().await;
    Ok(accuracies)
}

fn show(label: &str, accuracies: &[f64]) {
    let shown: Vec<String> = accuracies
        .iter()
        .map(|a| format!("{:.2}%", 100.0 * a))
        .collect();
    println!("{label}: honest test accuracy {}", shown.join(", "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(SEED).with_sizes(4000, 1000));
    let split = kind.load(Path::new(""))?;
    println!(
        "{NODES} nodes, {ROUNDS} rounds; under attack node {BYZANTINE} sends N(0, 100²) noise"
    );
    let reference = run(&split, &kind, false, |b| b.rule(Rule::Average)).await?;
    show("average, no attack        ", &reference);
    let plain = run(&split, &kind, true, |b| b.rule(Rule::Average)).await?;
    show("average, under attack     ", &plain);
    let clipped = run(&split, &kind, true, |b| {
        b.custom_rule(ClippedMean { f: F }, F)
    })
    .await?;
    show("clipped mean, under attack", &clipped);
    Ok(())
}
