//! Four Rampart nodes embedded in one program: each trains an MLP on its own
//! shard of the built-in synthetic data set, exchanges gradients with the
//! others over libp2p on 127.0.0.1 and aggregates them with a robust rule
//! (coordinate-wise trimmed mean, f = 1); no server. At the end each node's
//! model is evaluated on the held-out test set.
//!
//! ```text
//! cargo run --release -p rampart-examples --example four_nodes
//! ```

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rampart_gar::Rule;
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Partition, SyntheticConfig, partition,
};
use rampart_node::{Event, NodeConfig, NodeHandle};

const NODES: usize = 4;
const ROUNDS: u64 = 100;
const SEED: u64 = 42;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(SEED).with_sizes(4000, 1000));
    let split = kind.load(Path::new(""))?;
    let shards = partition(Partition::Iid, split.train.labels(), NODES, SEED)?;
    let model = ModelKind::Mlp { hidden: vec![32] };
    let network = || model.build(&kind.sample_shape(), kind.num_classes(), SEED);

    // Every member of the job knows every member's PeerId (the roster).
    let keys: Vec<Keypair> = (0..NODES).map(|_| Keypair::generate_ed25519()).collect();
    let roster: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();

    let mut handles = Vec::new();
    let mut events = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let data = split.train.subset(&shards[i])?;
        let learner = Learner::new(network()?, LearnerConfig::default(), data, SEED + i as u64)?;
        let config = NodeConfig::builder()
            .keypair(key.clone())
            .roster(roster.clone())
            .listen("/ip4/127.0.0.1/tcp/0".parse()?)
            .rule(Rule::TrimmedMean { f: 1 })
            .rounds(ROUNDS)
            .round_timeout(Duration::from_secs(5))
            .drift_period(10)
            .job_tag("four-nodes-example")
            .trainer(learner)
            .build()?;
        let (handle, mut rx) = NodeHandle::spawn(config)?;
        // The first event is the listen address (port 0 picks a free one).
        let addr = loop {
            if let Event::Listening { addr } = rx.recv().await? {
                break addr;
            }
        };
        handles.push(handle);
        events.push(rx);
        addrs.push(addr);
    }
    // Tell every node where the others listen; round 0 starts once each is
    // connected to the whole roster.
    for (i, h) in handles.iter().enumerate() {
        for (j, addr) in addrs.iter().enumerate() {
            if i != j {
                h.dial(roster[j], addr.clone()).await?;
            }
        }
    }

    for (i, rx) in events.iter_mut().enumerate() {
        let mut loss = None;
        loop {
            match rx.recv().await? {
                Event::RoundCompleted { loss: l, .. } => loss = l,
                Event::Finished { rounds } => {
                    println!("node {i}: finished {rounds} rounds, last mini-batch loss {loss:?}");
                    break;
                }
                Event::Failed { error } => return Err(error.into()),
                _ => {}
            }
        }
    }

    // Evaluate each node's final model on the test set.
    let mut evaluator = Learner::new(
        network()?,
        LearnerConfig::default(),
        split.train.subset(&shards[0])?,
        SEED,
    )?;
    for (i, h) in handles.iter().enumerate() {
        evaluator.set_parameters(&h.parameters().await?)?;
        let eval = evaluator.evaluate(&split.test)?;
        println!(
            "node {i} ({}): test accuracy {:.2}% on {} samples",
            h.peer_id(),
            100.0 * eval.accuracy,
            eval.samples
        );
    }
    for h in &handles {
        h.shutdown().await?;
    }
    Ok(())
}
