//! Node configuration: a builder whose `build()` checks every invariant.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rampart_gar::{Aggregate, GarError, Rule};
use sha2::{Digest, Sha256};

use crate::adversary::{Attack, ValueAttack};
use crate::round::NodeRule;
use crate::trainer::Trainer;
use crate::validate::NonFinitePolicy;
use crate::wire::{ENVELOPE_LIMIT, Encoding, JobId};

/// File name of the checkpoint inside the checkpoint directory.
pub const CHECKPOINT_FILE: &str = "rampart-node.ckpt";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No keypair was given.
    #[error("no keypair: call `keypair`")]
    MissingKeypair,
    /// No trainer was given.
    #[error("no trainer: call `trainer`")]
    MissingTrainer,
    /// The keypair is not Ed25519.
    #[error("the keypair must be Ed25519")]
    NotEd25519,
    /// The roster is empty or lists a member twice.
    #[error("the roster must list at least one member, each once (got {len}, {distinct} distinct)")]
    BadRoster {
        /// Entries given.
        len: usize,
        /// Distinct entries.
        distinct: usize,
    },
    /// This node's key is not a roster member.
    #[error("this node ({0}) is not in the roster")]
    NotInRoster(PeerId),
    /// A bootstrap address names a peer outside the roster.
    #[error("bootstrap peer {0} is not in the roster")]
    BootstrapNotInRoster(PeerId),
    /// The rule's precondition fails for the roster size.
    #[error("rule {rule} cannot run with a roster of {n}: {source}")]
    Rule {
        /// Rule identifier.
        rule: &'static str,
        /// Roster size.
        n: usize,
        /// The rule's complaint.
        #[source]
        source: GarError,
    },
    /// The trainer's dimension is zero or over `u32::MAX`.
    #[error("model dimension {0} is out of range")]
    Dimension(usize),
    /// The frame limit cannot hold one gradient.
    #[error("max_frame {max_frame} cannot hold a gradient of {needed} bytes")]
    FrameTooSmall {
        /// Configured limit.
        max_frame: usize,
        /// Bytes a gradient frame needs.
        needed: usize,
    },
    /// A duration or count that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// An option needs a cargo feature this build lacks.
    #[error("{0} needs rampart-node built with the `{0}` cargo feature")]
    FeatureMissing(&'static str),
}

/// The configuration of one node; see [`NodeConfigBuilder`].
pub struct NodeConfig {
    pub(crate) keypair: Keypair,
    pub(crate) local: PeerId,
    /// Sorted roster (the aggregation order).
    pub(crate) roster: Vec<PeerId>,
    pub(crate) job: JobId,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(crate) rule: NodeRule,
    pub(crate) rounds: u64,
    pub(crate) round_timeout: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) non_finite: NonFinitePolicy,
    pub(crate) max_frame: usize,
    pub(crate) max_ahead: u64,
    pub(crate) dim: usize,
    pub(crate) gradient_encoding: Encoding,
    pub(crate) trainer: Box<dyn Trainer>,
    pub(crate) script: Vec<Attack>,
    pub(crate) value_attack: Option<ValueAttack>,
    pub(crate) checkpoint: Option<PathBuf>,
    pub(crate) drift_period: u64,
    /// Discover roster peers on the local network (feature `mdns`).
    #[cfg_attr(not(feature = "mdns"), allow(dead_code))]
    pub(crate) mdns: bool,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("local", &self.local)
            .field("roster", &self.roster)
            .field("job", &self.job)
            .field("rule", &self.rule)
            .field("rounds", &self.rounds)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A builder with the defaults.
    pub fn builder() -> NodeConfigBuilder {
        NodeConfigBuilder::default()
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The job id (hash of the canonical job description).
    pub fn job(&self) -> JobId {
        self.job
    }

    /// The roster, sorted by PeerId.
    pub fn roster(&self) -> &[PeerId] {
        &self.roster
    }
}

/// Builder of a [`NodeConfig`].
pub struct NodeConfigBuilder {
    keypair: Option<Keypair>,
    roster: Vec<PeerId>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    rule: NodeRule,
    rounds: u64,
    round_timeout: Duration,
    start_timeout: Duration,
    non_finite: NonFinitePolicy,
    max_frame: Option<usize>,
    max_ahead: u64,
    job_tag: Vec<u8>,
    gradient_encoding: Encoding,
    trainer: Option<Box<dyn Trainer>>,
    script: Vec<Attack>,
    value_attack: Option<ValueAttack>,
    checkpoint_dir: Option<PathBuf>,
    drift_period: u64,
    mdns: bool,
}

impl Default for NodeConfigBuilder {
    fn default() -> Self {
        Self {
            keypair: None,
            roster: Vec::new(),
            listen: Vec::new(),
            bootstrap: Vec::new(),
            rule: NodeRule::Builtin(Rule::MultiBulyan {
                f: 0,
                m: None,
                phase: rampart_gar::CoordinatePhase::MedianClosest,
            }),
            rounds: 1,
            round_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            non_finite: NonFinitePolicy::Reject,
            max_frame: None,
            max_ahead: 2,
            job_tag: Vec::new(),
            gradient_encoding: Encoding::F32Le,
            trainer: None,
            script: Vec::new(),
            value_attack: None,
            checkpoint_dir: None,
            drift_period: 0,
            mdns: false,
        }
    }
}

impl NodeConfigBuilder {
    /// This node's Ed25519 identity (signs headers, authenticates the transport).
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// The job's members (this node included).
    pub fn roster(mut self, roster: impl IntoIterator<Item = PeerId>) -> Self {
        self.roster = roster.into_iter().collect();
        self
    }

    /// An address to listen on (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// A roster peer's address, dialled at start.
    pub fn bootstrap(mut self, peer: PeerId, addr: Multiaddr) -> Self {
        self.bootstrap.push((peer, addr));
        self
    }

    /// The aggregation rule (with its f and m).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rule = NodeRule::Builtin(rule);
        self
    }

    /// An aggregation rule of your own instead of one of rampart-gar's, said
    /// to tolerate `f` Byzantine inputs out of the roster's n.
    ///
    /// The node treats it as it treats its own rules:
    /// * it runs on the trainer's thread, never on the async executor, with
    ///   the round's inputs sorted by sender PeerId;
    /// * a round waits for every member's input, or, after its timeout,
    ///   aggregates as soon as it holds n − f inputs that
    ///   [`Aggregate::check`] accepts;
    /// * [`build`](Self::build) refuses f ≥ n and a roster size that
    ///   [`Aggregate::check`] refuses;
    /// * an output of another length than the inputs' stops the node with
    ///   [`NodeError::RuleOutput`](crate::NodeError::RuleOutput).
    ///
    /// Honest nodes agree bit for bit only if the rule is a deterministic
    /// function of its inputs and their order. The rule's
    /// [`name`](Aggregate::name) and `f` are part of the job id; its other
    /// parameters are not, so put them in the [`job_tag`](Self::job_tag).
    ///
    /// ```
    /// use libp2p::identity::Keypair;
    /// use rampart_gar::{Aggregate, Aggregation, GarError};
    /// use rampart_node::{LinearRegression, NodeConfig};
    ///
    /// /// The coordinate-wise mean of the inputs after dropping, per
    /// /// coordinate, the f largest and the f smallest values.
    /// struct Trim(usize);
    /// impl Aggregate<f32> for Trim {
    ///     fn name(&self) -> &'static str { "my-trim" }
    ///     fn check(&self, n: usize) -> Result<(), GarError> {
    ///         if n > 2 * self.0 { Ok(()) } else {
    ///             Err(GarError::Precondition { rule: "my-trim", n, f: self.0, m: None, bound: "n > 2f" })
    ///         }
    ///     }
    ///     fn aggregate(&self, inputs: &[&[f32]]) -> Result<Aggregation<f32>, GarError> {
    ///         let d = rampart_gar::validate(inputs)?;
    ///         self.check(inputs.len())?;
    ///         let keep = inputs.len() - 2 * self.0;
    ///         let out = (0..d).map(|c| {
    ///             let mut v: Vec<f32> = inputs.iter().map(|x| x[c]).collect();
    ///             v.sort_by(f32::total_cmp);
    ///             v[self.0..self.0 + keep].iter().sum::<f32>() / keep as f32
    ///         });
    ///         Ok(Aggregation::new(out.collect()))
    ///     }
    /// }
    ///
    /// let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
    /// let builder = || NodeConfig::builder()
    ///     .keypair(keys[0].clone())
    ///     .roster(keys.iter().map(|k| k.public().to_peer_id()))
    ///     .trainer(LinearRegression::new(8, 1, 0, 16));
    /// let config = builder().custom_rule(Trim(1), 1).build().unwrap();
    /// // The rule is part of the job: another f is another job.
    /// assert_ne!(config.job(), builder().custom_rule(Trim(1), 0).build().unwrap().job());
    /// // n = 4 cannot trim 2 from each end.
    /// assert!(builder().custom_rule(Trim(2), 1).build().is_err());
    /// ```
    pub fn custom_rule(mut self, rule: impl Aggregate<f32> + 'static, f: usize) -> Self {
        self.rule = NodeRule::Custom {
            rule: Arc::new(rule),
            f,
        };
        self
    }

    /// Rounds to train.
    pub fn rounds(mut self, rounds: u64) -> Self {
        self.rounds = rounds;
        self
    }

    /// How long a round waits for all inputs before aggregating a quorum.
    pub fn round_timeout(mut self, t: Duration) -> Self {
        self.round_timeout = t;
        self
    }

    /// How long the node waits to be connected to the whole roster before
    /// starting round 0 with a quorum of connections.
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }

    /// Treatment of payloads with NaN or ±∞.
    pub fn non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.non_finite = policy;
        self
    }

    /// Largest frame accepted or sent (default: one gradient plus the envelope).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    /// Rounds ahead of the current one whose inputs are buffered.
    pub fn max_ahead(mut self, rounds: u64) -> Self {
        self.max_ahead = rounds;
        self
    }

    /// How gradients travel: [`Encoding::F32Le`] (the default) or
    /// [`Encoding::Bf16Le`], half the bytes, each value rounded to bfloat16
    /// by its sender (who aggregates its own input rounded the same way, so
    /// honest nodes still agree bit for bit). Models (drift control,
    /// catch-up) always travel as f32. Part of the job id.
    pub fn gradient_encoding(mut self, encoding: Encoding) -> Self {
        self.gradient_encoding = encoding;
        self
    }

    /// Extra bytes mixed into the job id (e.g. the job's name and seed), so
    /// two jobs of one roster do not accept each other's messages.
    pub fn job_tag(mut self, tag: impl Into<Vec<u8>>) -> Self {
        self.job_tag = tag.into();
        self
    }

    /// The local model.
    pub fn trainer(mut self, trainer: impl Trainer) -> Self {
        self.trainer = Some(Box::new(trainer));
        self
    }

    /// Directory of this node's checkpoint: written after every round
    /// (atomically, by the trainer), and resumed from at start when present;
    /// a resumed node then catches up from its peers' models. The directory
    /// also holds the record of the last gradient the node signed, so that
    /// a restarted node never signs a different one for the same round
    /// (`docs/protocol.md`, "Checkpoints, restart and catch-up").
    pub fn checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Drift control: after every `k`-th round (rounds k − 1, 2k − 1, …)
    /// the nodes exchange their parameters and replace them by the
    /// coordinate-wise median of the models received (see
    /// [`crate::drift_step`]). 0 (the default) turns it off. Every member
    /// must use the same period; it is not part of the job id, so put it in
    /// the [`job_tag`](Self::job_tag) (the CLI's roster tag hashes the whole
    /// job description, this period included).
    pub fn drift_period(mut self, k: u64) -> Self {
        self.drift_period = k;
        self
    }

    /// mDNS discovery of roster peers on the local network (off by
    /// default; for LANs). Discovered roster members are dialled like
    /// bootstrap peers; anyone else found is ignored (and could not connect
    /// anyway). Needs the `mdns` cargo feature: without it, `build()`
    /// refuses `mdns(true)`.
    pub fn mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    /// Testnets only: makes this node Byzantine. In round r it follows
    /// `script[r % script.len()]` instead of the protocol (empty: honest).
    pub fn adversary(mut self, script: impl IntoIterator<Item = Attack>) -> Self {
        self.script = script.into_iter().collect();
        self
    }

    /// Testnets only: makes this node a value attacker that forges its
    /// input of every round from the honest inputs that reached it (see
    /// [`ValueAttack`]); it takes precedence over [`Self::adversary`].
    pub fn value_attack(mut self, attack: ValueAttack) -> Self {
        self.value_attack = Some(attack);
        self
    }

    /// Checks every invariant and builds the configuration.
    pub fn build(self) -> Result<NodeConfig, ConfigError> {
        let keypair = self.keypair.ok_or(ConfigError::MissingKeypair)?;
        if keypair.clone().try_into_ed25519().is_err() {
            return Err(ConfigError::NotEd25519);
        }
        let local = keypair.public().to_peer_id();
        let trainer = self.trainer.ok_or(ConfigError::MissingTrainer)?;
        let mut roster = self.roster.clone();
        roster.sort();
        roster.dedup();
        if roster.is_empty() || roster.len() != self.roster.len() {
            return Err(ConfigError::BadRoster {
                len: self.roster.len(),
                distinct: roster.len(),
            });
        }
        if !roster.contains(&local) {
            return Err(ConfigError::NotInRoster(local));
        }
        if let Some((p, _)) = self.bootstrap.iter().find(|(p, _)| !roster.contains(p)) {
            return Err(ConfigError::BootstrapNotInRoster(*p));
        }
        self.rule
            .check(roster.len())
            .map_err(|source| ConfigError::Rule {
                rule: self.rule.id(),
                n: roster.len(),
                source,
            })?;
        let dim = trainer.dim();
        if dim == 0 || u32::try_from(dim).is_err() {
            return Err(ConfigError::Dimension(dim));
        }
        let needed = dim * 4 + ENVELOPE_LIMIT;
        let max_frame = self.max_frame.unwrap_or(needed);
        if max_frame < needed {
            return Err(ConfigError::FrameTooSmall { max_frame, needed });
        }
        if self.rounds == 0 {
            return Err(ConfigError::Zero("rounds"));
        }
        if self.round_timeout.is_zero() {
            return Err(ConfigError::Zero("round_timeout"));
        }
        if self.mdns && !cfg!(feature = "mdns") {
            return Err(ConfigError::FeatureMissing("mdns"));
        }
        let job = job_id_described(
            &roster,
            &format!("{:?}", self.rule),
            dim,
            self.gradient_encoding,
            &self.job_tag,
        );
        Ok(NodeConfig {
            keypair,
            local,
            roster,
            job,
            listen: self.listen,
            bootstrap: self.bootstrap,
            rule: self.rule,
            rounds: self.rounds,
            round_timeout: self.round_timeout,
            start_timeout: self.start_timeout,
            non_finite: self.non_finite,
            max_frame,
            max_ahead: self.max_ahead,
            dim,
            gradient_encoding: self.gradient_encoding,
            trainer,
            script: self.script,
            value_attack: self.value_attack,
            checkpoint: self.checkpoint_dir.map(|d| d.join(CHECKPOINT_FILE)),
            drift_period: self.drift_period,
            mdns: self.mdns,
        })
    }
}

/// The job id of a job whose gradients travel as f32: SHA-256 over a
/// domain tag, the sorted roster, the rule (its debug form carries every
/// parameter), the dimension and the user's tag. [`NodeConfigBuilder::build`]
/// computes it ([`job_id_for`]); tools that print a job's id without running
/// a node (`rampart roster id`) call it directly.
pub fn job_id(sorted_roster: &[PeerId], rule: &Rule, dim: usize, tag: &[u8]) -> JobId {
    job_id_for(sorted_roster, rule, dim, Encoding::F32Le, tag)
}

/// [`job_id`] of a job whose gradients travel in `encoding`: any other
/// encoding than f32 is part of the id (f32 is left out, so the ids of f32
/// jobs are those of [`job_id`]).
pub fn job_id_for(
    sorted_roster: &[PeerId],
    rule: &Rule,
    dim: usize,
    encoding: Encoding,
    tag: &[u8],
) -> JobId {
    job_id_described(sorted_roster, &format!("{rule:?}"), dim, encoding, tag)
}

/// The job id with the rule given by its description: a built-in rule's
/// debug form (which carries every parameter), or `Custom { name, f }`,
/// which no built-in rule's debug form can be.
fn job_id_described(
    sorted_roster: &[PeerId],
    rule: &str,
    dim: usize,
    encoding: Encoding,
    tag: &[u8],
) -> JobId {
    let mut tag = tag.to_vec();
    if encoding != Encoding::F32Le {
        tag.extend_from_slice(b"\0gradient-encoding=");
        tag.extend_from_slice(encoding.name().as_bytes());
    }
    job_id_tagged(sorted_roster, rule, dim, &tag)
}

fn job_id_tagged(sorted_roster: &[PeerId], rule: &str, dim: usize, tag: &[u8]) -> JobId {
    let mut h = Sha256::new();
    h.update(b"rampart/job/v1\0");
    h.update((sorted_roster.len() as u64).to_le_bytes());
    for p in sorted_roster {
        let b = p.to_bytes();
        h.update((b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    h.update((rule.len() as u64).to_le_bytes());
    h.update(rule.as_bytes());
    h.update((dim as u64).to_le_bytes());
    h.update((tag.len() as u64).to_le_bytes());
    h.update(tag);
    JobId(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::LinearRegression;
    use rampart_gar::CoordinatePhase;

    fn keys(n: u8) -> Vec<Keypair> {
        (0..n)
            .map(|i| Keypair::ed25519_from_bytes([i + 1; 32]).unwrap())
            .collect()
    }

    fn base(keys: &[Keypair]) -> NodeConfigBuilder {
        NodeConfig::builder()
            .keypair(keys[0].clone())
            .roster(keys.iter().map(|k| k.public().to_peer_id()))
            .trainer(LinearRegression::new(4, 1, 0, 16))
    }

    #[test]
    fn valid_config_and_job_id() {
        let k = keys(7);
        let rule = Rule::MultiBulyan {
            f: 1,
            m: None,
            phase: CoordinatePhase::MedianClosest,
        };
        let c = base(&k).rule(rule.clone()).build().unwrap();
        // The id tools print without a node is the node's own.
        assert_eq!(c.job(), job_id(c.roster(), &rule, 4, b""));
        assert_eq!(c.roster().len(), 7);
        assert!(c.roster().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c.max_frame, 16 + ENVELOPE_LIMIT);
        // The job id does not depend on the roster's order but on its content.
        let mut rev: Vec<PeerId> = k.iter().map(|k| k.public().to_peer_id()).collect();
        rev.reverse();
        let c2 = base(&k).roster(rev).rule(rule.clone()).build().unwrap();
        assert_eq!(c.job(), c2.job());
        let c3 = base(&k)
            .rule(rule.clone())
            .job_tag("other")
            .build()
            .unwrap();
        assert_ne!(c.job(), c3.job());
        let c4 = base(&k).rule(rule.clone()).drift_period(5).build().unwrap();
        assert_eq!(c4.drift_period, 5);
    }

    /// Averages the first `k` inputs (only what the tests below need).
    struct FirstK(usize);

    impl Aggregate<f32> for FirstK {
        fn name(&self) -> &'static str {
            "first-k"
        }
        fn check(&self, n: usize) -> Result<(), GarError> {
            if n >= self.0 {
                Ok(())
            } else {
                Err(GarError::Precondition {
                    rule: "first-k",
                    n,
                    f: 0,
                    m: Some(self.0),
                    bound: "n >= k",
                })
            }
        }
        fn aggregate(&self, inputs: &[&[f32]]) -> Result<rampart_gar::Aggregation<f32>, GarError> {
            Aggregate::<f32>::aggregate(&Rule::Average, &inputs[..self.0])
        }
    }

    #[test]
    fn custom_rule_is_checked_and_part_of_the_job() {
        let k = keys(5);
        let c = base(&k).custom_rule(FirstK(3), 1).build().unwrap();
        assert_eq!(c.rule.f(), 1);
        assert_eq!(c.rule.quorum(5), 4);
        assert!(c.rule.can_aggregate(5, 4));
        assert!(!c.rule.can_aggregate(5, 3));
        // The same custom rule and f: the same job, whatever the roster order.
        let mut rev: Vec<PeerId> = k.iter().map(|k| k.public().to_peer_id()).collect();
        rev.reverse();
        let same = base(&k)
            .roster(rev)
            .custom_rule(FirstK(3), 1)
            .build()
            .unwrap();
        assert_eq!(c.job(), same.job());
        // Another f, or a built-in rule: another job.
        let other_f = base(&k).custom_rule(FirstK(3), 0).build().unwrap();
        assert_ne!(c.job(), other_f.job());
        let builtin = base(&k).rule(Rule::Average).build().unwrap();
        assert_ne!(c.job(), builtin.job());
        assert_eq!(
            format!("{:?}", c.rule),
            r#"Custom { name: "first-k", f: 1 }"#
        );
        // The rule's own precondition for the roster size, then f < n.
        let err = base(&k).custom_rule(FirstK(6), 1).build().unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Rule {
                    rule: "first-k",
                    n: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("n >= k"), "{err}");
        let err = base(&k).custom_rule(FirstK(1), 5).build().unwrap_err();
        assert!(err.to_string().contains("f < n"), "{err}");
    }

    #[test]
    fn rule_precondition_is_checked_against_the_roster() {
        let k = keys(6);
        let err = base(&k)
            .rule(Rule::MultiBulyan {
                f: 1,
                m: None,
                phase: CoordinatePhase::MedianClosest,
            })
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Rule { n: 6, .. }), "{err}");
        assert!(err.to_string().contains("multi-bulyan"), "{err}");
    }

    #[test]
    fn other_invariants() {
        let k = keys(3);
        let peers: Vec<PeerId> = k.iter().map(|k| k.public().to_peer_id()).collect();
        assert!(matches!(
            base(&k).roster(peers[1..].to_vec()).build(),
            Err(ConfigError::NotInRoster(_))
        ));
        assert!(matches!(
            base(&k).roster(vec![peers[0], peers[0]]).build(),
            Err(ConfigError::BadRoster {
                len: 2,
                distinct: 1
            })
        ));
        let outsider = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(
            base(&k)
                .bootstrap(outsider, "/ip4/127.0.0.1/tcp/1".parse().unwrap())
                .build(),
            Err(ConfigError::BootstrapNotInRoster(_))
        ));
        assert!(matches!(
            base(&k).max_frame(10).build(),
            Err(ConfigError::FrameTooSmall { .. })
        ));
        assert!(matches!(
            base(&k).rounds(0).build(),
            Err(ConfigError::Zero("rounds"))
        ));
        let mdns = base(&k).mdns(true).build();
        if cfg!(feature = "mdns") {
            assert!(mdns.is_ok());
        } else {
            assert!(matches!(mdns, Err(ConfigError::FeatureMissing("mdns"))));
        }
        assert!(matches!(
            NodeConfig::builder().build(),
            Err(ConfigError::MissingKeypair)
        ));
        assert!(matches!(
            NodeConfig::builder().keypair(k[0].clone()).build(),
            Err(ConfigError::MissingTrainer)
        ));
    }
}
