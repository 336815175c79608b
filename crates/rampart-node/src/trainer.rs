//! The model side of a node, as the node sees it: a [`Trainer`].
//!
//! The node never touches tensors. It asks its trainer for the round's flat
//! gradient, hands it the aggregate, and reads or writes the flat parameter
//! vector (drift control, catch-up, tests). The trainer runs on a dedicated
//! thread, so its methods may take as long as they need.

use std::error::Error as StdError;
use std::path::Path;

use crate::wire::JobId;

/// SHA-256 over a test-trainer checkpoint file's body (the last 32 bytes of
/// the file).
#[cfg(any(test, feature = "test-utils"))]
fn checkpoint_digest(body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(body).into()
}

/// An error raised by a [`Trainer`] (boxed: trainers wrap their own errors).
#[derive(Debug, thiserror::Error)]
#[error("trainer: {source}")]
pub struct TrainerError {
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl TrainerError {
    /// Wraps any error.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// One step of local training, as the node drives it.
///
/// Everything must be a deterministic function of the trainer's state and the
/// calls made: honest nodes that aggregate the same inputs must end with the
/// same bits.
pub trait Trainer: Send + 'static {
    /// Number of parameters (the gradient dimension).
    fn dim(&self) -> usize;

    /// The flat gradient for `round` at the current parameters, with the
    /// mini-batch loss when the trainer knows it.
    fn gradient(&mut self, round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError>;

    /// Applies the aggregated update of `round` (the trainer owns the
    /// learning-rate schedule).
    fn apply(&mut self, update: &[f32], round: u64) -> Result<(), TrainerError>;

    /// The flat parameters.
    fn parameters(&self) -> Result<Vec<f32>, TrainerError>;

    /// The flat parameters written into `out` (its contents replaced), so
    /// that a caller keeping a copy every round can reuse one buffer: the
    /// node keeps the parameters after each round to answer state requests.
    /// The default calls [`Trainer::parameters`]; a trainer that holds its
    /// parameters flat can copy them into `out` without allocating.
    fn parameters_into(&self, out: &mut Vec<f32>) -> Result<(), TrainerError> {
        *out = self.parameters()?;
        Ok(())
    }

    /// Replaces the flat parameters.
    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError>;

    /// Writes, atomically (temporary file, fsync, rename), everything needed
    /// to resume after `rounds_done` rounds of job `job`. The default refuses:
    /// a node with a checkpoint directory needs a trainer that overrides it.
    fn save_checkpoint(
        &self,
        path: &Path,
        rounds_done: u64,
        job: &JobId,
    ) -> Result<(), TrainerError> {
        let _ = (path, rounds_done, job);
        Err(TrainerError::new(
            "this trainer does not support checkpoints",
        ))
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for the
    /// same job; returns its `rounds_done`. On error the trainer is unchanged.
    fn load_checkpoint(&mut self, path: &Path, job: &JobId) -> Result<u64, TrainerError> {
        let _ = (path, job);
        Err(TrainerError::new(
            "this trainer does not support checkpoints",
        ))
    }
}

impl<T: Trainer + ?Sized> Trainer for Box<T> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn gradient(&mut self, round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        (**self).gradient(round)
    }
    fn apply(&mut self, update: &[f32], round: u64) -> Result<(), TrainerError> {
        (**self).apply(update, round)
    }
    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        (**self).parameters()
    }
    fn parameters_into(&self, out: &mut Vec<f32>) -> Result<(), TrainerError> {
        (**self).parameters_into(out)
    }
    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        (**self).set_parameters(params)
    }
    fn save_checkpoint(
        &self,
        path: &Path,
        rounds_done: u64,
        job: &JobId,
    ) -> Result<(), TrainerError> {
        (**self).save_checkpoint(path, rounds_done, job)
    }
    fn load_checkpoint(&mut self, path: &Path, job: &JobId) -> Result<u64, TrainerError> {
        (**self).load_checkpoint(path, job)
    }
}

/// A `rampart-learn` learner drives a node directly: the gradient is
/// [`Learner::next_gradient`](rampart_learn::Learner::next_gradient) (momentum
/// and weight decay included) and the update is applied with the learner's
/// own schedule.
impl Trainer for rampart_learn::Learner {
    fn dim(&self) -> usize {
        rampart_learn::Learner::dim(self)
    }

    fn gradient(&mut self, _round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        let g = self.next_gradient().map_err(TrainerError::new)?;
        Ok((self.last_loss(), g))
    }

    fn apply(&mut self, update: &[f32], _round: u64) -> Result<(), TrainerError> {
        self.apply_scheduled(update)
            .map(drop)
            .map_err(TrainerError::new)
    }

    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        rampart_learn::Learner::parameters(self).map_err(TrainerError::new)
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        rampart_learn::Learner::set_parameters(self, params).map_err(TrainerError::new)
    }

    fn save_checkpoint(
        &self,
        path: &Path,
        rounds_done: u64,
        job: &JobId,
    ) -> Result<(), TrainerError> {
        let hash = self.config_hash(&job.0);
        rampart_learn::Learner::save_checkpoint(self, path, rounds_done, &hash)
            .map_err(TrainerError::new)
    }

    fn load_checkpoint(&mut self, path: &Path, job: &JobId) -> Result<u64, TrainerError> {
        let hash = self.config_hash(&job.0);
        rampart_learn::Learner::load_checkpoint(self, path, &hash).map_err(TrainerError::new)
    }
}

/// A small deterministic trainer for protocol tests: linear regression in
/// plain Rust, with a seeded generator (SplitMix64) for the data.
///
/// The job's true weights come from `job_seed`; node `node` owns `samples`
/// noisy samples drawn from a stream of `(job_seed, node)`; each round's
/// mini-batch is chosen by `(job_seed, node, round)`. All arithmetic is f32
/// in a fixed order.
///
/// The learning rate is 0.1, stable while 0.1 · E‖x‖² < 1, i.e. up to about
/// 30 weights (E‖x‖² = (dim − 1)/3 + 1). Larger models diverge to infinite
/// gradients within a few rounds at that rate, and a node whose gradient is
/// not finite stops with `Event::Failed` (under the default non-finite
/// policy): give them a smaller rate with
/// [`LinearRegression::with_learning_rate`].
#[cfg(any(test, feature = "test-utils"))]
#[derive(Clone, Debug)]
pub struct LinearRegression {
    weights: Vec<f32>,
    xs: Vec<Vec<f32>>,
    ys: Vec<f32>,
    batch: usize,
    lr: f32,
    seed: u64,
}

#[cfg(any(test, feature = "test-utils"))]
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(any(test, feature = "test-utils"))]
fn uniform(state: &mut u64) -> f32 {
    // 24 random bits in [-1, 1).
    ((splitmix(state) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

#[cfg(any(test, feature = "test-utils"))]
impl LinearRegression {
    /// A model of `dim` weights (the last one is the bias) at zero, and
    /// `samples` training points for node number `node`.
    pub fn new(dim: usize, job_seed: u64, node: u64, samples: usize) -> Self {
        let mut job = job_seed;
        let truth: Vec<f32> = (0..dim).map(|_| uniform(&mut job)).collect();
        let mut s = job_seed ^ node.wrapping_mul(0xa076_1d64_78bd_642f);
        let mut xs = Vec::with_capacity(samples);
        let mut ys = Vec::with_capacity(samples);
        for _ in 0..samples {
            let mut x: Vec<f32> = (0..dim.saturating_sub(1))
                .map(|_| uniform(&mut s))
                .collect();
            x.push(1.0);
            let y =
                x.iter().zip(&truth).fold(0.0f32, |a, (x, w)| a + x * w) + 0.01 * uniform(&mut s);
            xs.push(x);
            ys.push(y);
        }
        Self {
            weights: vec![0.0; dim],
            xs,
            ys,
            batch: 8,
            lr: 0.1,
            seed: job_seed ^ node.rotate_left(17),
        }
    }

    /// The same trainer with learning rate `lr` (0.1 by default).
    ///
    /// ```
    /// use rampart_node::{LinearRegression, Trainer};
    /// let mut t = LinearRegression::new(1_000, 1, 0, 4).with_learning_rate(1e-3);
    /// let before = t.loss();
    /// for round in 0..20 {
    ///     let (_, g) = t.gradient(round).unwrap();
    ///     t.apply(&g, round).unwrap();
    /// }
    /// assert!(t.loss() < before);
    /// ```
    #[must_use]
    pub fn with_learning_rate(mut self, lr: f32) -> Self {
        self.lr = lr;
        self
    }

    /// The same trainer with `batch` samples per gradient (8 by default;
    /// at least 1). A gradient costs two passes over the model per sample.
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Mean squared error over the node's own samples.
    pub fn loss(&self) -> f32 {
        let n = self.xs.len().max(1) as f32;
        self.xs
            .iter()
            .zip(&self.ys)
            .map(|(x, y)| {
                let e = self.predict(x) - y;
                e * e
            })
            .fold(0.0f32, |a, b| a + b)
            / n
    }

    fn predict(&self, x: &[f32]) -> f32 {
        dot(x, &self.weights)
    }
}

/// `x · w` with 16 running sums, one per lane, so that the loop compiles to
/// vector code (one running sum would chain every addition to the last).
#[cfg(any(test, feature = "test-utils"))]
fn dot(x: &[f32], w: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let xs = x.chunks_exact(LANES);
    let ws = w.chunks_exact(LANES);
    let tail = xs
        .remainder()
        .iter()
        .zip(ws.remainder())
        .fold(0.0f32, |a, (x, w)| a + x * w);
    for (x, w) in xs.zip(ws) {
        for k in 0..LANES {
            acc[k] += x[k] * w[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(any(test, feature = "test-utils"))]
impl Trainer for LinearRegression {
    fn dim(&self) -> usize {
        self.weights.len()
    }

    fn gradient(&mut self, round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        if self.xs.is_empty() {
            return Err(TrainerError::new("no samples"));
        }
        let mut s = self.seed ^ round.wrapping_mul(0xe703_7ed1_a0b4_28db);
        let mut g: Vec<f32> = Vec::with_capacity(self.weights.len());
        let mut loss = 0.0f32;
        for k in 0..self.batch {
            let i = (splitmix(&mut s) % self.xs.len() as u64) as usize;
            let e = self.predict(&self.xs[i]) - self.ys[i];
            loss += e * e;
            if k == 0 {
                // The first sample writes the buffer without reading it: a
                // zeroed buffer read before it is written maps the shared
                // zero page, and every first write then copies a page and
                // flushes the other cores' TLBs.
                g.extend(self.xs[i].iter().map(|x| 2.0 * e * x));
            } else {
                for (g, x) in g.iter_mut().zip(&self.xs[i]) {
                    *g += 2.0 * e * x;
                }
            }
        }
        let b = self.batch as f32;
        if self.batch > 1 {
            g.iter_mut().for_each(|g| *g /= b);
        }
        Ok((Some(loss / b), g))
    }

    fn apply(&mut self, update: &[f32], _round: u64) -> Result<(), TrainerError> {
        if update.len() != self.weights.len() {
            return Err(TrainerError::new(format!(
                "update of dimension {} for a model of {}",
                update.len(),
                self.weights.len()
            )));
        }
        for (w, u) in self.weights.iter_mut().zip(update) {
            *w -= self.lr * u;
        }
        Ok(())
    }

    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        Ok(self.weights.clone())
    }

    fn parameters_into(&self, out: &mut Vec<f32>) -> Result<(), TrainerError> {
        out.clear();
        out.extend_from_slice(&self.weights);
        Ok(())
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        if params.len() != self.weights.len() {
            return Err(TrainerError::new("wrong parameter dimension"));
        }
        self.weights.copy_from_slice(params);
        Ok(())
    }

    fn save_checkpoint(
        &self,
        path: &Path,
        rounds_done: u64,
        job: &JobId,
    ) -> Result<(), TrainerError> {
        let mut bytes = b"rampart-linreg-v1".to_vec();
        bytes.extend_from_slice(&job.0);
        bytes.extend_from_slice(&rounds_done.to_le_bytes());
        bytes.extend_from_slice(&crate::wire::f32_to_le(&self.weights));
        let digest = checkpoint_digest(&bytes);
        bytes.extend_from_slice(&digest);
        crate::checkpoint::write_atomic(path, &bytes).map_err(TrainerError::new)
    }

    fn load_checkpoint(&mut self, path: &Path, job: &JobId) -> Result<u64, TrainerError> {
        let bytes = std::fs::read(path).map_err(TrainerError::new)?;
        let head = 17 + 32 + 8;
        let expected = head + self.weights.len() * 4 + 32;
        if bytes.len() != expected || !bytes.starts_with(b"rampart-linreg-v1") {
            return Err(TrainerError::new("corrupt or foreign checkpoint"));
        }
        let (body, digest) = bytes.split_at(expected - 32);
        if checkpoint_digest(body) != digest {
            return Err(TrainerError::new("checkpoint digest mismatch"));
        }
        if body[17..49] != job.0 {
            return Err(TrainerError::new("checkpoint of another job"));
        }
        let mut r = [0u8; 8];
        r.copy_from_slice(&body[49..57]);
        let weights = crate::wire::f32_from_le(&body[head..])
            .ok_or_else(|| TrainerError::new("corrupt checkpoint"))?;
        self.weights = weights;
        Ok(u64::from_le_bytes(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_regression_is_deterministic_and_learns() {
        let mut a = LinearRegression::new(5, 7, 1, 64);
        let mut b = LinearRegression::new(5, 7, 1, 64);
        let before = a.loss();
        for round in 0..50 {
            let (_, ga) = a.gradient(round).unwrap();
            let (_, gb) = b.gradient(round).unwrap();
            assert_eq!(ga, gb);
            a.apply(&ga, round).unwrap();
            b.apply(&gb, round).unwrap();
        }
        assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
        assert!(a.loss() < before / 10.0, "{} vs {before}", a.loss());
        // Another node of the same job has other data.
        let mut c = LinearRegression::new(5, 7, 2, 64);
        assert_ne!(c.gradient(0).unwrap().1, a.gradient(0).unwrap().1);
        assert!(a.apply(&[0.0; 4], 0).is_err());
    }

    #[test]
    fn parameters_into_fills_the_buffer_in_place() {
        let mut t: Box<dyn Trainer> = Box::new(LinearRegression::new(100, 1, 0, 4));
        let (_, g) = t.gradient(0).unwrap();
        t.apply(&g, 0).unwrap();
        let mut buf = vec![7.0f32; 100];
        let at = buf.as_ptr();
        t.parameters_into(&mut buf).unwrap();
        assert_eq!(buf, t.parameters().unwrap());
        assert_eq!(buf.as_ptr(), at, "the buffer was reallocated");
        // The default (a trainer that does not override it) replaces the
        // contents too, whatever their length.
        struct Plain(Vec<f32>);
        impl Trainer for Plain {
            fn dim(&self) -> usize {
                self.0.len()
            }
            fn gradient(&mut self, _: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
                Ok((None, self.0.clone()))
            }
            fn apply(&mut self, _: &[f32], _: u64) -> Result<(), TrainerError> {
                Ok(())
            }
            fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
                Ok(self.0.clone())
            }
            fn set_parameters(&mut self, p: &[f32]) -> Result<(), TrainerError> {
                self.0 = p.to_vec();
                Ok(())
            }
        }
        let mut buf = vec![1.0; 5];
        Plain(vec![2.0, 3.0]).parameters_into(&mut buf).unwrap();
        assert_eq!(buf, [2.0, 3.0]);
    }

    #[test]
    fn linear_regression_checkpoints() {
        let dir = std::env::temp_dir().join(format!("rampart-node-linreg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.ckpt");
        let job = JobId([3; 32]);
        let mut a = LinearRegression::new(4, 1, 0, 16);
        let (_, g) = a.gradient(0).unwrap();
        a.apply(&g, 0).unwrap();
        a.save_checkpoint(&path, 1, &job).unwrap();
        let mut b = LinearRegression::new(4, 1, 0, 16);
        assert_eq!(b.load_checkpoint(&path, &job).unwrap(), 1);
        assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
        assert!(b.load_checkpoint(&path, &JobId([4; 32])).is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[60] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(b.load_checkpoint(&path, &job).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
