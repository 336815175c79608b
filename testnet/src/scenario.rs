//! Testnet scenarios (TOML): the job, the number of nodes and what each
//! node does. See `testnet/README.md` for every key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::roster::{Member, Roster, testnet_key};
use crate::spec::{
    Behaviour, DataName, GradientEncoding, JobSpec, ModelName, NonFinite, PartitionSpec, RuleName,
    default_eval_every, default_hidden,
};

/// The built-in quickstart scenario (`rampart testnet up` with no file).
pub const QUICKSTART: &str = include_str!("../scenarios/quickstart.toml");

/// One group of nodes with the same role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// `honest` or a Byzantine behaviour (`sign-flip`, `ipm`, `alie`,
    /// `mimic`, `gaussian`, `inf`, `nan`, `label-flip`, `silent`, `garbage`,
    /// `wrong-dimension`, `non-finite`, `replay`, `equivocate`).
    pub behaviour: String,
    /// Nodes with this role.
    #[serde(default = "one")]
    pub count: usize,
    /// τ of `ipm` (default 2) and `alie` (default: z_max for n and f).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// σ of `gaussian` (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// μ of `gaussian` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mu: Option<f64>,
    /// Which honest gradient `mimic` copies (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idx: Option<usize>,
    /// How late `delay` sends, in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Kill these nodes (SIGKILL) once they completed this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_at: Option<u64>,
    /// Restart crashed nodes (from their checkpoint) once the other nodes
    /// completed this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<u64>,
    /// Cut these nodes off the network (their cable goes down; needs
    /// `namespaces = true`) once the other nodes completed this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_at: Option<u64>,
    /// Heal the partition after the other nodes completed this many more
    /// rounds (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_rounds: Option<u64>,
}

fn one() -> usize {
    1
}

impl RoleSpec {
    /// The behaviour with its parameters.
    pub fn behaviour(&self) -> Result<Behaviour> {
        let mut params = Vec::new();
        for (k, v) in [
            ("tau", self.tau),
            ("sigma", self.sigma),
            ("mu", self.mu),
            ("idx", self.idx.map(|i| i as f64)),
            ("ms", self.ms.map(|v| v as f64)),
        ] {
            if let Some(v) = v {
                params.push((k.to_owned(), v));
            }
        }
        if self.behaviour == "crash"
            && let Some(at) = self.crash_at
        {
            params.push(("at".to_owned(), at as f64));
        }
        Behaviour::from_parts(&self.behaviour, &params)
    }

    /// A role of `count` nodes playing `b`.
    pub fn of(b: &Behaviour, count: usize) -> Self {
        let mut r = Self {
            behaviour: b.name().to_owned(),
            count,
            tau: None,
            sigma: None,
            mu: None,
            idx: None,
            ms: None,
            crash_at: None,
            restart_at: None,
            partition_at: None,
            partition_rounds: None,
        };
        match *b {
            Behaviour::Ipm { tau } => r.tau = Some(tau),
            Behaviour::Alie { tau } => r.tau = tau,
            Behaviour::Mimic { idx } => r.idx = Some(idx),
            Behaviour::Gaussian { mu, sigma } => {
                r.mu = Some(mu);
                r.sigma = Some(sigma);
            }
            Behaviour::Delay { ms } => r.ms = Some(ms),
            Behaviour::Crash { at } => r.crash_at = Some(at),
            _ => {}
        }
        r
    }
}

/// A testnet scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Scenario (and job) name.
    pub name: String,
    /// Number of nodes n.
    pub nodes: usize,
    /// Declared Byzantine nodes f.
    pub f: usize,
    /// Aggregation rule.
    pub rule: RuleName,
    /// Multi-Krum / multi-Bulyan m (default n − f − 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    /// Model.
    pub model: ModelName,
    /// MLP hidden widths.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Data set.
    pub data: DataName,
    /// Directory of the data files (relative to the scenario file); ignored
    /// for synthetic data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `iid` or `dirichlet:ALPHA`.
    pub partition: PartitionSpec,
    /// Rounds.
    pub rounds: u64,
    /// Learning rate.
    pub lr: f32,
    /// Worker momentum.
    pub momentum: f32,
    /// Momentum dampening (0: PyTorch's momentum; equal to `momentum`: the
    /// moving average).
    #[serde(default, skip_serializing_if = "crate::spec::is_zero")]
    pub dampening: f32,
    /// Mini-batch size.
    pub batch: usize,
    /// Round timeout (ms).
    pub round_timeout_ms: u64,
    /// Start timeout (ms).
    pub start_timeout_ms: u64,
    /// Drift-control period (0: off).
    #[serde(default)]
    pub drift_period: u64,
    /// Evaluate every this many rounds.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// `reject` (default) or `aggregate` inputs holding NaN or ±∞.
    #[serde(default, skip_serializing_if = "NonFinite::is_reject")]
    pub non_finite: NonFinite,
    /// `f32` (default) or `bf16` gradients on the wire.
    #[serde(default, skip_serializing_if = "GradientEncoding::is_f32")]
    pub encoding: GradientEncoding,
    /// Seed of keys, model, data, partition and batches.
    pub seed: u64,
    /// Give up (kill every node) after this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Run each node in its own Linux network namespace (its own 10.77.0.x
    /// address, a veth cable to a shared bridge) instead of on 127.0.0.1:
    /// needed by `partition_at`; needs root and iproute2.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub namespaces: bool,
    /// Non-honest roles; nodes not covered are honest. Byzantine roles take
    /// the last node indices.
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
}

fn default_timeout() -> u64 {
    900
}

/// One node's part in a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    /// Node index (roster order).
    pub index: usize,
    /// What it does.
    pub behaviour: Behaviour,
    /// Killed after completing this round.
    pub crash_at: Option<u64>,
    /// Restarted when the others reached this round.
    pub restart_at: Option<u64>,
    /// Cut off when the others completed round `.0`, healed `.1` rounds
    /// later.
    pub partition: Option<(u64, u64)>,
}

impl Scenario {
    /// The built-in quickstart.
    pub fn quickstart() -> Self {
        // The file is part of the binary and tested below.
        toml::from_str(QUICKSTART).unwrap_or_else(|e| panic!("quickstart.toml: {e}"))
    }

    /// Reads a scenario file; a relative `data_dir` is resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        let mut s: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.message().trim()))
            .with_context(|| format!("scenario {}", path.display()))?;
        if let Some(d) = &s.data_dir
            && d.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new("."));
            s.data_dir = Some(base.join(d));
        }
        s.validate()
            .with_context(|| format!("scenario {}", path.display()))?;
        Ok(s)
    }

    /// The job the nodes train.
    pub fn job(&self) -> JobSpec {
        JobSpec {
            name: self.name.clone(),
            seed: self.seed,
            rounds: self.rounds,
            rule: self.rule,
            f: self.f,
            m: self.m,
            model: self.model,
            hidden: self.hidden.clone(),
            data: self.data,
            partition: self.partition,
            lr: self.lr,
            momentum: self.momentum,
            dampening: self.dampening,
            batch: self.batch,
            round_timeout_ms: self.round_timeout_ms,
            start_timeout_ms: self.start_timeout_ms,
            drift_period: self.drift_period,
            eval_every: self.eval_every,
            non_finite: self.non_finite,
            encoding: self.encoding,
        }
    }

    /// The roster of the testnet's deterministic keys (no addresses: nodes
    /// are wired by bootstrap flags).
    pub fn roster(&self, seed: u64) -> Roster {
        Roster {
            n: self.nodes,
            job: self.job(),
            members: (0..self.nodes)
                .map(|i| Member {
                    peer: testnet_key(seed, i).public().to_peer_id(),
                    addrs: Vec::new(),
                })
                .collect(),
        }
    }

    /// Each node's plan: roles in file order take the highest indices
    /// first (Byzantine) and honest roles with crashes take the lowest.
    pub fn plan(&self) -> Result<Vec<NodePlan>> {
        let mut plans: Vec<NodePlan> = (0..self.nodes)
            .map(|index| NodePlan {
                index,
                behaviour: Behaviour::Honest,
                crash_at: None,
                restart_at: None,
                partition: None,
            })
            .collect();
        let (mut low, mut high) = (0usize, self.nodes);
        for role in &self.roles {
            let b = role.behaviour()?;
            for _ in 0..role.count {
                if low >= high {
                    bail!("the roles ask for more than the {} nodes", self.nodes);
                }
                let i = if b.is_byzantine() {
                    high -= 1;
                    high
                } else {
                    low += 1;
                    low - 1
                };
                let crash_at = match b {
                    Behaviour::Crash { at } => Some(at),
                    _ => role.crash_at,
                };
                plans[i] = NodePlan {
                    index: i,
                    behaviour: b.clone(),
                    crash_at,
                    restart_at: role.restart_at,
                    partition: role
                        .partition_at
                        .map(|at| (at, role.partition_rounds.unwrap_or(3))),
                };
            }
        }
        Ok(plans)
    }

    /// Checks the scenario as a whole.
    pub fn validate(&self) -> Result<()> {
        if self.nodes == 0 {
            bail!("nodes must be positive");
        }
        let job = self.job();
        job.validate()?;
        let rule = job.rule()?;
        rule.check(self.nodes)
            .map_err(|e| anyhow::anyhow!("rule {} with {} nodes: {e}", rule.id(), self.nodes))?;
        let plan = self.plan()?;
        for p in &plan {
            if let (Some(c), Some(r)) = (p.crash_at, p.restart_at)
                && r <= c
            {
                bail!("restart_at ({r}) must come after crash_at ({c})");
            }
            if p.restart_at.is_some() && p.crash_at.is_none() {
                bail!("restart_at needs crash_at");
            }
            if let Some((_, k)) = p.partition {
                if !self.namespaces {
                    bail!("partition_at needs namespaces = true (each node in its own namespace)");
                }
                if k == 0 {
                    bail!("partition_rounds must be positive");
                }
            }
        }
        if self.data != DataName::Synthetic && self.data_dir.is_none() {
            bail!("data set {:?} needs data_dir (or --data-dir)", self.data);
        }
        Ok(())
    }

    /// Fails when the data directory lacks a file the nodes would need, and
    /// says how to get it: a check worth making before any process starts.
    /// The synthetic set needs nothing.
    pub fn check_data(&self) -> Result<()> {
        match (&self.data, &self.data_dir) {
            (DataName::Synthetic, _) => Ok(()),
            (_, Some(dir)) => check_data_dir(self.data, dir),
            (other, None) => bail!("data set {other:?} needs data_dir (or --data-dir)"),
        }
    }

    /// The Byzantine roles as `behaviour ×count` strings (for reports).
    pub fn attacks(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for p in self.plan()? {
            if p.behaviour.is_byzantine() {
                out.push(p.behaviour.to_string());
            }
        }
        Ok(out)
    }
}

/// Fails when `dir` lacks one of the files data set `data` is read from (in
/// raw or `.gz` form), naming each missing file and the command that gets
/// them. Contents are verified when the data set is loaded.
pub fn check_data_dir(data: DataName, dir: &std::path::Path) -> Result<()> {
    let Some(kind) = data.file_kind() else {
        return Ok(());
    };
    let name = data.name();
    let missing: Vec<String> = kind
        .missing_files(dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let fix = if data == DataName::Cifar10 {
        "unpack the data set's binary version there".to_owned()
    } else {
        format!(
            "run `rampart data fetch {name} --dir {}` to download and verify them",
            dir.display()
        )
    };
    bail!(
        "the {name} data directory {} is incomplete: {} missing ({}); {fix}",
        dir.display(),
        missing.len(),
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_is_valid() {
        let s = Scenario::quickstart();
        s.validate().unwrap();
        assert_eq!(s.nodes, 7);
        assert_eq!(s.f, 1);
        let plan = s.plan().unwrap();
        assert_eq!(plan[6].behaviour, Behaviour::Alie { tau: None });
        assert!(plan[..6].iter().all(|p| p.behaviour == Behaviour::Honest));
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let s: Scenario =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            s.plan().unwrap();
            s.job().validate().unwrap();
        }
    }

    #[test]
    fn unknown_keys_and_too_many_roles_are_refused() {
        let bad = QUICKSTART.replace("rounds =", "roundz = 3\nrounds =");
        assert!(toml::from_str::<Scenario>(&bad).is_err());
        let mut s = Scenario::quickstart();
        s.roles[0].count = 8;
        assert!(s.validate().is_err());
    }
}
