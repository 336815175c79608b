//! Byzantine behaviours for Rampart testnets, as pure functions.
//!
//! A value attack forges the vector a Byzantine node sends in a round from
//! what a real attacker on the network can see: the honest gradients of that
//! round that have reached it (a rushing, omniscient attacker waits for them).
//! The formulas are those of the project's aggregation specification (§4),
//! which follow ByzFL; the conformance test checks them bit for bit against
//! the shared vectors.
//!
//! ```
//! use rampart_attack::{Attack, ForgeContext};
//! let honest = [[1.0f32, 2.0], [3.0, 4.0]];
//! let rows: Vec<&[f32]> = honest.iter().map(|r| r.as_slice()).collect();
//! let ctx = ForgeContext { n: 3, f: 1, seed: 7 };
//! let v = Attack::SignFlip.forge(&rows, &ctx).unwrap();
//! assert_eq!(v, vec![-2.0, -3.0]);
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod normal;

use rampart_gar::Float;
use serde::{Deserialize, Serialize};

pub use normal::inverse_normal_cdf;

/// Why an attack could not forge a vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AttackError {
    /// The attack needs honest vectors and none reached the attacker.
    #[error("{attack} needs at least {needed} honest vector(s), got {got}")]
    NotEnoughHonest {
        /// Attack name.
        attack: &'static str,
        /// Vectors needed.
        needed: usize,
        /// Vectors available.
        got: usize,
    },
    /// The honest vectors have different dimensions.
    #[error("honest vector {index} has dimension {got}, expected {expected}")]
    DimensionMismatch {
        /// Offending vector.
        index: usize,
        /// Dimension of vector 0.
        expected: usize,
        /// Its dimension.
        got: usize,
    },
    /// A parameter is out of range.
    #[error("{attack}: {reason}")]
    InvalidParameter {
        /// Attack name.
        attack: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What the attacker knows besides the honest vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForgeContext {
    /// Number of nodes in the job (honest and Byzantine).
    pub n: usize,
    /// Declared number of Byzantine nodes.
    pub f: usize,
    /// Seed for randomised attacks (e.g. derived from the round and node).
    pub seed: u64,
}

/// A value attack and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Attack {
    /// `−μ`: the negated mean of the honest vectors.
    SignFlip,
    /// Inner-product manipulation ("fall of empires"): `−τ·μ`.
    Ipm {
        /// τ (ByzFL default 2.0).
        tau: f64,
    },
    /// "A little is enough": `μ + τ·σ`, σ the coordinate-wise standard
    /// deviation with `ddof` (ByzFL: 1). `tau: None` uses the paper's z_max
    /// for the job's n and f.
    Alie {
        /// τ; `None` means z_max(n, f).
        tau: Option<f64>,
        /// Delta degrees of freedom of σ.
        #[serde(default = "one")]
        ddof: usize,
    },
    /// A copy of honest vector `idx` (in the order they reached the attacker).
    Mimic {
        /// Which honest vector.
        #[serde(default)]
        idx: usize,
    },
    /// Independent N(μ, σ²) coordinates.
    Gaussian {
        /// Mean.
        #[serde(default)]
        mu: f64,
        /// Standard deviation.
        sigma: f64,
    },
    /// All coordinates +∞.
    Inf,
    /// All coordinates NaN.
    Nan,
}

fn one() -> usize {
    1
}

impl Attack {
    /// Short identifier (`sign-flip`, `ipm`, `alie`, …).
    pub fn id(&self) -> &'static str {
        match self {
            Attack::SignFlip => "sign-flip",
            Attack::Ipm { .. } => "ipm",
            Attack::Alie { .. } => "alie",
            Attack::Mimic { .. } => "mimic",
            Attack::Gaussian { .. } => "gaussian",
            Attack::Inf => "inf",
            Attack::Nan => "nan",
        }
    }

    /// Forges the Byzantine vector from the honest vectors of the round.
    pub fn forge<T: Float>(
        &self,
        honest: &[&[T]],
        ctx: &ForgeContext,
    ) -> Result<Vec<T>, AttackError> {
        let out64 = match self {
            Attack::SignFlip => mean(self.id(), honest)?.into_iter().map(|v| -v).collect(),
            Attack::Ipm { tau } => ipm(honest, *tau)?,
            Attack::Alie { tau, ddof } => {
                let tau = match tau {
                    Some(t) => *t,
                    None => alie_z_max(ctx.n, ctx.f)?,
                };
                alie(honest, tau, *ddof)?
            }
            Attack::Mimic { idx } => {
                dim(self.id(), honest)?;
                let row = honest.get(*idx).ok_or(AttackError::NotEnoughHonest {
                    attack: "mimic",
                    needed: idx + 1,
                    got: honest.len(),
                })?;
                row.iter().map(|v| v.to_f64()).collect()
            }
            Attack::Gaussian { mu, sigma } => {
                let d = dim(self.id(), honest)?;
                gaussian(d, *mu, *sigma, ctx.seed)?
            }
            Attack::Inf => vec![f64::INFINITY; dim(self.id(), honest)?],
            Attack::Nan => vec![f64::NAN; dim(self.id(), honest)?],
        };
        Ok(out64.into_iter().map(T::from_f64).collect())
    }
}

fn dim<T>(attack: &'static str, honest: &[&[T]]) -> Result<usize, AttackError> {
    let first = honest.first().ok_or(AttackError::NotEnoughHonest {
        attack,
        needed: 1,
        got: 0,
    })?;
    let d = first.len();
    if let Some((index, r)) = honest.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(AttackError::DimensionMismatch {
            index,
            expected: d,
            got: r.len(),
        });
    }
    Ok(d)
}

/// Coordinate-wise mean of the honest vectors, summed in ascending order in
/// `f64` (spec C7).
pub fn mean<T: Float>(attack: &'static str, honest: &[&[T]]) -> Result<Vec<f64>, AttackError> {
    let d = dim(attack, honest)?;
    let h = honest.len() as f64;
    let mut acc = vec![0.0f64; d];
    for row in honest {
        for (a, v) in acc.iter_mut().zip(row.iter()) {
            *a += v.to_f64();
        }
    }
    Ok(acc.into_iter().map(|s| s / h).collect())
}

/// Inner-product manipulation: `−τ·μ`.
pub fn ipm<T: Float>(honest: &[&[T]], tau: f64) -> Result<Vec<f64>, AttackError> {
    Ok(mean("ipm", honest)?.into_iter().map(|v| -tau * v).collect())
}

/// "A little is enough": `μ + τ·σ`, with σ² = Σ(x − μ)² / (h − ddof).
pub fn alie<T: Float>(honest: &[&[T]], tau: f64, ddof: usize) -> Result<Vec<f64>, AttackError> {
    let mu = mean("alie", honest)?;
    let h = honest.len();
    if h <= ddof {
        return Err(AttackError::NotEnoughHonest {
            attack: "alie",
            needed: ddof + 1,
            got: h,
        });
    }
    let denom = (h - ddof) as f64;
    Ok(mu
        .iter()
        .enumerate()
        .map(|(c, m)| {
            let mut ss = 0.0f64;
            for row in honest {
                let t = row[c].to_f64() - m;
                ss += t * t;
            }
            m + tau * (ss / denom).sqrt()
        })
        .collect())
}

/// The paper's z_max for ALIE (Baruch et al. 2019): with s = ⌊n/2 + 1⌋ − f,
/// z_max = Φ⁻¹((n − s)/n).
///
/// ```
/// let z = rampart_attack::alie_z_max(50, 24).unwrap();
/// assert!((z - 1.7506860712521695).abs() < 1e-12);
/// ```
pub fn alie_z_max(n: usize, f: usize) -> Result<f64, AttackError> {
    let s = (n / 2 + 1) as i64 - f as i64;
    let p = (n as i64 - s) as f64 / n as f64;
    if n == 0 || !(p > 0.0 && p < 1.0) {
        return Err(AttackError::InvalidParameter {
            attack: "alie",
            reason: format!("z_max is undefined for n = {n}, f = {f}"),
        });
    }
    Ok(inverse_normal_cdf(p))
}

/// The label a label-flipping node trains on: `C − 1 − y`.
///
/// ```
/// assert_eq!(rampart_attack::flip_label(0, 10), 9);
/// ```
pub fn flip_label(y: u32, num_classes: u32) -> u32 {
    num_classes.saturating_sub(1).saturating_sub(y)
}

/// `d` independent N(μ, σ²) values from a seed (Box–Muller over splitmix64).
pub fn gaussian(d: usize, mu: f64, sigma: f64, seed: u64) -> Result<Vec<f64>, AttackError> {
    if !(sigma.is_finite() && sigma >= 0.0 && mu.is_finite()) {
        return Err(AttackError::InvalidParameter {
            attack: "gaussian",
            reason: format!("need finite mu and sigma >= 0, got mu = {mu}, sigma = {sigma}"),
        });
    }
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(d);
    while out.len() < d {
        // u1 in (0, 1], u2 in [0, 1)
        let u1 = ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        out.push(mu + sigma * r * th.cos());
        if out.len() < d {
            out.push(mu + sigma * r * th.sin());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_the_right_moments() {
        let v = gaussian(200_000, 1.0, 3.0, 42).unwrap();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        assert!((m - 1.0).abs() < 0.03, "{m}");
        assert!((var.sqrt() - 3.0).abs() < 0.03, "{var}");
        assert_eq!(v, gaussian(200_000, 1.0, 3.0, 42).unwrap(), "seeded");
        assert!(gaussian(3, 0.0, -1.0, 1).is_err());
    }

    #[test]
    fn errors_instead_of_panics() {
        let none: [&[f32]; 0] = [];
        let ctx = ForgeContext {
            n: 7,
            f: 1,
            seed: 0,
        };
        for a in [
            Attack::SignFlip,
            Attack::Ipm { tau: 2.0 },
            Attack::Alie { tau: None, ddof: 1 },
            Attack::Mimic { idx: 0 },
            Attack::Gaussian {
                mu: 0.0,
                sigma: 1.0,
            },
            Attack::Inf,
            Attack::Nan,
        ] {
            assert!(a.forge(&none, &ctx).is_err(), "{}", a.id());
        }
        let one = [[1.0f32]];
        let rows: Vec<&[f32]> = one.iter().map(|r| r.as_slice()).collect();
        assert!(
            Attack::Alie {
                tau: Some(1.0),
                ddof: 1
            }
            .forge(&rows, &ctx)
            .is_err()
        );
        assert!(Attack::Mimic { idx: 3 }.forge(&rows, &ctx).is_err());
        assert!(alie_z_max(0, 0).is_err());
        assert!(alie_z_max(4, 3).is_err());
    }

    #[test]
    fn attacks_deserialise_from_scenario_text() {
        let a: Attack = serde_json::from_str(r#"{"kind":"alie"}"#).unwrap();
        assert_eq!(a, Attack::Alie { tau: None, ddof: 1 });
        let g: Attack = serde_json::from_str(r#"{"kind":"gaussian","sigma":100.0}"#).unwrap();
        assert_eq!(
            g,
            Attack::Gaussian {
                mu: 0.0,
                sigma: 100.0
            }
        );
    }
}
