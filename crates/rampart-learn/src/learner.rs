//! The worker side of training: sample a batch from the node's shard,
//! compute the flat gradient (with momentum and weight decay), apply the
//! aggregated update, evaluate.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint};
use crate::data::Dataset;
use crate::error::{CheckpointError, LearnError};
use crate::model::Network;
use crate::rng::Rng;

/// Learning-rate schedule, a function of the number of updates applied so
/// far (`step`, starting at 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Schedule {
    /// `lr` at every step.
    Constant {
        /// The learning rate.
        lr: f32,
    },
    /// `lr · gamma^(step / every)`.
    Step {
        /// Initial learning rate.
        lr: f32,
        /// Factor applied every `every` steps.
        gamma: f32,
        /// Steps between decays (positive).
        every: u64,
    },
    /// Cosine annealing from `lr` to `min_lr` over `total` steps, then
    /// `min_lr`.
    Cosine {
        /// Initial learning rate.
        lr: f32,
        /// Final learning rate.
        min_lr: f32,
        /// Length of the decay (positive).
        total: u64,
    },
}

impl Schedule {
    /// The learning rate at `step`. Computed in `f64` from basic
    /// operations only (the cosine by a short series), so every node gets
    /// the same bits.
    pub fn lr(&self, step: u64) -> f32 {
        match *self {
            Self::Constant { lr } => lr,
            Self::Step { lr, gamma, every } => {
                let k = step / every.max(1);
                let mut f = 1.0f64;
                let mut base = f64::from(gamma);
                let mut e = k;
                while e > 0 {
                    if e & 1 == 1 {
                        f *= base;
                    }
                    base *= base;
                    e >>= 1;
                    if f == 0.0 {
                        break;
                    }
                }
                (f64::from(lr) * f) as f32
            }
            Self::Cosine { lr, min_lr, total } => {
                let t = (step.min(total) as f64) / (total.max(1) as f64);
                let c = cos_pi(t);
                (f64::from(min_lr) + 0.5 * f64::from(lr - min_lr) * (1.0 + c)) as f32
            }
        }
    }

    fn validate(&self) -> Result<(), LearnError> {
        let bad = |field, requirement| Err(LearnError::InvalidConfig { field, requirement });
        let ok_lr = |x: f32| x.is_finite() && x >= 0.0;
        match *self {
            Self::Constant { lr } if !ok_lr(lr) => bad("lr", "finite and non-negative"),
            Self::Step { lr, gamma, every } => {
                if !ok_lr(lr) || !ok_lr(gamma) {
                    bad("lr/gamma", "finite and non-negative")
                } else if every == 0 {
                    bad("every", "positive")
                } else {
                    Ok(())
                }
            }
            Self::Cosine { lr, min_lr, total } => {
                if !ok_lr(lr) || !ok_lr(min_lr) {
                    bad("lr/min_lr", "finite and non-negative")
                } else if total == 0 {
                    bad("total", "positive")
                } else {
                    Ok(())
                }
            }
            Self::Constant { .. } => Ok(()),
        }
    }
}

/// cos(π t) for t in [0, 1] from a Taylor series (basic operations only).
fn cos_pi(t: f64) -> f64 {
    // Reduce to [0, 1/2] by symmetry: cos(π t) = -cos(π (1 - t)).
    let (x, sign) = if t > 0.5 {
        (std::f64::consts::PI * (1.0 - t), -1.0)
    } else {
        (std::f64::consts::PI * t, 1.0)
    };
    let x2 = x * x;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=12 {
        term *= -x2 / f64::from((2 * k - 1) * (2 * k));
        sum += term;
    }
    sign * sum
}

/// Worker-side optimiser settings and batch size.
///
/// The gradient a node sends at step t is
/// `m_t = β · m_{t−1} + (1 − dampening) · (g_t + weight_decay · w_t)` with
/// `m_0 = 0` (with β = 0: `g_t + weight_decay · w_t`), where `g_t` is the
/// mean-loss gradient on a fresh batch of the node's shard. With
/// `dampening = 0` this is PyTorch's SGD momentum; `dampening = β` gives
/// the exponential moving average used in the Byzantine-robustness
/// literature (worker momentum, Karimireddy et al. 2021).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LearnerConfigRaw", into = "LearnerConfigRaw")]
pub struct LearnerConfig {
    /// Samples per gradient.
    batch_size: usize,
    /// Momentum coefficient β in [0, 1).
    momentum: f32,
    /// Dampening in [0, 1].
    dampening: f32,
    /// L2 weight decay added to the gradient (non-negative).
    weight_decay: f32,
    /// Learning rate as a function of the step.
    schedule: Schedule,
}

#[derive(Serialize, Deserialize)]
struct LearnerConfigRaw {
    batch_size: usize,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    schedule: Schedule,
}

impl From<LearnerConfig> for LearnerConfigRaw {
    fn from(c: LearnerConfig) -> Self {
        Self {
            batch_size: c.batch_size,
            momentum: c.momentum,
            dampening: c.dampening,
            weight_decay: c.weight_decay,
            schedule: c.schedule,
        }
    }
}

impl TryFrom<LearnerConfigRaw> for LearnerConfig {
    type Error = LearnError;
    fn try_from(r: LearnerConfigRaw) -> Result<Self, LearnError> {
        LearnerConfigBuilder {
            config: LearnerConfig {
                batch_size: r.batch_size,
                momentum: r.momentum,
                dampening: r.dampening,
                weight_decay: r.weight_decay,
                schedule: r.schedule,
            },
        }
        .build()
    }
}

impl Default for LearnerConfig {
    /// Batch 32, no momentum, no weight decay, constant lr 0.1.
    fn default() -> Self {
        Self {
            batch_size: 32,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            schedule: Schedule::Constant { lr: 0.1 },
        }
    }
}

impl LearnerConfig {
    /// A builder starting from [`LearnerConfig::default`].
    pub fn builder() -> LearnerConfigBuilder {
        LearnerConfigBuilder {
            config: Self::default(),
        }
    }

    /// Samples per gradient.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Momentum coefficient β.
    pub fn momentum(&self) -> f32 {
        self.momentum
    }

    /// Momentum dampening.
    pub fn dampening(&self) -> f32 {
        self.dampening
    }

    /// Weight decay.
    pub fn weight_decay(&self) -> f32 {
        self.weight_decay
    }

    /// Learning-rate schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }
}

/// Builds a [`LearnerConfig`], checking every field in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct LearnerConfigBuilder {
    config: LearnerConfig,
}

impl LearnerConfigBuilder {
    /// Samples per gradient (positive).
    pub fn batch_size(mut self, b: usize) -> Self {
        self.config.batch_size = b;
        self
    }

    /// Momentum coefficient β in [0, 1).
    pub fn momentum(mut self, beta: f32) -> Self {
        self.config.momentum = beta;
        self
    }

    /// Dampening in [0, 1] (see [`LearnerConfig`]).
    pub fn dampening(mut self, d: f32) -> Self {
        self.config.dampening = d;
        self
    }

    /// Weight decay (non-negative).
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.config.weight_decay = wd;
        self
    }

    /// Learning-rate schedule.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.config.schedule = s;
        self
    }

    /// Checks the fields and returns the configuration.
    pub fn build(self) -> Result<LearnerConfig, LearnError> {
        let c = self.config;
        let bad = |field, requirement| Err(LearnError::InvalidConfig { field, requirement });
        if c.batch_size == 0 {
            return bad("batch_size", "positive");
        }
        if !(0.0..1.0).contains(&c.momentum) {
            return bad("momentum", "in [0, 1)");
        }
        if !(0.0..=1.0).contains(&c.dampening) {
            return bad("dampening", "in [0, 1]");
        }
        if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
            return bad("weight_decay", "finite and non-negative");
        }
        c.schedule.validate()?;
        Ok(c)
    }
}

/// Loss and accuracy on a data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Mean loss per sample.
    pub loss: f64,
    /// Fraction of samples whose largest logit is the label.
    pub accuracy: f64,
    /// Number of samples evaluated.
    pub samples: usize,
}

/// Samples per forward pass in [`Learner::evaluate`]: bounds memory
/// (MNIST MLP: ~1 MB of activations per 1,000 samples).
const EVAL_BATCH: usize = 1000;

/// One node's training state: the model, the optimiser state, its shard of
/// the data and its batch sampler.
///
/// ```
/// use std::path::Path;
/// use rampart_learn::{DatasetKind, Learner, LearnerConfig, ModelKind, Schedule, SyntheticConfig};
///
/// let kind = DatasetKind::Synthetic(SyntheticConfig::new(1).with_sizes(2000, 500));
/// let split = kind.load(Path::new(""))?;
/// let net = ModelKind::Mlp { hidden: vec![32] }.build(&kind.sample_shape(), kind.num_classes(), 7)?;
/// let config = LearnerConfig::builder()
///     .batch_size(32)
///     .momentum(0.9)
///     .schedule(Schedule::Constant { lr: 0.05 })
///     .build()?;
/// let mut learner = Learner::new(net, config, split.train, 7)?;
/// let before = learner.evaluate(&split.test)?;
/// for _ in 0..100 {
///     let g = learner.next_gradient()?;   // what the node would send
///     learner.apply_scheduled(&g)?;       // here: no aggregation
/// }
/// let after = learner.evaluate(&split.test)?;
/// assert!(after.accuracy > before.accuracy);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Learner {
    /// The model and its variables.
    network: Network,
    /// Batch size, momentum, weight decay, schedule.
    config: LearnerConfig,
    /// This node's training samples.
    shard: Dataset,
    /// Batch sampler; saved in checkpoints so a restart resumes the stream.
    rng: Rng,
    /// Momentum buffer `m_t` (empty when β = 0).
    momentum: Vec<f32>,
    /// Updates applied so far: the schedule's clock.
    step: u64,
    /// Mean batch loss of the last gradient.
    last_loss: Option<f32>,
}

impl Learner {
    /// A learner for `network` on `shard`, sampling batches from a stream
    /// seeded by `seed` (give each node its own, e.g. derived from the job
    /// seed and the node index).
    pub fn new(
        network: Network,
        config: LearnerConfig,
        shard: Dataset,
        seed: u64,
    ) -> Result<Self, LearnError> {
        if shard.is_empty() {
            return Err(LearnError::EmptyShard);
        }
        if shard.sample_shape() != network.sample_shape() {
            return Err(LearnError::DataShape {
                expected: network.sample_shape().to_vec(),
                found: shard.sample_shape().to_vec(),
            });
        }
        let momentum = if config.momentum > 0.0 {
            vec![0.0; network.dim()]
        } else {
            Vec::new()
        };
        Ok(Self {
            network,
            config,
            shard,
            rng: Rng::derived(seed, b"learner/batches"),
            momentum,
            step: 0,
            last_loss: None,
        })
    }

    /// The flat parameter count `d`.
    pub fn dim(&self) -> usize {
        self.network.dim()
    }

    /// The model.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// This node's training samples.
    pub fn shard(&self) -> &Dataset {
        &self.shard
    }

    /// Updates applied so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The learning rate the schedule gives for the next update.
    pub fn lr(&self) -> f32 {
        self.config.schedule.lr(self.step)
    }

    /// Mean batch loss of the last [`next_gradient`](Self::next_gradient).
    pub fn last_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// The momentum buffer in flat order (empty without momentum).
    pub fn momentum(&self) -> &[f32] {
        &self.momentum
    }

    /// Indices (into the shard) of the next batch: `batch_size` distinct
    /// samples drawn uniformly (the whole shard, in order, if it is not
    /// larger than the batch). Advances the sampler.
    pub fn sample_batch(&mut self) -> Vec<usize> {
        let n = self.shard.len();
        let b = self.config.batch_size;
        if b >= n {
            return (0..n).collect();
        }
        let mut chosen = Vec::with_capacity(b);
        if b * 4 <= n {
            // Rejection: duplicates are rare.
            while chosen.len() < b {
                let i = self.rng.index(n);
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
        } else {
            // Partial Fisher–Yates.
            let mut idx: Vec<usize> = (0..n).collect();
            for k in 0..b {
                let j = k + self.rng.index(n - k);
                idx.swap(k, j);
            }
            chosen.extend_from_slice(&idx[..b]);
        }
        chosen
    }

    /// Samples a batch from the shard, computes the gradient at the current
    /// parameters, adds weight decay, folds it into the momentum buffer and
    /// returns what the node sends: the momentum (or the decayed gradient
    /// when β = 0), in flat order.
    pub fn next_gradient(&mut self) -> Result<Vec<f32>, LearnError> {
        let batch = self.sample_batch();
        let (xs, ys) = self.shard.batch(&batch)?;
        let (loss, mut g) = self.network.gradient(&xs, &ys)?;
        self.last_loss = Some(loss);
        let wd = self.config.weight_decay;
        if wd != 0.0 {
            let w = self.network.parameters()?;
            for (gi, wi) in g.iter_mut().zip(&w) {
                *gi += wd * *wi;
            }
        }
        if self.momentum.is_empty() {
            return Ok(g);
        }
        let beta = self.config.momentum;
        let keep = 1.0 - self.config.dampening;
        for (m, gi) in self.momentum.iter_mut().zip(&g) {
            *m = beta * *m + keep * *gi;
        }
        Ok(self.momentum.clone())
    }

    /// `w ← w − lr · update` and advances the step counter.
    pub fn apply(&mut self, update: &[f32], lr: f32) -> Result<(), LearnError> {
        self.network.apply(update, lr)?;
        self.step += 1;
        Ok(())
    }

    /// [`apply`](Self::apply) with the schedule's learning rate; returns
    /// the rate used.
    pub fn apply_scheduled(&mut self, update: &[f32]) -> Result<f32, LearnError> {
        let lr = self.lr();
        self.apply(update, lr)?;
        Ok(lr)
    }

    /// All parameters in flat order.
    pub fn parameters(&self) -> Result<Vec<f32>, LearnError> {
        self.network.parameters()
    }

    /// Replaces all parameters (drift control, catch-up).
    pub fn set_parameters(&mut self, flat: &[f32]) -> Result<(), LearnError> {
        self.network.set_parameters(flat)
    }

    /// Mean loss and accuracy over `data`, in batches of 1,000 samples.
    pub fn evaluate(&self, data: &Dataset) -> Result<Eval, LearnError> {
        evaluate(&self.network, data)
    }

    /// SHA-256 of the configuration that a checkpoint must match: the
    /// learner's settings and model layout, followed by `job` (e.g. the
    /// roster hash; empty when there is none).
    pub fn config_hash(&self, job: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"rampart-learn/config/v1\0");
        // serde_json of our own types cannot fail.
        h.update(serde_json::to_vec(&self.config).unwrap_or_default());
        for (name, shape) in self.network.layout() {
            h.update(name.as_bytes());
            h.update([0]);
            for d in shape {
                h.update((d as u64).to_le_bytes());
            }
        }
        h.update((job.len() as u64).to_le_bytes());
        h.update(job);
        h.finalize().into()
    }

    /// Writes a checkpoint (parameters, momentum, round, step, sampler
    /// state, `config_hash`) atomically: temporary file in the same
    /// directory, fsync, rename, fsync of the directory.
    pub fn save_checkpoint(
        &self,
        path: &Path,
        round: u64,
        config_hash: &[u8; 32],
    ) -> Result<(), CheckpointError> {
        let ckpt = Checkpoint {
            round,
            step: self.step,
            rng: self.rng.state(),
            config_hash: *config_hash,
            parameters: self.network.parameters()?,
            momentum: self.momentum.clone(),
        };
        checkpoint::save(path, &ckpt)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint)
    /// for the same `config_hash` and model size; returns its round. On
    /// error the learner is unchanged.
    pub fn load_checkpoint(
        &mut self,
        path: &Path,
        config_hash: &[u8; 32],
    ) -> Result<u64, CheckpointError> {
        let ckpt = checkpoint::load(path)?;
        if &ckpt.config_hash != config_hash {
            return Err(CheckpointError::ConfigMismatch {
                path: path.to_path_buf(),
                expected: hex(config_hash),
                found: hex(&ckpt.config_hash),
            });
        }
        let dim = self.dim();
        let momentum_ok =
            ckpt.momentum.len() == dim || (ckpt.momentum.is_empty() && self.momentum.is_empty());
        if ckpt.parameters.len() != dim || !momentum_ok {
            return Err(CheckpointError::DimMismatch {
                path: path.to_path_buf(),
                expected: dim,
                found: if ckpt.parameters.len() != dim {
                    ckpt.parameters.len()
                } else {
                    ckpt.momentum.len()
                },
            });
        }
        self.network.set_parameters(&ckpt.parameters)?;
        self.momentum = ckpt.momentum;
        self.step = ckpt.step;
        self.rng = Rng::from_state(ckpt.rng);
        self.last_loss = None;
        Ok(ckpt.round)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Mean loss and accuracy of `network` over `data`, in batches of 1,000
/// samples (memory stays bounded whatever the size of `data`).
pub fn evaluate(network: &Network, data: &Dataset) -> Result<Eval, LearnError> {
    if data.is_empty() {
        return Err(LearnError::EmptyEvalSet);
    }
    if data.sample_shape() != network.sample_shape() {
        return Err(LearnError::DataShape {
            expected: network.sample_shape().to_vec(),
            found: data.sample_shape().to_vec(),
        });
    }
    let mut loss_sum = 0.0f64;
    let mut correct = 0usize;
    let mut start = 0;
    while start < data.len() {
        let end = (start + EVAL_BATCH).min(data.len());
        let (xs, ys) = data.range_batch(start..end)?;
        let logits = network.forward(&xs)?;
        let loss = network.loss_of(&logits, &ys)?;
        loss_sum += f64::from(loss) * (end - start) as f64;
        let pred = logits.argmax(1)?.to_vec1::<u32>()?;
        correct += pred
            .iter()
            .zip(&data.labels()[start..end])
            .filter(|(p, l)| p == l)
            .count();
        start = end;
    }
    Ok(Eval {
        loss: loss_sum / data.len() as f64,
        accuracy: correct as f64 / data.len() as f64,
        samples: data.len(),
    })
}
