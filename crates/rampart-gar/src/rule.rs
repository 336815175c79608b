//! The typed rule configuration, the [`Aggregate`] trait and the result type.

use crate::rules;
use crate::{Float, GarError};

/// Coordinate phase of multi-Bulyan (spec §2.7.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CoordinatePhase {
    /// Per coordinate, the mean of the β values closest to the median (the
    /// Bulyan paper's phase; default).
    #[default]
    MedianClosest,
    /// Per coordinate, drop the f smallest and f largest values and average
    /// the β left (compatible with the `krum` 0.9.1 package).
    TrimmedMean,
}

/// Starting point of the geometric median's Weiszfeld iterations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GeometricInit {
    /// The mean of the finite inputs (RFA; translation-equivariant; default).
    #[default]
    Mean,
    /// The zero vector (ByzFL).
    Zero,
}

/// An aggregation rule with its parameters, as in spec §2.
///
/// Construct the variant you need and call [`Rule::check`] with the number of
/// inputs to validate the rule's precondition up front (a node does this for
/// its roster size at start-up), then [`Aggregate::aggregate`].
///
/// ```
/// use rampart_gar::{Aggregate, CoordinatePhase, Rule};
/// let rule = Rule::MultiBulyan { f: 1, m: None, phase: CoordinatePhase::MedianClosest };
/// assert!(rule.check(7).is_ok());
/// let err = rule.check(6).unwrap_err();
/// assert!(err.to_string().contains("n >= 4f + 3"));
///
/// let xs: Vec<Vec<f64>> = (0..7).map(|i| vec![i as f64, 1.0]).collect();
/// let rows: Vec<&[f64]> = xs.iter().map(|r| r.as_slice()).collect();
/// let out = rule.aggregate(&rows).unwrap();
/// assert_eq!(out.output, vec![3.0, 1.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// Plain coordinate-wise mean (no robustness; the baseline).
    Average,
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean, dropping `f` values at each end.
    TrimmedMean {
        /// Values dropped at each end; needs n ≥ 2f + 1.
        f: usize,
    },
    /// Krum: the input with the smallest sum of squared distances to its
    /// n − f − 2 nearest neighbours; needs n ≥ 2f + 3.
    Krum {
        /// Declared Byzantine inputs.
        f: usize,
    },
    /// Multi-Krum: the average of the m best-scored inputs.
    MultiKrum {
        /// Declared Byzantine inputs; needs n ≥ 2f + 3.
        f: usize,
        /// Inputs averaged, 1 ≤ m ≤ n; `None` means n − f − 2.
        m: Option<usize>,
    },
    /// Bulyan over Krum, exactly as in the Bulyan paper (θ = n − 2f).
    Bulyan {
        /// Declared Byzantine inputs; needs n ≥ 4f + 3.
        f: usize,
    },
    /// Multi-Bulyan (Bulyan over Multi-Krum), spec §2.7.2: the default rule.
    MultiBulyan {
        /// Declared Byzantine inputs; needs n ≥ 4f + 3.
        f: usize,
        /// Multi-Krum size, 1 ≤ m ≤ n − f − 2; `None` means n − f − 2.
        m: Option<usize>,
        /// Coordinate phase.
        phase: CoordinatePhase,
    },
    /// The AggregaThor-compatible multi-Bulyan of spec §2.7.3.
    MultiBulyanAggregathor {
        /// Declared Byzantine inputs; needs n ≥ 4f + 3.
        f: usize,
        /// n − 2f − 2 ≤ m ≤ n − f − 2; `None` means n − f − 2.
        m: Option<usize>,
    },
    /// Smoothed Weiszfeld geometric median (RFA).
    GeometricMedian {
        /// Smoothing ν > 0.
        nu: f64,
        /// Number of Weiszfeld updates.
        iters: usize,
        /// Starting point.
        init: GeometricInit,
    },
    /// Centered clipping (stateless form: pass the previous output as `v0`).
    CenteredClipping {
        /// Clipping radius τ ≥ 0.
        tau: f64,
        /// Iterations L.
        iters: usize,
        /// Starting point; `None` is the zero vector.
        v0: Option<Vec<f64>>,
    },
    /// Minimum-diameter averaging (brute force over subsets).
    Mda {
        /// Declared Byzantine inputs; needs n ≥ 2f + 1.
        f: usize,
    },
}

impl Rule {
    /// The rule's identifier as used by the CLI (`multi-bulyan`, …).
    pub fn id(&self) -> &'static str {
        match self {
            Rule::Average => "average",
            Rule::Median => "median",
            Rule::TrimmedMean { .. } => "trimmed-mean",
            Rule::Krum { .. } => "krum",
            Rule::MultiKrum { .. } => "multi-krum",
            Rule::Bulyan { .. } => "bulyan",
            Rule::MultiBulyan { .. } => "multi-bulyan",
            Rule::MultiBulyanAggregathor { .. } => "multi-bulyan-aggregathor",
            Rule::GeometricMedian { .. } => "geometric-median",
            Rule::CenteredClipping { .. } => "centered-clipping",
            Rule::Mda { .. } => "mda",
        }
    }

    /// The declared f, for the rules that take one.
    pub fn f(&self) -> Option<usize> {
        match self {
            Rule::TrimmedMean { f }
            | Rule::Krum { f }
            | Rule::MultiKrum { f, .. }
            | Rule::Bulyan { f }
            | Rule::MultiBulyan { f, .. }
            | Rule::MultiBulyanAggregathor { f, .. }
            | Rule::Mda { f } => Some(*f),
            _ => None,
        }
    }

    /// The m actually used with n inputs (Multi-Krum and multi-Bulyan), after
    /// the precondition check.
    pub fn effective_m(&self, n: usize) -> Result<Option<usize>, GarError> {
        Ok(match self {
            Rule::MultiKrum { f, m } => Some(rules::check_multi_krum(n, *f, *m)?),
            Rule::MultiBulyan { f, m, .. } => Some(rules::check_multi_bulyan(n, *f, *m)?),
            Rule::MultiBulyanAggregathor { f, m } => {
                Some(rules::check_multi_bulyan_aggregathor(n, *f, *m)?)
            }
            Rule::Krum { f } => {
                rules::check_krum("krum", n, *f)?;
                Some(1)
            }
            _ => None,
        })
    }

    /// The smallest number of inputs the rule accepts (its precondition on n).
    pub fn min_inputs(&self) -> usize {
        match self.f() {
            None => 1,
            Some(f) => match self {
                Rule::TrimmedMean { .. } | Rule::Mda { .. } => 2 * f + 1,
                Rule::Krum { .. } | Rule::MultiKrum { .. } => 2 * f + 3,
                _ => 4 * f + 3,
            },
        }
    }
}

/// One iteration of Bulyan's selection loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulyanStep {
    /// Size of the remaining set R.
    pub remaining: usize,
    /// Krum neighbours q used in this iteration.
    pub neighbours: usize,
    /// The input picked (and removed).
    pub picked: usize,
}

/// One iteration of multi-Bulyan's selection loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiBulyanStep {
    /// Size of the remaining (alive) set.
    pub remaining: usize,
    /// Krum neighbours q used for the scores.
    pub neighbours: usize,
    /// Number of inputs averaged, m_k.
    pub m_k: usize,
    /// The averaged inputs T_k, in rank order.
    pub averaged: Vec<usize>,
    /// The input removed, r_k.
    pub removed: usize,
}

/// Rule-specific details of an aggregation, for logs, tests and the CLI.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Details {
    /// The rule records nothing more than its output.
    None,
    /// Krum / Multi-Krum: every input's score and the m used.
    Krum {
        /// Score of every input (sum of squared distances to its neighbours).
        scores: Vec<f64>,
        /// Number of inputs averaged.
        m: usize,
    },
    /// Bulyan: the selection loop.
    Bulyan {
        /// Size of the selection set.
        theta: usize,
        /// Values kept per coordinate.
        beta: usize,
        /// Each iteration.
        steps: Vec<BulyanStep>,
    },
    /// Multi-Bulyan (both variants): the selection loop.
    MultiBulyan {
        /// Size of the selection set.
        theta: usize,
        /// Values kept per coordinate.
        beta: usize,
        /// The m used.
        m: usize,
        /// Each iteration.
        steps: Vec<MultiBulyanStep>,
    },
    /// Geometric median: the inputs kept (fully finite).
    GeometricMedian {
        /// Indices of the inputs that took part.
        kept: Vec<usize>,
    },
    /// MDA: the diameter of the chosen subset.
    Mda {
        /// Largest squared distance inside the chosen subset.
        diameter: f64,
    },
}

/// The result of an aggregation.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Aggregation<T> {
    /// The aggregated vector.
    pub output: Vec<T>,
    /// Inputs chosen, where the rule chooses: Krum's / Multi-Krum's in rank
    /// order, Bulyan's picks in order, multi-Bulyan's removed index of each
    /// iteration in order, MDA's subset; empty otherwise.
    pub selected: Vec<usize>,
    /// Rule-specific details.
    pub details: Details,
    /// With NNM in front: the neighbours mixed into each row.
    pub nnm_neighbours: Option<Vec<Vec<usize>>>,
}

impl<T> Aggregation<T> {
    pub(crate) fn plain(output: Vec<T>) -> Self {
        Self {
            output,
            selected: Vec::new(),
            details: Details::None,
            nnm_neighbours: None,
        }
    }
}

/// The output of nearest-neighbour mixing: one mixed row per input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Mixed<T> {
    /// Row i is the average of the n − f inputs nearest to input i.
    pub rows: Vec<Vec<T>>,
    /// The inputs averaged into each row, nearest first.
    pub neighbours: Vec<Vec<usize>>,
}

/// An aggregation rule over vectors of `T`.
///
/// [`Rule`] and [`Aggregator`] implement it for `f32` and `f64`; implement it
/// for your own rule to plug it into a node.
///
/// ```
/// use rampart_gar::{Aggregate, Aggregation, GarError};
/// /// Keeps the first input (not robust; an illustration).
/// struct First;
/// impl Aggregate<f32> for First {
///     fn name(&self) -> &'static str { "first" }
///     fn check(&self, n: usize) -> Result<(), GarError> {
///         if n == 0 { Err(GarError::NoInputs) } else { Ok(()) }
///     }
///     fn aggregate(&self, inputs: &[&[f32]]) -> Result<Aggregation<f32>, GarError> {
///         rampart_gar::validate(inputs)?;
///         Ok(Aggregation::new(inputs[0].to_vec()))
///     }
/// }
/// let a = [1.0f32, 2.0];
/// let b = [3.0f32, 4.0];
/// assert_eq!(First.aggregate(&[&a, &b]).unwrap().output, vec![1.0, 2.0]);
/// ```
pub trait Aggregate<T: Float>: Send + Sync {
    /// Identifier of the rule.
    fn name(&self) -> &'static str;
    /// Checks the rule's precondition for `n` inputs without aggregating.
    fn check(&self, n: usize) -> Result<(), GarError>;
    /// Aggregates `inputs` (n vectors of one dimension d). The result does not
    /// depend on anything but the inputs, their order and the parameters.
    fn aggregate(&self, inputs: &[&[T]]) -> Result<Aggregation<T>, GarError>;
}

impl<T> Aggregation<T> {
    /// An aggregation result with only an output (for custom rules).
    pub fn new(output: Vec<T>) -> Self {
        Self::plain(output)
    }
}

/// Checks that there is at least one input, of non-zero dimension, and that
/// all inputs have the same dimension; returns that dimension.
pub fn validate<T>(inputs: &[&[T]]) -> Result<usize, GarError> {
    let first = inputs.first().ok_or(GarError::NoInputs)?;
    let d = first.len();
    if d == 0 {
        return Err(GarError::EmptyDimension);
    }
    if let Some((index, r)) = inputs.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(GarError::DimensionMismatch {
            index,
            expected: d,
            got: r.len(),
        });
    }
    Ok(d)
}

impl Rule {
    /// Checks the precondition for `n` inputs (and the real-valued parameters).
    pub fn check(&self, n: usize) -> Result<(), GarError> {
        if n == 0 {
            return Err(GarError::NoInputs);
        }
        match self {
            Rule::Average | Rule::Median => Ok(()),
            Rule::TrimmedMean { f } => rules::check_trimmed_mean(n, *f),
            Rule::Krum { f } => rules::check_krum("krum", n, *f),
            Rule::MultiKrum { f, m } => rules::check_multi_krum(n, *f, *m).map(drop),
            Rule::Bulyan { f } => rules::check_bulyan("bulyan", n, *f),
            Rule::MultiBulyan { f, m, .. } => rules::check_multi_bulyan(n, *f, *m).map(drop),
            Rule::MultiBulyanAggregathor { f, m } => {
                rules::check_multi_bulyan_aggregathor(n, *f, *m).map(drop)
            }
            Rule::GeometricMedian { nu, .. } => rules::check_geometric_median(*nu),
            Rule::CenteredClipping { tau, v0, .. } => {
                rules::check_centered_clipping(*tau, v0.as_deref(), None)
            }
            Rule::Mda { f } => rules::check_mda(n, *f),
        }
    }

    fn run<T: Float>(&self, rows: &[&[T]]) -> Result<Aggregation<T>, GarError> {
        validate(rows)?;
        match self {
            Rule::Average => Ok(rules::average(rows)),
            Rule::Median => Ok(rules::median(rows)),
            Rule::TrimmedMean { f } => rules::trimmed_mean(rows, *f),
            Rule::Krum { f } => {
                rules::check_krum("krum", rows.len(), *f)?;
                rules::multi_krum(rows, *f, Some(1))
            }
            Rule::MultiKrum { f, m } => rules::multi_krum(rows, *f, *m),
            Rule::Bulyan { f } => rules::bulyan(rows, *f),
            Rule::MultiBulyan { f, m, phase } => rules::multi_bulyan(rows, *f, *m, *phase),
            Rule::MultiBulyanAggregathor { f, m } => rules::multi_bulyan_aggregathor(rows, *f, *m),
            Rule::GeometricMedian { nu, iters, init } => {
                rules::geometric_median(rows, *nu, *iters, *init)
            }
            Rule::CenteredClipping { tau, iters, v0 } => {
                rules::centered_clipping(rows, *tau, *iters, v0.as_deref())
            }
            Rule::Mda { f } => rules::mda(rows, *f),
        }
    }
}

macro_rules! impl_aggregate_for_rule {
    ($t:ty) => {
        impl Aggregate<$t> for Rule {
            fn name(&self) -> &'static str {
                self.id()
            }
            fn check(&self, n: usize) -> Result<(), GarError> {
                Rule::check(self, n)
            }
            fn aggregate(&self, inputs: &[&[$t]]) -> Result<Aggregation<$t>, GarError> {
                self.run(inputs)
            }
        }
    };
}
impl_aggregate_for_rule!(f32);
impl_aggregate_for_rule!(f64);

/// Nearest-neighbour mixing (spec §2.10): row i of the result is the average
/// of the n − f inputs nearest to input i (itself included).
///
/// ```
/// let xs = [[0.0f64], [1.0], [100.0]];
/// let rows: Vec<&[f64]> = xs.iter().map(|r| r.as_slice()).collect();
/// let mixed = rampart_gar::nnm(&rows, 1).unwrap();
/// assert_eq!(mixed.rows[0], vec![0.5]);
/// assert_eq!(mixed.neighbours[2], vec![2, 1]);
/// ```
pub fn nnm<T: Float>(inputs: &[&[T]], f: usize) -> Result<Mixed<T>, GarError> {
    validate(inputs)?;
    rules::nnm(inputs, f)
}

/// A rule with an optional pre-aggregation in front of it.
///
/// ```
/// use rampart_gar::{Aggregate, Aggregator, Rule};
/// let agg = Aggregator::new(Rule::Median).with_nnm(1);
/// let xs = [[0.0f64], [1.0], [2.0], [1000.0]];
/// let rows: Vec<&[f64]> = xs.iter().map(|r| r.as_slice()).collect();
/// let out = agg.aggregate(&rows).unwrap();
/// assert!(out.output[0] < 3.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregator {
    rule: Rule,
    nnm_f: Option<usize>,
}

impl Aggregator {
    /// The rule alone.
    pub fn new(rule: Rule) -> Self {
        Self { rule, nnm_f: None }
    }

    /// Puts nearest-neighbour mixing with the given f in front of the rule.
    pub fn with_nnm(mut self, f: usize) -> Self {
        self.nnm_f = Some(f);
        self
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The f of the NNM pre-aggregation, if any.
    pub fn nnm_f(&self) -> Option<usize> {
        self.nnm_f
    }

    fn run<T: Float>(&self, inputs: &[&[T]]) -> Result<Aggregation<T>, GarError> {
        match self.nnm_f {
            None => self.rule.run(inputs),
            Some(f) => {
                self.check(inputs.len())?;
                let mixed = nnm(inputs, f)?;
                let rows: Vec<&[T]> = mixed.rows.iter().map(Vec::as_slice).collect();
                let mut out = self.rule.run(&rows)?;
                out.nnm_neighbours = Some(mixed.neighbours);
                Ok(out)
            }
        }
    }

    fn check(&self, n: usize) -> Result<(), GarError> {
        if let Some(f) = self.nnm_f {
            rules::check_nnm(n, f)?;
        }
        self.rule.check(n)
    }
}

macro_rules! impl_aggregate_for_aggregator {
    ($t:ty) => {
        impl Aggregate<$t> for Aggregator {
            fn name(&self) -> &'static str {
                self.rule.id()
            }
            fn check(&self, n: usize) -> Result<(), GarError> {
                Aggregator::check(self, n)
            }
            fn aggregate(&self, inputs: &[&[$t]]) -> Result<Aggregation<$t>, GarError> {
                self.run(inputs)
            }
        }
    };
}
impl_aggregate_for_aggregator!(f32);
impl_aggregate_for_aggregator!(f64);
