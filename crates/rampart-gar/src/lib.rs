//! Byzantine-robust gradient aggregation rules.
//!
//! `rampart-gar` is the numeric heart of Rampart: given the n gradient
//! vectors a node received in a round, of which up to f may come from
//! Byzantine peers, it computes one vector to step with. The default rule is
//! **multi-Bulyan** (Bulyan over Multi-Krum, El-Mhamdi, Guerraoui, Rouault,
//! arXiv 1905.04374); the crate also has the average, coordinate-wise median,
//! trimmed mean, Krum, Multi-Krum, Bulyan, an AggregaThor-compatible
//! multi-Bulyan, the geometric median, centered clipping, MDA and NNM as a
//! pre-aggregation. The exact semantics of every rule — summation orders,
//! tie-breaking, non-finite inputs, preconditions — are those of the project's
//! aggregation specification, and the conformance tests check them bit for
//! bit in `f64`.
//!
//! # Design
//!
//! * **Pure and synchronous.** Slices in, `Result` out: no I/O, no async, no
//!   global state. Rayon parallelises inside a call.
//! * **Deterministic across machines.** Every summation order is a function
//!   of the input shape only (not of the thread count or the SIMD width the
//!   kernels were compiled for), so honest nodes that aggregate the same
//!   inputs get the same bits.
//! * **Linear in d.** Pairwise distances are computed blockwise (each input
//!   is read once, f32 differences accumulated into `f64`), the selection
//!   loops of Krum/Bulyan work on the n×n distance matrix only, and the
//!   coordinate phases run on cache-sized tiles with vectorised sorting
//!   networks. Multi-Bulyan reads its inputs twice in total.
//! * **Byzantine inputs are data, not errors.** NaN and ±∞ never crash a rule
//!   nor win a selection by accident (NaN distances count as +∞; sorts put
//!   NaN last). Preconditions (n, f, m) are checked first and reported as a
//!   typed [`GarError`] naming the rule and the bound.
//!
//! ```
//! use rampart_gar::{Aggregate, CoordinatePhase, Rule};
//!
//! // Six honest gradients near (1, 1) and one attacker.
//! let mut grads: Vec<Vec<f32>> = (0..6).map(|i| vec![1.0 + i as f32 * 0.01, 1.0]).collect();
//! grads.push(vec![1e30, -1e30]);
//! let rows: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
//!
//! let rule = Rule::MultiBulyan { f: 1, m: None, phase: CoordinatePhase::MedianClosest };
//! let agg = rule.aggregate(&rows).unwrap();
//! assert!((agg.output[0] - 1.025).abs() < 0.03 && agg.output[1] == 1.0);
//! assert!(!agg.selected.contains(&6)); // the attacker is never the one kept
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod coord;
#[cfg(target_arch = "x86_64")]
mod coord_kernel;
mod distance;
mod error;
mod float;
mod order;
mod rule;
mod rules;

pub use distance::DistanceMatrix;
pub use error::GarError;
pub use float::Float;
pub use rule::{
    Aggregate, Aggregation, Aggregator, BulyanStep, CoordinatePhase, Details, GeometricInit, Mixed,
    MultiBulyanStep, Rule, nnm, validate,
};
