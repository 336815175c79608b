//! Models: the [`Model`] trait, the built-in architectures, and [`Network`],
//! which owns a model's variables in a fixed flat order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Module, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Conv2d, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::LearnError;
use crate::rng::Rng;

/// A classifier that Rampart can train.
///
/// Implementors hold candle layers whose weights come from the
/// [`VarBuilder`] handed to [`Network::custom`]; they only describe the
/// computation. [`Network`] owns the variables, builds them from a seed and
/// flattens gradients and parameters.
pub trait Model: Send {
    /// Logits `[batch, classes]` for a batch `[batch, ..sample_shape]`.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor>;

    /// Scalar training loss of `logits` against `u32` labels `[batch]`;
    /// mean cross-entropy unless overridden.
    fn loss(&self, logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::loss::cross_entropy(logits, labels)
    }
}

/// The built-in architectures, as they appear in a job's configuration.
///
/// All use ReLU between layers and produce logits (the loss applies the
/// softmax).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelKind {
    /// Multinomial logistic regression: one linear layer on the flattened
    /// input (`fc.weight`, `fc.bias`).
    LogReg,
    /// Multi-layer perceptron on the flattened input: `fc0 .. fcK` with the
    /// given hidden widths (empty = logistic regression named `fc0`).
    Mlp {
        /// Widths of the hidden layers, input side first.
        hidden: Vec<usize>,
    },
    /// Small CNN for `[channels, h, w]` images (28×28 or 32×32):
    /// `conv1` 5×5 → 16 channels, ReLU, 2×2 max-pool, `conv2` 5×5 → 32
    /// channels, ReLU, 2×2 max-pool, flatten, `fc` to the classes.
    Cnn,
}

impl ModelKind {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LogReg => "logreg",
            Self::Mlp { .. } => "mlp",
            Self::Cnn => "cnn",
        }
    }

    /// Builds this architecture for samples of `sample_shape` and `classes`
    /// classes, with every parameter drawn from `seed`.
    pub fn build(
        &self,
        sample_shape: &[usize],
        classes: usize,
        seed: u64,
    ) -> Result<Network, LearnError> {
        if classes == 0 {
            return Err(LearnError::InvalidConfig {
                field: "classes",
                requirement: "at least one class",
            });
        }
        let flat: usize = sample_shape.iter().product();
        if flat == 0 {
            return Err(LearnError::InputShape {
                model: self.name(),
                shape: sample_shape.to_vec(),
            });
        }
        match self {
            Self::LogReg => Network::custom(seed, sample_shape, |vb| {
                Ok(Mlp {
                    layers: vec![candle_nn::linear(flat, classes, vb.pp("fc"))?],
                })
            }),
            Self::Mlp { hidden } => {
                if hidden.contains(&0) {
                    return Err(LearnError::InvalidConfig {
                        field: "hidden",
                        requirement: "every hidden layer has at least one unit",
                    });
                }
                let hidden = hidden.clone();
                Network::custom(seed, sample_shape, move |vb| {
                    let mut layers = Vec::with_capacity(hidden.len() + 1);
                    let mut input = flat;
                    for (i, &h) in hidden.iter().chain(std::iter::once(&classes)).enumerate() {
                        layers.push(candle_nn::linear(input, h, vb.pp(format!("fc{i}")))?);
                        input = h;
                    }
                    Ok(Mlp { layers })
                })
            }
            Self::Cnn => {
                let &[channels, h, w] = sample_shape else {
                    return Err(LearnError::InputShape {
                        model: self.name(),
                        shape: sample_shape.to_vec(),
                    });
                };
                // conv 5 (valid) then pool 2, twice.
                let side = |s: usize| s.checked_sub(4).map(|s| s / 2);
                let (Some(h2), Some(w2)) = (
                    side(h).and_then(side).filter(|&s| s > 0),
                    side(w).and_then(side).filter(|&s| s > 0),
                ) else {
                    return Err(LearnError::InputShape {
                        model: self.name(),
                        shape: sample_shape.to_vec(),
                    });
                };
                Network::custom(seed, sample_shape, move |vb| {
                    let cfg = candle_nn::Conv2dConfig::default();
                    Ok(Cnn {
                        conv1: Im2colConv::new(&candle_nn::conv2d(
                            channels,
                            16,
                            5,
                            cfg,
                            vb.pp("conv1"),
                        )?)?,
                        conv2: Im2colConv::new(&candle_nn::conv2d(
                            16,
                            32,
                            5,
                            cfg,
                            vb.pp("conv2"),
                        )?)?,
                        fc: candle_nn::linear(32 * h2 * w2, classes, vb.pp("fc"))?,
                    })
                })
            }
        }
    }
}

/// MLP / logistic regression: linear layers with ReLU in between.
struct Mlp {
    layers: Vec<Linear>,
}

impl Model for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = xs.flatten_from(1)?;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// Two conv layers and a linear classifier.
struct Cnn {
    conv1: Im2colConv,
    conv2: Im2colConv,
    fc: Linear,
}

impl Model for Cnn {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv1.forward(xs)?.relu()?.max_pool2d(2)?;
        let x = self.conv2.forward(&x)?.relu()?.max_pool2d(2)?;
        self.fc.forward(&x.flatten_from(1)?)
    }
}

/// A square "valid" convolution (stride 1, no padding) computed as
/// im2col + matrix product. Same variables and results as
/// `candle_nn::Conv2d`, but its backward pass is matrix products too:
/// candle's CPU `conv2d` backward goes through a direct
/// `conv_transpose2d` kernel that made the CNN ~10× slower per step.
struct Im2colConv {
    /// `[out, in, k, k]`, as `candle_nn::conv2d` creates it.
    weight: Tensor,
    /// `[out]`.
    bias: Tensor,
}

impl Im2colConv {
    fn new(conv: &Conv2d) -> candle_core::Result<Self> {
        let bias = conv
            .bias()
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("conv layer without bias".into()))?;
        Ok(Self {
            weight: conv.weight().clone(),
            bias,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (o, _, k, _) = self.weight.dims4()?;
        let (oh, ow) = (h + 1 - k, w + 1 - k);
        // Patches [b, c, k*k, oh*ow], ordered like the weight's (c, ki, kj).
        let mut cols = Vec::with_capacity(k * k);
        for i in 0..k {
            let rows = x.narrow(2, i, oh)?;
            for j in 0..k {
                cols.push(rows.narrow(3, j, ow)?);
            }
        }
        let patches = Tensor::stack(&cols, 2)?.reshape((b, c * k * k, oh * ow))?;
        let kernel = self.weight.reshape((o, c * k * k))?;
        kernel
            .broadcast_matmul(&patches)?
            .broadcast_add(&self.bias.reshape((1, o, 1))?)?
            .reshape((b, o, oh, ow))
    }
}

/// The variables created while a model is built. Each variable is drawn
/// from its own stream, derived from the seed and its name, so values do
/// not depend on creation order.
#[derive(Clone)]
struct SeededStore {
    seed: u64,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl SeededStore {
    fn init_values(&self, name: &str, shape: &Shape, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = Rng::derived(self.seed, name.as_bytes());
        let uniform = |rng: &mut Rng, lo: f64, up: f64| (lo + (up - lo) * rng.next_f64()) as f32;
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * rng.normal()) as f32)
                .collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| uniform(&mut rng, lo, up)).collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = match fan {
                    FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                    FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => {
                        (0..n).map(|_| (std * rng.normal()) as f32).collect()
                    }
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n).map(|_| uniform(&mut rng, -bound, bound)).collect()
                    }
                }
            }
        }
    }
}

impl SimpleBackend for SeededStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(var) = vars.get(name) {
            if var.shape() != &s {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("variable {name} requested twice with different shapes"),
                    expected: s,
                    got: var.shape().clone(),
                });
            }
            return Ok(var.as_tensor().clone());
        }
        let values = self.init_values(name, &s, h);
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_owned(), var);
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let vars = self.vars.lock().unwrap_or_else(PoisonError::into_inner);
        vars.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            })
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }
}

/// A model together with its variables, in the crate's fixed flat order.
///
/// **Flat order.** Every flat vector (gradient, parameters, momentum,
/// update) concatenates the variables sorted by name (byte-wise, as
/// `BTreeMap<String, _>` orders them: `conv1.bias`, `conv1.weight`, …,
/// `fc0.bias`, `fc0.weight`, `fc1.bias`, …), each variable flattened in
/// row-major (C) order of its candle shape. The order depends only on the
/// names and shapes, never on creation order or on a hash map, so it is the
/// same across runs and machines.
pub struct Network {
    /// The computation; its layers share storage with `vars`.
    model: Box<dyn Model>,
    /// All variables, sorted by name: the flat order.
    vars: Vec<(String, Var)>,
    /// Shape of one input sample, checked against the data.
    sample_shape: Vec<usize>,
    /// Total parameter count `d`.
    dim: usize,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("vars", &self.layout())
            .field("sample_shape", &self.sample_shape)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Builds a user-defined model. `build` receives a [`VarBuilder`] whose
    /// variables are created on the CPU in `f32`, each drawn from its own
    /// stream derived from `seed` and the variable's name (with the
    /// distribution the layer asks for, e.g. Kaiming normal for
    /// `candle_nn::linear` weights). The same seed gives the same bits on
    /// every machine.
    ///
    /// ```
    /// use candle_core::{Module, Tensor};
    /// use rampart_learn::{Model, Network};
    ///
    /// struct Tiny(candle_nn::Linear);
    /// impl Model for Tiny {
    ///     fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
    ///         self.0.forward(&xs.flatten_from(1)?)
    ///     }
    /// }
    ///
    /// let net = Network::custom(7, &[4], |vb| Ok(Tiny(candle_nn::linear(4, 3, vb.pp("out"))?)))?;
    /// assert_eq!(net.dim(), 4 * 3 + 3);
    /// // Same seed, same parameters.
    /// let again = Network::custom(7, &[4], |vb| Ok(Tiny(candle_nn::linear(4, 3, vb.pp("out"))?)))?;
    /// assert_eq!(net.parameters()?, again.parameters()?);
    /// # Ok::<(), rampart_learn::LearnError>(())
    /// ```
    pub fn custom<M, F>(seed: u64, sample_shape: &[usize], build: F) -> Result<Self, LearnError>
    where
        M: Model + 'static,
        F: FnOnce(VarBuilder<'_>) -> candle_core::Result<M>,
    {
        let store = SeededStore {
            seed,
            vars: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let vb = VarBuilder::from_backend(Box::new(store.clone()), DType::F32, Device::Cpu);
        let model = build(vb)?;
        let vars: Vec<(String, Var)> =
            std::mem::take(&mut *store.vars.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        let dim = vars.iter().map(|(_, v)| v.elem_count()).sum();
        Ok(Self {
            model: Box::new(model),
            vars,
            sample_shape: sample_shape.to_vec(),
            dim,
        })
    }

    /// The flat parameter count `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Shape of one input sample.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// `(name, shape)` of every variable, in flat order.
    pub fn layout(&self) -> Vec<(String, Vec<usize>)> {
        self.vars
            .iter()
            .map(|(n, v)| (n.clone(), v.dims().to_vec()))
            .collect()
    }

    /// The variables in flat order (e.g. to hand to a candle optimiser).
    pub fn vars(&self) -> Vec<Var> {
        self.vars.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Logits for a batch.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor, LearnError> {
        Ok(self.model.forward(xs)?)
    }

    /// Mean loss of the batch (no gradient).
    pub fn loss(&self, xs: &Tensor, labels: &Tensor) -> Result<f32, LearnError> {
        let logits = self.model.forward(xs)?;
        Ok(self.model.loss(&logits, labels)?.to_scalar::<f32>()?)
    }

    /// The model's loss of given logits.
    pub(crate) fn loss_of(&self, logits: &Tensor, labels: &Tensor) -> Result<f32, LearnError> {
        Ok(self.model.loss(logits, labels)?.to_scalar::<f32>()?)
    }

    /// Mean loss of the batch and the gradient of that loss with respect
    /// to every parameter, flattened in flat order. A variable that does
    /// not influence the loss contributes zeros.
    pub fn gradient(&self, xs: &Tensor, labels: &Tensor) -> Result<(f32, Vec<f32>), LearnError> {
        let logits = self.model.forward(xs)?;
        let loss = self.model.loss(&logits, labels)?;
        let grads = loss.backward()?;
        let mut flat = Vec::with_capacity(self.dim);
        for (_, var) in &self.vars {
            match grads.get(var.as_tensor()) {
                Some(g) => flat.extend(g.flatten_all()?.to_vec1::<f32>()?),
                None => flat.resize(flat.len() + var.elem_count(), 0.0),
            }
        }
        Ok((loss.to_scalar::<f32>()?, flat))
    }

    /// All parameters, flattened in flat order.
    pub fn parameters(&self) -> Result<Vec<f32>, LearnError> {
        let mut flat = Vec::with_capacity(self.dim);
        for (_, var) in &self.vars {
            flat.extend(var.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(flat)
    }

    /// Overwrites all parameters from a flat vector in flat order.
    pub fn set_parameters(&self, flat: &[f32]) -> Result<(), LearnError> {
        self.check_dim(flat.len())?;
        let mut offset = 0;
        for (_, var) in &self.vars {
            let n = var.elem_count();
            let t = Tensor::from_slice(&flat[offset..offset + n], var.shape(), var.device())?;
            var.set(&t)?;
            offset += n;
        }
        Ok(())
    }

    /// `w ← w − lr · update`, computed in `f32` exactly as
    /// `candle_nn::SGD` computes its step.
    pub fn apply(&self, update: &[f32], lr: f32) -> Result<(), LearnError> {
        self.check_dim(update.len())?;
        let mut params = self.parameters()?;
        for (w, u) in params.iter_mut().zip(update) {
            *w -= *u * lr;
        }
        self.set_parameters(&params)
    }

    pub(crate) fn check_dim(&self, found: usize) -> Result<(), LearnError> {
        if found == self.dim {
            Ok(())
        } else {
            Err(LearnError::DimMismatch {
                expected: self.dim,
                found,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, shape: &[usize], seed: u64) -> (Tensor, Tensor) {
        let len: usize = shape.iter().product();
        let mut rng = Rng::seed_from_u64(seed);
        let xs: Vec<f32> = (0..n * len).map(|_| rng.normal() as f32).collect();
        let ys: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
        let mut dims = vec![n];
        dims.extend_from_slice(shape);
        (
            Tensor::from_vec(xs, dims, &Device::Cpu).unwrap(),
            Tensor::from_vec(ys, n, &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn dims_of_builtin_models() {
        let lr = ModelKind::LogReg.build(&[1, 28, 28], 10, 0).unwrap();
        assert_eq!(lr.dim(), 784 * 10 + 10);
        let mlp = ModelKind::Mlp { hidden: vec![128] }
            .build(&[1, 28, 28], 10, 0)
            .unwrap();
        assert_eq!(mlp.dim(), 784 * 128 + 128 + 128 * 10 + 10);
        let cnn = ModelKind::Cnn.build(&[1, 28, 28], 10, 0).unwrap();
        assert_eq!(
            cnn.dim(),
            (16 * 25 + 16) + (32 * 16 * 25 + 32) + (32 * 16 * 10 + 10)
        );
        let names: Vec<String> = cnn.layout().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "conv1.bias",
                "conv1.weight",
                "conv2.bias",
                "conv2.weight",
                "fc.bias",
                "fc.weight"
            ]
        );
        let cifar = ModelKind::Cnn.build(&[3, 32, 32], 10, 0).unwrap();
        assert_eq!(
            cifar.dim(),
            (16 * 75 + 16) + (32 * 16 * 25 + 32) + (800 * 10 + 10)
        );
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        assert!(matches!(
            ModelKind::Cnn.build(&[32], 10, 0),
            Err(LearnError::InputShape { .. })
        ));
        assert!(matches!(
            ModelKind::Cnn.build(&[1, 8, 8], 10, 0),
            Err(LearnError::InputShape { .. })
        ));
        assert!(matches!(
            ModelKind::Mlp { hidden: vec![0] }.build(&[4], 10, 0),
            Err(LearnError::InvalidConfig { .. })
        ));
        let net = ModelKind::LogReg.build(&[4], 3, 0).unwrap();
        assert!(matches!(
            net.set_parameters(&[0.0; 3]),
            Err(LearnError::DimMismatch {
                expected: 15,
                found: 3
            })
        ));
    }

    #[test]
    fn init_is_seeded_and_order_independent() {
        let a = ModelKind::Mlp {
            hidden: vec![16, 8],
        }
        .build(&[12], 5, 3)
        .unwrap();
        let b = ModelKind::Mlp {
            hidden: vec![16, 8],
        }
        .build(&[12], 5, 3)
        .unwrap();
        let c = ModelKind::Mlp {
            hidden: vec![16, 8],
        }
        .build(&[12], 5, 4)
        .unwrap();
        assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
        assert_ne!(a.parameters().unwrap(), c.parameters().unwrap());
        // Kaiming normal: std sqrt(2 / fan_in) for the first weight.
        let layout = a.layout();
        let p = a.parameters().unwrap();
        let mut off = 0;
        for (name, shape) in layout {
            let n: usize = shape.iter().product();
            if name == "fc0.weight" {
                let w = &p[off..off + n];
                let var = w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / n as f64;
                assert!((var - 2.0 / 12.0).abs() < 0.05, "{var}");
            }
            off += n;
        }
    }

    #[test]
    fn im2col_conv_matches_candle_conv2d() {
        let (xs, _) = batch(4, &[3, 12, 10], 1);
        let mut rng = Rng::seed_from_u64(2);
        let w: Vec<f32> = (0..6 * 3 * 25).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..6).map(|_| rng.normal() as f32).collect();
        let w = Tensor::from_vec(w, (6, 3, 5, 5), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(b, 6, &Device::Cpu).unwrap();
        let reference = Conv2d::new(w.clone(), Some(b.clone()), Default::default());
        let ours = Im2colConv { weight: w, bias: b };
        let want = reference.forward(&xs).unwrap();
        let got = ours.forward(&xs).unwrap();
        assert_eq!(got.dims(), &[4, 6, 8, 6]);
        let diff = (want - got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn parameters_round_trip_and_gradient_is_deterministic() {
        for kind in [ModelKind::Mlp { hidden: vec![64] }, ModelKind::Cnn] {
            let net = kind.build(&[1, 28, 28], 10, 11).unwrap();
            let (xs, ys) = batch(32, &[1, 28, 28], 5);
            let (l1, g1) = net.gradient(&xs, &ys).unwrap();
            let (l2, g2) = net.gradient(&xs, &ys).unwrap();
            assert_eq!(l1.to_bits(), l2.to_bits());
            assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert_eq!(g1.len(), net.dim());
            let mut p = net.parameters().unwrap();
            p[0] += 1.0;
            net.set_parameters(&p).unwrap();
            assert_eq!(net.parameters().unwrap(), p);
        }
    }
}
