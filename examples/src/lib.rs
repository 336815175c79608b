//! Programs that embed Rampart nodes, and the little they share.
//!
//! ```text
//! cargo run --release -p rampart-examples --example four_nodes    # the embedding, spelled out
//! cargo run --release -p rampart-examples --example custom_model  # a candle model of your own
//! cargo run --release -p rampart-examples --example custom_rule   # an aggregation rule of your own
//! ```
//!
//! * `four_nodes` writes out every step of embedding: keys, roster,
//!   [`NodeConfig::builder`], [`NodeHandle::spawn`], dialling, the event
//!   stream and evaluating the final models.
//! * `custom_model` trains a network defined in the program (a
//!   [`rampart_learn::Model`] built with [`rampart_learn::Network::custom`]).
//! * `custom_rule` aggregates with a rule defined in the program (a
//!   [`rampart_gar::Aggregate`] given to
//!   [`NodeConfigBuilder::custom_rule`]) against a Byzantine member.
//!
//! [`LocalNet`] is `four_nodes`' wiring, packaged so that the other two
//! examples show only what they are about.
#![deny(missing_docs)]

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rampart_learn::{
    DataError, Dataset, LearnError, Learner, LearnerConfig, Network, Partition, partition,
};
use rampart_node::{ConfigError, Event, NodeConfig, NodeConfigBuilder, NodeError, NodeHandle};
use tokio::sync::broadcast;

/// Why an example stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// A node's configuration was refused.
    #[error("node {node}: {source}")]
    Config {
        /// The node's index.
        node: usize,
        /// What was wrong.
        #[source]
        source: ConfigError,
    },
    /// A node could not start, or stopped answering.
    #[error("node {node}: {source}")]
    Node {
        /// The node's index.
        node: usize,
        /// What went wrong.
        #[source]
        source: NodeError,
    },
    /// A node reported `Failed`.
    #[error("node {node} failed: {error}")]
    Failed {
        /// The node's index.
        node: usize,
        /// The node's error, as text.
        error: String,
    },
    /// A node's event stream ended or fell behind before it finished.
    #[error("node {node}: event stream: {source}")]
    Events {
        /// The node's index.
        node: usize,
        /// The stream's error.
        #[source]
        source: broadcast::error::RecvError,
    },
    /// Building a model or a learner failed.
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// Splitting the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Partitioning the data failed.
    #[error(transparent)]
    Partition(#[from] rampart_learn::PartitionError),
}

/// One learner per node: the training set cut into `nodes` IID shards
/// (from `seed`), node i's learner training `network()` on shard i and
/// drawing its batches from seed `seed + i`. Every node gets its own copy
/// of the same initial network.
pub fn learners(
    train: &Dataset,
    nodes: usize,
    seed: u64,
    config: &LearnerConfig,
    network: impl Fn() -> Result<Network, LearnError>,
) -> Result<Vec<Learner>, ExampleError> {
    let shards = partition(Partition::Iid, train.labels(), nodes, seed)?;
    let mut learners = Vec::with_capacity(nodes);
    for (i, shard) in shards.iter().enumerate() {
        let data = train.subset(shard)?;
        learners.push(Learner::new(
            network()?,
            config.clone(),
            data,
            seed + i as u64,
        )?);
    }
    Ok(learners)
}

/// Nodes running in this process, on 127.0.0.1, each connected to all the
/// others.
pub struct LocalNet {
    /// The handles, in index order.
    pub handles: Vec<NodeHandle>,
    events: Vec<broadcast::Receiver<Event>>,
}

impl LocalNet {
    /// Starts `n` nodes. Each gets a fresh Ed25519 key, the roster of all
    /// `n` and a listen address on a free port of 127.0.0.1;
    /// `configure(i, builder)` adds the rest of node i's configuration
    /// (rule, trainer, rounds, …). Once every node listens, each dials every
    /// other; round 0 starts when a node is connected to the whole roster.
    pub async fn start(
        n: usize,
        mut configure: impl FnMut(usize, NodeConfigBuilder) -> NodeConfigBuilder,
    ) -> Result<Self, ExampleError> {
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate_ed25519()).collect();
        let roster: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let listen: Multiaddr = Multiaddr::empty()
            .with(libp2p::multiaddr::Protocol::Ip4(
                std::net::Ipv4Addr::LOCALHOST,
            ))
            .with(libp2p::multiaddr::Protocol::Tcp(0));
        let mut handles = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for (node, key) in keys.into_iter().enumerate() {
            let builder = NodeConfig::builder()
                .keypair(key)
                .roster(roster.clone())
                .listen(listen.clone());
            let config = configure(node, builder)
                .build()
                .map_err(|source| ExampleError::Config { node, source })?;
            let (handle, mut rx) =
                NodeHandle::spawn(config).map_err(|source| ExampleError::Node { node, source })?;
            // The first events include the address the node listens on.
            let addr = loop {
                match rx.recv().await {
                    Ok(Event::Listening { addr }) => break addr,
                    Ok(Event::Failed { error }) => {
                        return Err(ExampleError::Failed { node, error });
                    }
                    Ok(_) => {}
                    Err(source) => return Err(ExampleError::Events { node, source }),
                }
            };
            handles.push(handle);
            events.push(rx);
            addrs.push(addr);
        }
        for (node, h) in handles.iter().enumerate() {
            for (j, addr) in addrs.iter().enumerate() {
                if j != node {
                    h.dial(roster[j], addr.clone())
                        .await
                        .map_err(|source| ExampleError::Node { node, source })?;
                }
            }
        }
        Ok(Self { handles, events })
    }

    /// Waits until the nodes in `nodes` report `Finished` (the others, e.g.
    /// Byzantine ones, are not waited for); returns each one's last
    /// mini-batch loss.
    pub async fn finish(
        &mut self,
        nodes: impl IntoIterator<Item = usize>,
    ) -> Result<Vec<Option<f32>>, ExampleError> {
        let mut losses = Vec::new();
        for node in nodes {
            let mut loss = None;
            loop {
                match self.events[node].recv().await {
                    Ok(Event::RoundCompleted { loss: l, .. }) => loss = l,
                    Ok(Event::Finished { .. }) => break,
                    Ok(Event::Failed { error }) => {
                        return Err(ExampleError::Failed { node, error });
                    }
                    Ok(_) => {}
                    Err(source) => return Err(ExampleError::Events { node, source }),
                }
            }
            losses.push(loss);
        }
        Ok(losses)
    }

    /// Test accuracy (a fraction) of node `node`'s current model:
    /// `evaluator` is a learner of the same network, whose parameters are
    /// replaced by the node's.
    pub async fn accuracy(
        &self,
        node: usize,
        evaluator: &mut Learner,
        test: &Dataset,
    ) -> Result<f64, ExampleError> {
        let params = self.handles[node]
            .parameters()
            .await
            .map_err(|source| ExampleError::Node { node, source })?;
        evaluator.set_parameters(&params)?;
        Ok(evaluator.evaluate(test)?.accuracy)
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for h in &self.handles {
            // A node that already stopped has nothing left to shut down.
            let _ = h.shutdown().await;
        }
    }
}
