//! Rampart nodes training a model defined in this program.
//!
//! The model is an MLP with a residual block (`h = relu(W₁x)`,
//! `h' = relu(W₂h) + h`, logits `W₃h'`), written against candle's layers
//! and the [`Model`] trait. [`Network::custom`] creates its variables from a
//! seed, so every node starts from the same bits, and fixes the flat order
//! in which gradients travel. Five nodes train it on shards of the built-in
//! synthetic data set and aggregate with multi-Krum (f = 1); no server. At
//! the end each node's model is evaluated on the held-out test set, and the
//! honest nodes' models are checked to be bit-identical.
//!
//! ```text
//! cargo run --release -p rampart-examples --example custom_model
//! ```

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use candle_core::{Module, Tensor};
use candle_nn::Linear;
use rampart_examples::{LocalNet, learners};
use rampart_gar::Rule;
use rampart_learn::{DatasetKind, Learner, LearnerConfig, Model, Network, SyntheticConfig};

const NODES: usize = 5;
const ROUNDS: u64 = 150;
const SEED: u64 = 7;
const HIDDEN: usize = 48;

/// The model of this program: its layers only describe the computation;
/// [`Network`] owns their variables.
struct ResidualMlp {
    input: Linear,
    block: Linear,
    output: Linear,
}

impl Model for ResidualMlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.input.forward(&xs.flatten_from(1)?)?.relu()?;
        let h = (self.block.forward(&h)?.relu()? + &h)?;
        self.output.forward(&h)
    }
    // The loss is the trait's default, the mean cross-entropy.
}

/// The network every node trains: the same seed, the same initial bits.
fn network(inputs: usize, classes: usize) -> Result<Network, rampart_learn::LearnError> {
    Network::custom(SEED, &[inputs], |vb| {
        Ok(ResidualMlp {
            input: candle_nn::linear(inputs, HIDDEN, vb.pp("input"))?,
            block: candle_nn::linear(HIDDEN, HIDDEN, vb.pp("block"))?,
            output: candle_nn::linear(HIDDEN, classes, vb.pp("output"))?,
        })
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(SEED).with_sizes(5000, 1000));
    let split = kind.load(Path::new(""))?;
    let inputs = kind.sample_shape().iter().product();
    let classes = kind.num_classes();
    let layout = network(inputs, classes)?.layout();
    println!("model: {layout:?}");

    let config = LearnerConfig::builder().momentum(0.9).build()?;
    let mut learners = learners(&split.train, NODES, SEED, &config, || {
        network(inputs, classes)
    })?
    .into_iter();
    let mut net = LocalNet::start(NODES, |_, b| {
        b.rule(Rule::MultiKrum { f: 1, m: None })
            .rounds(ROUNDS)
            .round_timeout(Duration::from_secs(5))
            .job_tag("custom-model-example")
            .trainer(learners.next().expect("one learner per node"))
    })
    .await?;
    let losses = net.finish(0..NODES).await?;

    let mut evaluator = Learner::new(network(inputs, classes)?, config, split.test.clone(), SEED)?;
    let mut models = Vec::new();
    for (i, loss) in losses.iter().enumerate() {
        let accuracy = net.accuracy(i, &mut evaluator, &split.test).await?;
        println!(
            "node {i}: {ROUNDS} rounds, last mini-batch loss {}, test accuracy {:.2}%",
            loss.map_or("-".to_string(), |l| format!("{l:.4}")),
            100.0 * accuracy
        );
        models.push(net.handles[i].parameters().await?);
    }
    let identical = models.windows(2).all(|w| w[0] == w[1]);
    println!("models identical on every node: {identical}");
    net.shutdown().await;
    if !identical {
        return Err("the honest nodes' models differ".into());
    }
    Ok(())
}
