//! `rampart roster`: create a job's roster file, add members, print its job
//! id.
//!
//! The file is the [`Roster`] that `rampart node` reads (format and
//! canonical form: `rampart_testnet::roster`). `new` writes the job with no
//! members; `add` appends a member (or more addresses of one); `show` and
//! `id` print the job id every member must see, which the node logs at
//! start as `job=...`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rampart_node::JobId;
use rampart_testnet::spec::GradientEncoding;
use rampart_testnet::{DataName, JobSpec, Member, ModelName, PartitionSpec, Roster, RuleName};
use serde::de::DeserializeOwned;

/// Subcommands of `rampart roster`.
#[derive(Subcommand, Debug)]
pub(crate) enum RosterCommand {
    /// Write a new roster: the job (rule, f, model, data, hyper-parameters) with no members yet.
    New(Box<NewArgs>),
    /// Add a member (its PeerId or key file, and its addresses) to a roster; adding an existing
    /// member again adds the new addresses.
    Add(AddArgs),
    /// Print a roster: its job id, the job and the members with their node index.
    Show(ShowArgs),
    /// Print only the job id of a complete roster (compare it across machines).
    Id(ShowArgs),
}

/// Flags of `rampart roster new`.
#[derive(Args, Debug)]
pub(crate) struct NewArgs {
    /// Where to write the roster (an existing file is kept unless --force).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    /// Job name (part of the job id).
    #[arg(long, default_value = "job")]
    name: String,
    /// Seed of the model initialisation, the synthetic data, the partition and the batches.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds to train.
    #[arg(long, default_value_t = 100)]
    rounds: u64,
    /// Aggregation rule: average, median, trimmed-mean, krum, multi-krum, bulyan, multi-bulyan,
    /// geometric-median, mda.
    #[arg(long, value_parser = parse_from_str::<RuleName>)]
    rule: RuleName,
    /// Declared number of Byzantine members (the rule's precondition on n is checked once the
    /// members are in).
    #[arg(long)]
    f: usize,
    /// Multi-Krum / multi-Bulyan m [default: n - f - 2].
    #[arg(long)]
    m: Option<usize>,
    /// Model: logreg, mlp or cnn.
    #[arg(long, default_value = "mlp", value_parser = parse_kebab::<ModelName>)]
    model: ModelName,
    /// Hidden widths of the MLP, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    hidden: Vec<usize>,
    /// Data set: synthetic, mnist, fashion-mnist or cifar10.
    #[arg(long, default_value = "synthetic", value_parser = parse_from_str::<DataName>)]
    data: DataName,
    /// Partition of the training set: iid or dirichlet:ALPHA.
    #[arg(long, default_value = "iid", value_parser = parse_from_str::<PartitionSpec>)]
    partition: PartitionSpec,
    /// Learning rate (constant).
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Worker-side momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Momentum dampening: 0 is PyTorch's momentum, the momentum's value
    /// (e.g. 0.9) the moving average of the robustness literature.
    #[arg(long, default_value_t = 0.0)]
    dampening: f32,
    /// How gradients travel: f32, or bf16 (half the bytes; each sender rounds
    /// its gradient to bfloat16, models stay f32).
    #[arg(long, default_value = "f32", value_parser = parse_from_str::<GradientEncoding>)]
    encoding: GradientEncoding,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// How long a round waits for every input before aggregating a quorum (ms).
    #[arg(long, default_value_t = 5000)]
    round_timeout_ms: u64,
    /// How long a node waits for the whole roster before starting round 0 (ms).
    #[arg(long, default_value_t = 30000)]
    start_timeout_ms: u64,
    /// Drift-control period in rounds (0: off).
    #[arg(long, default_value_t = 0)]
    drift_period: u64,
    /// Evaluate the test accuracy every this many rounds (and after the last).
    #[arg(long, default_value_t = 5)]
    eval_every: u64,
}

/// Flags of `rampart roster add`.
#[derive(Args, Debug)]
pub(crate) struct AddArgs {
    /// The roster file to change.
    #[arg(value_name = "ROSTER")]
    roster: PathBuf,
    /// The member: its PeerId (printed by `rampart keygen`) or its key file.
    #[arg(long, value_name = "PEERID|KEYFILE")]
    peer: String,
    /// An address where the member listens, e.g. /ip4/192.0.2.10/tcp/4001 (repeatable; a
    /// trailing /p2p/PEERID must name the member).
    #[arg(long, value_name = "MULTIADDR")]
    addr: Vec<String>,
}

/// Flags of `rampart roster show` and `rampart roster id`.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// The roster file.
    #[arg(value_name = "ROSTER")]
    roster: PathBuf,
}

/// Parses with the type's `FromStr` (the names used in files).
fn parse_from_str<T: std::str::FromStr<Err = anyhow::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
}

/// Parses a kebab-case enum name the way the roster file spells it.
fn parse_kebab<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// Runs the subcommand.
pub(crate) fn run(cmd: &RosterCommand) -> Result<()> {
    match cmd {
        RosterCommand::New(args) => new(args),
        RosterCommand::Add(args) => add(args),
        RosterCommand::Show(args) => show(&args.roster),
        RosterCommand::Id(args) => {
            let roster = Roster::load(&args.roster)?;
            println!("{}", job_id(&roster)?.to_hex());
            Ok(())
        }
    }
}

fn new(a: &NewArgs) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "{} exists: add members with `rampart roster add`, or give --force to replace it",
            a.out.display()
        );
    }
    let job = JobSpec {
        name: a.name.clone(),
        seed: a.seed,
        rounds: a.rounds,
        rule: a.rule,
        f: a.f,
        m: a.m,
        model: a.model,
        hidden: a.hidden.clone(),
        data: a.data,
        partition: a.partition,
        lr: a.lr,
        momentum: a.momentum,
        dampening: a.dampening,
        batch: a.batch,
        round_timeout_ms: a.round_timeout_ms,
        start_timeout_ms: a.start_timeout_ms,
        drift_period: a.drift_period,
        eval_every: a.eval_every,
        non_finite: Default::default(),
        encoding: a.encoding,
    };
    job.validate().context("invalid job")?;
    let roster = Roster {
        n: 0,
        job,
        members: Vec::new(),
    };
    roster.save(&a.out)?;
    println!(
        "wrote {} (no members yet: add each with `rampart roster add {} --peer PEERID --addr MULTIADDR`)",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// A PeerId, or the PeerId of a key file.
fn peer_of(s: &str) -> Result<PeerId> {
    if let Ok(p) = s.parse::<PeerId>() {
        return Ok(p);
    }
    let path = Path::new(s);
    if !path.exists() {
        bail!("--peer {s:?} is neither a PeerId nor an existing key file");
    }
    Ok(rampart_testnet::roster::read_key(path)?
        .public()
        .to_peer_id())
}

fn add(a: &AddArgs) -> Result<()> {
    let mut roster = Roster::load_unchecked(&a.roster)?;
    let peer = peer_of(&a.peer)?;
    let mut addrs = Vec::with_capacity(a.addr.len());
    for s in &a.addr {
        let mut addr: Multiaddr = s.parse().map_err(|e| {
            anyhow::anyhow!("address {s:?}: {e} (expected e.g. /ip4/192.0.2.10/tcp/4001)")
        })?;
        if let Some(Protocol::P2p(p)) = addr.iter().last() {
            if p != peer {
                bail!("address {s:?} names peer {p}, not the member {peer}");
            }
            addr.pop();
        }
        if !addr
            .iter()
            .any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Memory(_)))
        {
            bail!("address {s:?} has no /tcp/PORT: the node listens on TCP");
        }
        addrs.push(addr);
    }
    match roster.members.iter_mut().find(|m| m.peer == peer) {
        Some(m) => {
            for addr in addrs {
                if !m.addrs.contains(&addr) {
                    m.addrs.push(addr);
                }
            }
        }
        None => roster.members.push(Member { peer, addrs }),
    }
    roster.n = roster.members.len();
    roster.save(&a.roster)?;
    let rule = roster.job.rule()?;
    match rule.check(roster.n) {
        Ok(()) => println!(
            "{peer} added; n = {}, job id {}",
            roster.n,
            job_id(&roster)?.to_hex()
        ),
        Err(e) => println!(
            "{peer} added; n = {}, not enough yet for {}: {e}",
            roster.n,
            rule.id()
        ),
    }
    Ok(())
}

fn show(path: &Path) -> Result<()> {
    let roster = Roster::load_unchecked(path)?;
    let job = &roster.job;
    let rule = job.rule()?;
    let complete = rule.check(roster.n);
    match &complete {
        Ok(()) => println!("job id      {}", job_id(&roster)?.to_hex()),
        Err(e) => println!("job id      none yet (incomplete roster: {e})"),
    }
    println!("name        {}", job.name);
    println!(
        "n, f        {}, {} (rule {}{})",
        roster.n,
        job.f,
        job.rule,
        job.m.map(|m| format!(", m = {m}")).unwrap_or_default()
    );
    let hidden = match job.model {
        ModelName::Mlp => format!(" {:?}", job.hidden),
        _ => String::new(),
    };
    println!(
        "model       {}{hidden}, d = {}",
        serde_json::to_value(job.model)?.as_str().unwrap_or("?"),
        model_dim(job)?
    );
    println!(
        "data        {}, partition {}, seed {}",
        serde_json::to_value(job.data)?.as_str().unwrap_or("?"),
        job.partition,
        job.seed
    );
    println!(
        "training    {} rounds, lr {}, momentum {}, dampening {}, batch {}, eval every {}",
        job.rounds, job.lr, job.momentum, job.dampening, job.batch, job.eval_every
    );
    println!("gradients   {} on the wire", job.encoding);
    println!(
        "timeouts    round {} ms, start {} ms; drift period {}",
        job.round_timeout_ms, job.start_timeout_ms, job.drift_period
    );
    println!("members     (node index, PeerId, addresses)");
    for m in &roster.members {
        let index = roster.index_of(&m.peer).unwrap_or_default();
        let addrs: Vec<String> = m.addrs.iter().map(ToString::to_string).collect();
        println!("  {index:>3}  {}  {}", m.peer, addrs.join(" "));
    }
    Ok(())
}

/// The parameter count of the job's model.
fn model_dim(job: &JobSpec) -> Result<usize> {
    let kind = crate::node::dataset_kind(job);
    let net = crate::node::model_kind(job)
        .build(&kind.sample_shape(), kind.num_classes(), job.seed)
        .context("cannot build the job's model")?;
    Ok(net.dim())
}

/// The job id a node of this roster runs (and logs at start): the node
/// library's job id over the sorted members, the rule, the model dimension
/// and the roster tag, exactly as `rampart node` configures it.
pub(crate) fn job_id(roster: &Roster) -> Result<JobId> {
    let rule = roster.job.rule()?;
    Ok(rampart_node::job_id_for(
        &roster.sorted_peers(),
        &rule,
        model_dim(&roster.job)?,
        roster.job.encoding.wire(),
        &roster.tag(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_testnet::Scenario;

    #[test]
    fn job_id_is_the_nodes() {
        // The node's own computation, through its configuration builder.
        struct Dim(usize);
        impl rampart_node::Trainer for Dim {
            fn dim(&self) -> usize {
                self.0
            }
            fn gradient(
                &mut self,
                _: u64,
            ) -> Result<(Option<f32>, Vec<f32>), rampart_node::TrainerError> {
                Ok((None, vec![0.0; self.0]))
            }
            fn apply(&mut self, _: &[f32], _: u64) -> Result<(), rampart_node::TrainerError> {
                Ok(())
            }
            fn parameters(&self) -> Result<Vec<f32>, rampart_node::TrainerError> {
                Ok(vec![0.0; self.0])
            }
            fn set_parameters(&mut self, _: &[f32]) -> Result<(), rampart_node::TrainerError> {
                Ok(())
            }
        }
        let mut ids = Vec::new();
        for encoding in [GradientEncoding::F32, GradientEncoding::Bf16] {
            let mut roster = Scenario::quickstart().roster(1);
            roster.job.encoding = encoding;
            let config = rampart_node::NodeConfig::builder()
                .keypair(rampart_testnet::roster::testnet_key(1, 3))
                .roster(roster.members.iter().map(|m| m.peer))
                .rule(roster.job.rule().unwrap())
                .job_tag(roster.tag().to_vec())
                .gradient_encoding(encoding.wire())
                .trainer(Dim(model_dim(&roster.job).unwrap()))
                .build()
                .unwrap();
            assert_eq!(job_id(&roster).unwrap(), config.job(), "{encoding}");
            ids.push(config.job());
        }
        assert_ne!(ids[0], ids[1]);
    }
}
