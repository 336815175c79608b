//! Learning for Rampart nodes: candle models, data sets, partitioning, flat
//! gradients, evaluation and checkpoints. Synchronous; no networking.
//!
//! # Design
//!
//! A Rampart node exchanges gradients as flat `Vec<f32>` and aggregates
//! them with a robust rule that knows nothing about models. This crate is
//! the bridge: a [`Learner`] samples a batch from its node's shard, returns
//! the flat gradient (with worker-side momentum and weight decay), and
//! applies the aggregated flat update back into the candle variables.
//!
//! **Determinism.** Honest nodes must end with bit-identical models, equal
//! to a single-process simulation. So everything is a function of seeds:
//! parameters are initialised by the crate's own generator (each variable
//! from a stream derived from the seed and its name, not candle's
//! unseedable CPU RNG), synthetic data, partitions and batch sampling use
//! the same generator ([`Rng`], xoshiro256**, whose state is checkpointed),
//! and the random distributions use only IEEE basic operations, never the
//! platform's `libm`. Candle's CPU kernels are deterministic for a given
//! machine and build (tests pin repeated gradients bit for bit); across
//! CPUs with different SIMD widths, matrix products may round differently.
//!
//! **Flat order.** Gradients, parameters, momentum and updates are the
//! model's variables sorted by name (byte-wise), each flattened row-major;
//! see [`Network`]. [`Network::layout`] lists names and shapes.
//!
//! **Models.** [`ModelKind`] names the built-in ones (logistic regression,
//! MLP, a small CNN); any candle model can be plugged in by implementing
//! [`Model`] and building it with [`Network::custom`].
//!
//! **Data.** [`DatasetKind`]: a built-in synthetic Gaussian-mixture task,
//! MNIST and Fashion-MNIST from IDX files (raw or gzip, checked against the
//! published SHA-256 of the decompressed files), CIFAR-10 binary batches.
//! Malformed files give a [`DataError`], never a panic, and headers are
//! checked against the file length before anything is allocated.
//! [`Partition`] splits the training set across nodes (IID or
//! Dirichlet(α) label skew). With the `download` feature, [`download`]
//! fetches MNIST / Fashion-MNIST over HTTP or HTTPS from a list of mirrors
//! (or a base URL of your own) and verifies every file before writing it.
//!
//! **Checkpoints** are safetensors files written via temp file + fsync +
//! rename and refused with a [`CheckpointError`] when corrupt or written
//! for another configuration.
//!
//! ```
//! use std::path::Path;
//! use rampart_learn::{partition, DatasetKind, Learner, LearnerConfig, ModelKind, Partition, SyntheticConfig};
//!
//! // A job: 4 nodes, synthetic data, IID shards.
//! let kind = DatasetKind::Synthetic(SyntheticConfig::new(3).with_sizes(4000, 500));
//! let split = kind.load(Path::new(""))?;
//! let shards = partition(Partition::Iid, split.train.labels(), 4, 3)?;
//! let mut nodes = Vec::new();
//! for (i, shard) in shards.iter().enumerate() {
//!     let net = ModelKind::Mlp { hidden: vec![32] }.build(&kind.sample_shape(), kind.num_classes(), 3)?;
//!     let data = split.train.subset(shard)?;
//!     nodes.push(Learner::new(net, LearnerConfig::default(), data, 100 + i as u64)?);
//! }
//! // One round of plain averaging (a robust rule would go here).
//! let grads: Vec<Vec<f32>> = nodes.iter_mut().map(|n| n.next_gradient()).collect::<Result<_, _>>()?;
//! let d = nodes[0].dim();
//! let avg: Vec<f32> = (0..d).map(|j| grads.iter().map(|g| g[j]).sum::<f32>() / 4.0).collect();
//! for n in &mut nodes {
//!     n.apply(&avg, 0.1)?;
//! }
//! // Same initial seed, same update: identical models.
//! assert_eq!(nodes[0].parameters()?, nodes[3].parameters()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod checkpoint;
mod data;
#[cfg(feature = "download")]
mod download;
mod error;
mod learner;
mod model;
mod partition;
mod rng;

pub use checkpoint::Checkpoint;
pub use data::{Dataset, DatasetKind, Split, SyntheticConfig, load};
#[cfg(feature = "download")]
pub use download::{
    DownloadError, DownloadEvent, FASHION_MNIST_MIRRORS, MNIST_MIRRORS, download, download_from,
    mirrors,
};
pub use error::{CheckpointError, CorruptKind, DataError, LearnError, PartitionError};
pub use learner::{Eval, Learner, LearnerConfig, LearnerConfigBuilder, Schedule, evaluate};
pub use model::{Model, ModelKind, Network};
pub use partition::{Partition, partition};
pub use rng::Rng;

/// Reads and checks a checkpoint file without applying it (e.g. to learn its
/// round before deciding to catch up); see [`Learner::load_checkpoint`].
pub fn read_checkpoint(path: &std::path::Path) -> Result<Checkpoint, CheckpointError> {
    checkpoint::load(path)
}
