//! The job description shared by the roster file and the scenarios: the
//! rule, the model, the data, the partition and the hyper-parameters, plus
//! the behaviours (roles) a testnet node may play.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use rampart_gar::{CoordinatePhase, GeometricInit, Rule};
use serde::{Deserialize, Serialize};

/// Aggregation rules a job may use (the `rampart aggregate` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleName {
    /// Coordinate-wise mean: no robustness (the baseline).
    Average,
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean (drops f at each end).
    TrimmedMean,
    /// Krum.
    Krum,
    /// Multi-Krum (with m).
    MultiKrum,
    /// Bulyan over Krum.
    Bulyan,
    /// Multi-Bulyan (with m): the default.
    MultiBulyan,
    /// Smoothed Weiszfeld geometric median (ν = 1e-6, 4 iterations).
    GeometricMedian,
    /// Minimum-diameter averaging.
    Mda,
}

impl RuleName {
    /// Every rule, for help texts and the matrix.
    pub const ALL: [RuleName; 9] = [
        Self::Average,
        Self::Median,
        Self::TrimmedMean,
        Self::Krum,
        Self::MultiKrum,
        Self::Bulyan,
        Self::MultiBulyan,
        Self::GeometricMedian,
        Self::Mda,
    ];

    /// The rule's name in files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Self::Average => "average",
            Self::Median => "median",
            Self::TrimmedMean => "trimmed-mean",
            Self::Krum => "krum",
            Self::MultiKrum => "multi-krum",
            Self::Bulyan => "bulyan",
            Self::MultiBulyan => "multi-bulyan",
            Self::GeometricMedian => "geometric-median",
            Self::Mda => "mda",
        }
    }

    /// The typed rule with the job's f and m. An m given to a rule without
    /// one is an error rather than silently dropped.
    pub fn to_rule(self, f: usize, m: Option<usize>) -> Result<Rule> {
        if m.is_some() && !matches!(self, Self::MultiKrum | Self::MultiBulyan) {
            bail!(
                "m applies only to multi-krum and multi-bulyan, not to {}",
                self.name()
            );
        }
        Ok(match self {
            Self::Average => Rule::Average,
            Self::Median => Rule::Median,
            Self::TrimmedMean => Rule::TrimmedMean { f },
            Self::Krum => Rule::Krum { f },
            Self::MultiKrum => Rule::MultiKrum { f, m },
            Self::Bulyan => Rule::Bulyan { f },
            Self::MultiBulyan => Rule::MultiBulyan {
                f,
                m,
                phase: CoordinatePhase::MedianClosest,
            },
            Self::GeometricMedian => Rule::GeometricMedian {
                nu: 1e-6,
                iters: 4,
                init: GeometricInit::Mean,
            },
            Self::Mda => Rule::Mda { f },
        })
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuleName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .with_context(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
                format!("unknown rule {s:?} (one of: {})", all.join(", "))
            })
    }
}

/// Built-in model architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelName {
    /// Multinomial logistic regression.
    Logreg,
    /// Multi-layer perceptron with the job's `hidden` widths.
    Mlp,
    /// The small CNN (image data only).
    Cnn,
}

/// Data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataName {
    /// The built-in synthetic Gaussian mixture (32 features, 10 classes,
    /// 20,000 training and 4,000 test samples), generated from the job seed.
    Synthetic,
    /// MNIST IDX files in the node's data directory.
    Mnist,
    /// Fashion-MNIST IDX files in the node's data directory.
    FashionMnist,
    /// CIFAR-10 binary batches in the node's data directory.
    Cifar10,
}

impl DataName {
    /// The name in files and flags (`synthetic`, `mnist`, `fashion-mnist`,
    /// `cifar10`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Synthetic => "synthetic",
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::Cifar10 => "cifar10",
        }
    }

    /// The data set read from a directory, `None` for the synthetic one
    /// (generated from the job seed).
    pub fn file_kind(self) -> Option<rampart_learn::DatasetKind> {
        match self {
            Self::Synthetic => None,
            Self::Mnist => Some(rampart_learn::DatasetKind::Mnist),
            Self::FashionMnist => Some(rampart_learn::DatasetKind::FashionMnist),
            Self::Cifar10 => Some(rampart_learn::DatasetKind::Cifar10),
        }
    }
}

impl FromStr for DataName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Synthetic,
            Self::Mnist,
            Self::FashionMnist,
            Self::Cifar10,
        ]
        .into_iter()
        .find(|d| d.name() == s)
        .with_context(|| {
            format!("unknown data set {s:?} (synthetic, mnist, fashion-mnist or cifar10)")
        })
    }
}

/// How the training set is split across the nodes: `iid` or
/// `dirichlet:ALPHA` (written as that string in files).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PartitionSpec {
    /// Seeded shuffle, equal parts.
    Iid,
    /// Dirichlet(α) label skew.
    Dirichlet(f64),
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Iid => f.write_str("iid"),
            Self::Dirichlet(a) => write!(f, "dirichlet:{a}"),
        }
    }
}

impl FromStr for PartitionSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "iid" {
            return Ok(Self::Iid);
        }
        if let Some(a) = s.strip_prefix("dirichlet:") {
            let alpha: f64 = a
                .parse()
                .with_context(|| format!("partition {s:?}: alpha is not a number"))?;
            if !(alpha.is_finite() && alpha > 0.0) {
                bail!("partition {s:?}: alpha must be positive");
            }
            return Ok(Self::Dirichlet(alpha));
        }
        bail!("unknown partition {s:?} (iid or dirichlet:ALPHA)")
    }
}

impl TryFrom<String> for PartitionSpec {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<PartitionSpec> for String {
    fn from(p: PartitionSpec) -> Self {
        p.to_string()
    }
}

/// Everything the members of a job must agree on. Its canonical form is
/// hashed into the job id, so two nodes with different hyper-parameters
/// never accept each other's messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Free-form job name (part of the job id).
    pub name: String,
    /// Seed of the model initialisation, the synthetic data, the partition
    /// and the batch sampling.
    pub seed: u64,
    /// Rounds to train.
    pub rounds: u64,
    /// Aggregation rule.
    pub rule: RuleName,
    /// Declared number of Byzantine members.
    pub f: usize,
    /// Multi-Krum / multi-Bulyan size (default n − f − 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    /// Model architecture.
    pub model: ModelName,
    /// Hidden widths of the MLP.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Data set.
    pub data: DataName,
    /// Partition of the training set across the members.
    pub partition: PartitionSpec,
    /// Learning rate (constant).
    pub lr: f32,
    /// Worker-side momentum β.
    pub momentum: f32,
    /// Momentum dampening: each gradient enters the momentum scaled by
    /// 1 − dampening. 0 (the default, left out of roster files) is
    /// PyTorch's momentum; `dampening = momentum` is the moving average of
    /// the Byzantine-robustness literature and ByzFL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dampening: f32,
    /// Mini-batch size.
    pub batch: usize,
    /// How long a round waits for every input before aggregating a quorum.
    pub round_timeout_ms: u64,
    /// How long a node waits for the whole roster before starting round 0.
    pub start_timeout_ms: u64,
    /// Drift-control period K in rounds (0: off).
    #[serde(default)]
    pub drift_period: u64,
    /// Evaluate the test accuracy every this many rounds (and after the
    /// last); 0 evaluates only after the last.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// What honest nodes do with inputs holding NaN or ±∞: `reject` them at
    /// validation (the default), or `aggregate` them (the rule must cope:
    /// the Inf and NaN attacks then reach it).
    #[serde(default, skip_serializing_if = "NonFinite::is_reject")]
    pub non_finite: NonFinite,
    /// How gradients travel: `f32` (the default, left out of roster files)
    /// or `bf16` (half the bytes; each sender rounds its gradient, models
    /// stay f32).
    #[serde(default, skip_serializing_if = "GradientEncoding::is_f32")]
    pub encoding: GradientEncoding,
}

/// How a job's gradients travel (the job's `encoding` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradientEncoding {
    /// IEEE binary32, 4 bytes a value.
    #[default]
    F32,
    /// bfloat16, 2 bytes a value.
    Bf16,
}

impl GradientEncoding {
    /// Whether this is the default, [`GradientEncoding::F32`].
    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }

    /// The wire encoding.
    pub fn wire(self) -> rampart_node::Encoding {
        match self {
            Self::F32 => rampart_node::Encoding::F32Le,
            Self::Bf16 => rampart_node::Encoding::Bf16Le,
        }
    }
}

impl FromStr for GradientEncoding {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" => Self::F32,
            "bf16" => Self::Bf16,
            _ => bail!("unknown encoding {s:?} (f32 or bf16)"),
        })
    }
}

impl std::fmt::Display for GradientEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire().name())
    }
}

/// Treatment of inputs holding NaN or ±∞ (the job's `non_finite` key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonFinite {
    /// Refused at validation, like any other invalid input.
    #[default]
    Reject,
    /// Handed to the aggregation rule.
    Aggregate,
}

impl NonFinite {
    /// Whether this is the default, [`NonFinite::Reject`].
    pub fn is_reject(&self) -> bool {
        *self == Self::Reject
    }
}

pub(crate) fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

pub(crate) fn default_hidden() -> Vec<usize> {
    vec![64]
}

pub(crate) fn default_eval_every() -> u64 {
    5
}

impl JobSpec {
    /// The typed rule.
    pub fn rule(&self) -> Result<Rule> {
        self.rule.to_rule(self.f, self.m)
    }

    /// Whether round `round` (0-based) is evaluated.
    pub fn evaluates(&self, round: u64) -> bool {
        round + 1 == self.rounds
            || (self.eval_every > 0 && (round + 1).is_multiple_of(self.eval_every))
    }

    /// Checks the fields that do not depend on the roster.
    pub fn validate(&self) -> Result<()> {
        if self.rounds == 0 {
            bail!("rounds must be positive");
        }
        if self.batch == 0 {
            bail!("batch must be positive");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            bail!("lr must be finite and non-negative");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("momentum must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.dampening) {
            bail!("dampening must be in [0, 1]");
        }
        if self.round_timeout_ms == 0 {
            bail!("round_timeout_ms must be positive");
        }
        if self.model == ModelName::Cnn && self.data == DataName::Synthetic {
            bail!("the cnn model needs image data (mnist, fashion-mnist or cifar10)");
        }
        self.rule()?;
        Ok(())
    }
}

/// What a node does instead of (or as) honest training.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Sends the negated mean of the honest gradients.
    SignFlip,
    /// Inner-product manipulation, −τ·μ.
    Ipm {
        /// τ.
        tau: f64,
    },
    /// "A little is enough", μ + τ·σ (`None`: the paper's z_max).
    Alie {
        /// τ.
        tau: Option<f64>,
    },
    /// Copies honest gradient `idx`.
    Mimic {
        /// Which one.
        idx: usize,
    },
    /// Independent N(μ, σ²) coordinates.
    Gaussian {
        /// Mean.
        mu: f64,
        /// Standard deviation.
        sigma: f64,
    },
    /// All +∞ (signed correctly, so it reaches validation).
    Inf,
    /// All NaN.
    Nan,
    /// Trains honestly on labels mapped y → C − 1 − y.
    LabelFlip,
    /// Sends nothing.
    Silent,
    /// Sends undecodable bytes.
    Garbage,
    /// Sends a validly signed gradient of the wrong dimension.
    WrongDimension,
    /// Sends a validly signed gradient holding one NaN.
    NonFinite,
    /// Re-sends an older round's payload.
    Replay,
    /// Signs two payloads for the round and sends each to half the peers.
    Equivocate,
    /// Sends its gradient under the name of the next roster member, with
    /// its own signature.
    Impersonate,
    /// Pushes payload bytes changed after signing their header.
    Tamper,
    /// Sends a validly signed gradient dated 1000 rounds ahead.
    FutureRound,
    /// Sends a validly signed gradient of another job.
    WrongJob,
    /// Pushes frames over the peers' size limit.
    Oversize,
    /// Sends its honest input `ms` milliseconds late.
    Delay {
        /// The delay.
        ms: u64,
    },
    /// Trains honestly until the testnet kills it after round `at` (it is
    /// not restarted).
    Crash {
        /// The last round it completes.
        at: u64,
    },
}

impl Behaviour {
    /// Every behaviour name.
    pub const NAMES: [&'static str; 22] = [
        "honest",
        "sign-flip",
        "ipm",
        "alie",
        "mimic",
        "gaussian",
        "inf",
        "nan",
        "label-flip",
        "silent",
        "garbage",
        "wrong-dimension",
        "non-finite",
        "replay",
        "equivocate",
        "impersonate",
        "tamper",
        "future-round",
        "wrong-job",
        "oversize",
        "delay",
        "crash",
    ];

    /// The behaviour's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::SignFlip => "sign-flip",
            Self::Ipm { .. } => "ipm",
            Self::Alie { .. } => "alie",
            Self::Mimic { .. } => "mimic",
            Self::Gaussian { .. } => "gaussian",
            Self::Inf => "inf",
            Self::Nan => "nan",
            Self::LabelFlip => "label-flip",
            Self::Silent => "silent",
            Self::Garbage => "garbage",
            Self::WrongDimension => "wrong-dimension",
            Self::NonFinite => "non-finite",
            Self::Replay => "replay",
            Self::Equivocate => "equivocate",
            Self::Impersonate => "impersonate",
            Self::Tamper => "tamper",
            Self::FutureRound => "future-round",
            Self::WrongJob => "wrong-job",
            Self::Oversize => "oversize",
            Self::Delay { .. } => "delay",
            Self::Crash { .. } => "crash",
        }
    }

    /// Whether the node forges its input from the honest ones it receives
    /// (a value attack other than label flip, which is a data attack).
    pub fn is_value_attack(&self) -> bool {
        matches!(
            self,
            Self::SignFlip
                | Self::Ipm { .. }
                | Self::Alie { .. }
                | Self::Mimic { .. }
                | Self::Gaussian { .. }
                | Self::Inf
                | Self::Nan
        )
    }

    /// Whether the node is Byzantine.
    pub fn is_byzantine(&self) -> bool {
        *self != Self::Honest
    }

    /// Builds a behaviour from its name and `key=value` parameters.
    pub fn from_parts(name: &str, params: &[(String, f64)]) -> Result<Self> {
        let mut take = Params {
            name,
            params,
            used: Vec::new(),
        };
        let b = match name {
            "honest" => Self::Honest,
            "sign-flip" => Self::SignFlip,
            "ipm" => Self::Ipm {
                tau: take.get("tau")?.unwrap_or(2.0),
            },
            "alie" => Self::Alie {
                tau: take.get("tau")?,
            },
            "mimic" => Self::Mimic {
                idx: take.get("idx")?.map_or(0, |v| v as usize),
            },
            "gaussian" => Self::Gaussian {
                mu: take.get("mu")?.unwrap_or(0.0),
                sigma: take.get("sigma")?.unwrap_or(200.0),
            },
            "inf" => Self::Inf,
            "nan" => Self::Nan,
            "label-flip" => Self::LabelFlip,
            "silent" => Self::Silent,
            "garbage" => Self::Garbage,
            "wrong-dimension" => Self::WrongDimension,
            "non-finite" => Self::NonFinite,
            "replay" => Self::Replay,
            "equivocate" => Self::Equivocate,
            "impersonate" => Self::Impersonate,
            "tamper" => Self::Tamper,
            "future-round" => Self::FutureRound,
            "wrong-job" => Self::WrongJob,
            "oversize" => Self::Oversize,
            "delay" => Self::Delay {
                ms: take.get("ms")?.map_or(1000, |v| v.max(0.0) as u64),
            },
            "crash" => Self::Crash {
                at: take.get("at")?.map_or(10, |v| v.max(0.0) as u64),
            },
            _ => bail!(
                "unknown behaviour {name:?} (one of: {})",
                Self::NAMES.join(", ")
            ),
        };
        take.finish()?;
        Ok(b)
    }
}

struct Params<'a> {
    name: &'a str,
    params: &'a [(String, f64)],
    used: Vec<&'static str>,
}

impl Params<'_> {
    fn get(&mut self, key: &'static str) -> Result<Option<f64>> {
        self.used.push(key);
        let v = self.params.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        if let Some(v) = v
            && !v.is_finite()
        {
            bail!("{}: {key} must be finite", self.name);
        }
        Ok(v)
    }

    fn finish(self) -> Result<()> {
        if let Some((k, _)) = self
            .params
            .iter()
            .find(|(k, _)| !self.used.contains(&k.as_str()))
        {
            bail!("behaviour {} takes no parameter {k:?}", self.name);
        }
        Ok(())
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Self::Ipm { tau } => write!(f, ":tau={tau}"),
            Self::Alie { tau: Some(t) } => write!(f, ":tau={t}"),
            Self::Mimic { idx } if *idx != 0 => write!(f, ":idx={idx}"),
            Self::Delay { ms } => write!(f, ":ms={ms}"),
            Self::Crash { at } => write!(f, ":at={at}"),
            Self::Gaussian { mu, sigma } => {
                if *mu != 0.0 {
                    write!(f, ":mu={mu}")?;
                }
                write!(f, ":sigma={sigma}")
            }
            _ => Ok(()),
        }
    }
}

/// `NAME[:KEY=VALUE]...`, e.g. `ipm:tau=10` or `alie`.
impl FromStr for Behaviour {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let params = parts.map(parse_param).collect::<Result<Vec<_>>>()?;
        Self::from_parts(name, &params)
    }
}

fn parse_param(p: &str) -> Result<(String, f64)> {
    let (k, v) = p
        .split_once('=')
        .with_context(|| format!("behaviour parameter {p:?} is not KEY=VALUE"))?;
    let v: f64 = v
        .parse()
        .with_context(|| format!("behaviour parameter {k}: {v:?} is not a number"))?;
    Ok((k.to_owned(), v))
}

/// `BEHAVIOUR[:KEY=VALUE]...:COUNT` (the count may be left out: 1), or
/// `none` for no Byzantine node: the `--byzantine` flag of `rampart testnet`.
#[derive(Clone, Debug, PartialEq)]
pub struct ByzantineFlag(pub Option<(Behaviour, usize)>);

impl FromStr for ByzantineFlag {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "none" {
            return Ok(Self(None));
        }
        let (spec, count) = match s.rsplit_once(':') {
            Some((head, last)) if !last.contains('=') => {
                let c: usize = last.parse().with_context(|| {
                    format!("--byzantine {s:?}: count {last:?} is not a number")
                })?;
                (head, c)
            }
            _ => (s, 1),
        };
        let b: Behaviour = spec.parse()?;
        if !b.is_byzantine() {
            bail!("--byzantine {s:?}: honest is not a Byzantine behaviour (use none)");
        }
        Ok(Self(Some((b, count))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_strings_round_trip() {
        for s in [
            "alie",
            "alie:tau=1.5",
            "ipm:tau=10",
            "gaussian:sigma=100",
            "inf",
            "silent",
            "delay:ms=4000",
            "crash:at=20",
        ] {
            let b: Behaviour = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
        }
        assert_eq!(
            "ipm".parse::<Behaviour>().unwrap(),
            Behaviour::Ipm { tau: 2.0 }
        );
        assert!("ipm:sigma=1".parse::<Behaviour>().is_err());
        assert!("nope".parse::<Behaviour>().is_err());
    }

    #[test]
    fn byzantine_flag() {
        let f: ByzantineFlag = "ipm:tau=10:2".parse().unwrap();
        assert_eq!(f.0, Some((Behaviour::Ipm { tau: 10.0 }, 2)));
        let f: ByzantineFlag = "alie".parse().unwrap();
        assert_eq!(f.0, Some((Behaviour::Alie { tau: None }, 1)));
        assert_eq!("none".parse::<ByzantineFlag>().unwrap().0, None);
        assert!("honest:1".parse::<ByzantineFlag>().is_err());
    }

    #[test]
    fn partition_and_rule_strings() {
        assert_eq!("iid".parse::<PartitionSpec>().unwrap(), PartitionSpec::Iid);
        assert_eq!(
            "dirichlet:0.5".parse::<PartitionSpec>().unwrap(),
            PartitionSpec::Dirichlet(0.5)
        );
        assert!("dirichlet:-1".parse::<PartitionSpec>().is_err());
        assert_eq!(
            "multi-bulyan".parse::<RuleName>().unwrap(),
            RuleName::MultiBulyan
        );
        assert!(RuleName::Median.to_rule(1, Some(3)).is_err());
    }
}
