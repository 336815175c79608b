//! `rampart testnet`: local testnets of real node processes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rampart_testnet::run::{self, RunOptions};
use rampart_testnet::scenario::{RoleSpec, Scenario};
use rampart_testnet::{Behaviour, ByzantineFlag, DataName, PartitionSpec, RuleName, report};

const UP_HELP: &str = "\
With no SCENARIO, runs the built-in quickstart: 7 nodes, one of them running ALIE, multi-Bulyan
with f = 1, an MLP on the built-in synthetic data. Every node is its own `rampart node` process
on 127.0.0.1. The report folder gets summary.json, metrics/node-<i>.csv, metrics/spread.csv,
accuracy.png/.svg, spread.png/.svg, each node's metrics.jsonl and node.log under nodes/, the
keys and the roster. Ctrl-C stops every node and writes what was collected.

Exit status: 0 when every honest node finished, 2 otherwise (one `error:` line).";

/// `rampart testnet` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum TestnetCommand {
    /// Run a scenario (default: the built-in quickstart) and write its report.
    Up(UpArgs),
    /// Run a scenario for every (rule, attack) pair and tabulate the final honest accuracy.
    Matrix(MatrixArgs),
}

/// Flags that override a scenario file.
#[derive(Args, Debug, Default)]
pub(crate) struct Overrides {
    /// Number of nodes n.
    #[arg(long, value_name = "N")]
    nodes: Option<usize>,
    /// Declared number of Byzantine nodes f.
    #[arg(long, value_name = "F")]
    f: Option<usize>,
    /// Rounds to train.
    #[arg(long, value_name = "R")]
    rounds: Option<u64>,
    /// Data set: synthetic, mnist, fashion-mnist or cifar10.
    #[arg(long, value_name = "DATA")]
    data: Option<DataName>,
    /// Directory of the data set files.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Partition: iid or dirichlet:ALPHA.
    #[arg(long, value_name = "P")]
    partition: Option<PartitionSpec>,
    /// Seed of keys, model, data, partition and batches.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Give up after this many seconds (kills every node).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Report folder [default: testnet-report/<scenario name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// Flags of `rampart testnet up`.
#[derive(Args, Debug)]
#[command(after_long_help = UP_HELP)]
pub(crate) struct UpArgs {
    /// Scenario file (TOML, see testnet/README.md) [default: the built-in quickstart].
    #[arg(value_name = "SCENARIO.toml")]
    scenario: Option<PathBuf>,
    /// Aggregation rule (average, median, trimmed-mean, krum, multi-krum, bulyan,
    /// multi-bulyan, geometric-median, mda).
    #[arg(long, value_name = "RULE")]
    rule: Option<RuleName>,
    /// Byzantine nodes, as BEHAVIOUR[:KEY=VALUE]...[:COUNT] (e.g. alie:1, ipm:tau=10:2,
    /// gaussian:sigma=100); repeatable; replaces the scenario's Byzantine roles; `none` for
    /// an all-honest run.
    #[arg(long, value_name = "BEHAVIOUR:COUNT")]
    byzantine: Vec<ByzantineFlag>,
    #[command(flatten)]
    common: Overrides,
}

/// Flags of `rampart testnet matrix`.
#[derive(Args, Debug)]
pub(crate) struct MatrixArgs {
    /// Scenario file (TOML).
    #[arg(value_name = "SCENARIO.toml")]
    scenario: PathBuf,
    /// Rules to compare, comma-separated.
    #[arg(long, value_name = "RULES", value_delimiter = ',', required = true)]
    rules: Vec<RuleName>,
    /// Attacks, comma-separated BEHAVIOUR[:KEY=VALUE]... (f nodes play each); `none` for an
    /// all-honest run.
    #[arg(long, value_name = "ATTACKS", value_delimiter = ',', required = true)]
    attacks: Vec<String>,
    #[command(flatten)]
    common: Overrides,
}

fn load(path: Option<&PathBuf>) -> Result<Scenario> {
    match path {
        Some(p) => Scenario::load(p),
        None => Ok(Scenario::quickstart()),
    }
}

fn apply(s: &mut Scenario, o: &Overrides) {
    if let Some(v) = o.nodes {
        s.nodes = v;
    }
    if let Some(v) = o.f {
        s.f = v;
    }
    if let Some(v) = o.rounds {
        s.rounds = v;
    }
    if let Some(v) = o.data {
        s.data = v;
    }
    if let Some(v) = &o.data_dir {
        s.data_dir = Some(v.clone());
    }
    if let Some(v) = o.partition {
        s.partition = v;
    }
    if let Some(v) = o.seed {
        s.seed = v;
    }
    if let Some(v) = o.timeout {
        s.timeout_s = v;
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the rampart executable")
}

/// Runs `rampart testnet ...`.
pub(crate) fn run(cmd: &TestnetCommand) -> Result<()> {
    match cmd {
        TestnetCommand::Up(a) => up(a),
        TestnetCommand::Matrix(a) => matrix(a),
    }
}

fn up(a: &UpArgs) -> Result<()> {
    let mut s = load(a.scenario.as_ref())?;
    apply(&mut s, &a.common);
    if let Some(r) = a.rule {
        s.rule = r;
    }
    if !a.byzantine.is_empty() {
        s.roles.retain(|r| r.behaviour == "honest");
        for ByzantineFlag(b) in &a.byzantine {
            if let Some((b, count)) = b {
                s.roles.push(RoleSpec::of(b, *count));
            }
        }
    }
    s.validate().context("invalid scenario")?;
    s.check_data()?;
    let out = a
        .common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("testnet-report").join(&s.name));
    let opts = RunOptions {
        exe: exe()?,
        out: out.clone(),
        progress: !a.common.no_progress,
    };
    eprintln!(
        "testnet {}: {} nodes, f = {}, rule {}, {} rounds, attacks [{}] -> {}",
        s.name,
        s.nodes,
        s.f,
        s.rule,
        s.rounds,
        s.attacks()?.join(", "),
        out.display()
    );
    let rec = run::run(&s, &opts)?;
    let summary = report::write(&rec, &out)?;
    print!("{}", report::table(&summary));
    println!("report: {}", out.display());
    if let Some(why) = &rec.aborted {
        bail!(
            "the testnet stopped early ({why}); partial report in {}",
            out.display()
        );
    }
    if let Some(n) = summary
        .nodes
        .iter()
        .find(|n| n.role == "honest" && !n.finished && n.failure.is_some())
    {
        bail!(
            "honest node {} failed: {}",
            n.index,
            n.failure.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn matrix(a: &MatrixArgs) -> Result<()> {
    let mut s = load(Some(&a.scenario))?;
    apply(&mut s, &a.common);
    let attacks = a
        .attacks
        .iter()
        .map(|x| {
            if x == "none" {
                Ok(None)
            } else {
                x.parse::<Behaviour>().map(Some)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    s.check_data()?;
    let out = a
        .common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("testnet-report").join(format!("matrix-{}", s.name)));
    rampart_testnet::matrix::run_matrix(
        &s,
        &a.rules,
        &attacks,
        &exe()?,
        &out,
        !a.common.no_progress,
    )?;
    print!("{}", std::fs::read_to_string(out.join("matrix.md"))?);
    println!("tables: {} and matrix.csv", out.join("matrix.md").display());
    Ok(())
}
