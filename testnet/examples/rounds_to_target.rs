//! Rounds to a target test accuracy, per aggregation rule, in a synchronous
//! single-process simulation: n workers, each with its own IID shard and
//! worker momentum, send their vectors; the rule aggregates them; every
//! worker applies the result. No network, so many seeds run in minutes and
//! the figure describes the rule, not the transport.
//!
//! Defaults are the MNIST attack matrix's setting without attack (n = 11,
//! f = 2, MLP 784-100-10, lr 0.1, batch 32, momentum 0.9, accuracy read every
//! 5 rounds). The seeds drive the shards, the initial model and the batches;
//! they are not the testnet's derivations, so a seed here is not the same run
//! as that seed in `rampart testnet`.
//!
//! ```text
//! cargo run --release -p rampart-testnet --example rounds_to_target -- \
//!     --data-dir ../shared/datasets/mnist --seeds 1-30 --rounds 60
//! ```
//!
//! Flags: `--data-dir DIR` (MNIST IDX files, required), `--seeds A-B` or
//! `--seeds A,B,..` (default 1-10), `--rounds R` (60), `--target ACC` (0.9),
//! `--every K` (5), `--nodes N` (11), `--f F` (2), `--rules
//! average,multi-bulyan` (rule names as in `rampart testnet`, each with the
//! same parameters the testnet gives it), `--lr X` (0.1), `--batch B` (32),
//! `--momentum B` (0.9), `--dampening D` (0: PyTorch's momentum; 0.9 with
//! momentum 0.9 is the moving average of the robustness literature). Prints
//! one line per seed and the means at the end.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use rampart_gar::{Aggregate, Rule};
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Partition, Schedule, partition,
};
use rampart_testnet::RuleName;

struct Args {
    data_dir: PathBuf,
    seeds: Vec<u64>,
    rounds: u64,
    target: f64,
    every: u64,
    nodes: usize,
    f: usize,
    rules: Vec<RuleName>,
    lr: f32,
    batch: usize,
    momentum: f32,
    dampening: f32,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        data_dir: PathBuf::new(),
        seeds: (1..=10).collect(),
        rounds: 60,
        target: 0.9,
        every: 5,
        nodes: 11,
        f: 2,
        rules: vec![RuleName::Average, RuleName::MultiBulyan],
        lr: 0.1,
        batch: 32,
        momentum: 0.9,
        dampening: 0.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || format!("{flag} takes a number, not {value:?}");
        match flag.as_str() {
            "--data-dir" => a.data_dir = value.into(),
            "--seeds" => {
                a.seeds = match value.split_once('-') {
                    Some((lo, hi)) => (lo.parse().with_context(number)?
                        ..=hi.parse().with_context(number)?)
                        .collect(),
                    None => value
                        .split(',')
                        .map(|s| s.parse().with_context(number))
                        .collect::<Result<_>>()?,
                }
            }
            "--rounds" => a.rounds = value.parse().with_context(number)?,
            "--target" => a.target = value.parse().with_context(number)?,
            "--every" => a.every = value.parse::<u64>().with_context(number)?.max(1),
            "--nodes" => a.nodes = value.parse().with_context(number)?,
            "--f" => a.f = value.parse().with_context(number)?,
            "--rules" => a.rules = value.split(',').map(str::parse).collect::<Result<_>>()?,
            "--lr" => a.lr = value.parse().with_context(number)?,
            "--batch" => a.batch = value.parse().with_context(number)?,
            "--momentum" => a.momentum = value.parse().with_context(number)?,
            "--dampening" => a.dampening = value.parse().with_context(number)?,
            other => bail!("unknown flag {other}"),
        }
    }
    ensure!(
        !a.data_dir.as_os_str().is_empty(),
        "--data-dir DIR (the MNIST IDX files) is required"
    );
    ensure!(!a.seeds.is_empty(), "--seeds gives no seed");
    ensure!(!a.rules.is_empty(), "--rules gives no rule");
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse()?;
    let rules: Vec<(RuleName, Rule)> = args
        .rules
        .iter()
        .map(|&r| Ok((r, r.to_rule(args.f, None)?)))
        .collect::<Result<_>>()?;
    for (name, r) in &rules {
        r.check(args.nodes)
            .with_context(|| format!("{name} with --nodes {} and --f {}", args.nodes, args.f))?;
    }
    let split = DatasetKind::Mnist.load(&args.data_dir).with_context(|| {
        format!(
            "cannot read MNIST from {} (point --data-dir at the IDX files)",
            args.data_dir.display()
        )
    })?;
    let config = LearnerConfig::builder()
        .batch_size(args.batch)
        .momentum(args.momentum)
        .dampening(args.dampening)
        .schedule(Schedule::Constant { lr: args.lr })
        .build()?;
    // Per rule: rounds to the target for each seed (None: not reached).
    let mut reached: Vec<Vec<Option<u64>>> = vec![Vec::new(); rules.len()];
    for &seed in &args.seeds {
        let parts = partition(Partition::Iid, split.train.labels(), args.nodes, seed)?;
        let mut line = format!("seed {seed}:");
        for (k, (name, rule)) in rules.iter().enumerate() {
            let mut workers = parts
                .iter()
                .enumerate()
                .map(|(i, part)| {
                    let net = ModelKind::Mlp { hidden: vec![100] }.build(&[1, 28, 28], 10, seed)?;
                    let shard = split.train.subset(part)?;
                    Ok(Learner::new(
                        net,
                        config.clone(),
                        shard,
                        seed * 1000 + i as u64,
                    )?)
                })
                .collect::<Result<Vec<Learner>>>()?;
            let mut hit = None;
            let mut accuracy = 0.0;
            for round in 1..=args.rounds {
                let vectors = workers
                    .iter_mut()
                    .map(Learner::next_gradient)
                    .collect::<Result<Vec<_>, _>>()?;
                let rows: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
                let update = Aggregate::<f32>::aggregate(rule, &rows)?.output;
                for w in &mut workers {
                    w.apply_scheduled(&update)?;
                }
                if round % args.every == 0 || round == args.rounds {
                    // Every worker holds the same model.
                    accuracy = workers[0].evaluate(&split.test)?.accuracy;
                    if hit.is_none() && round % args.every == 0 && accuracy >= args.target {
                        hit = Some(round);
                    }
                }
            }
            reached[k].push(hit);
            let shown = hit.map_or_else(|| "-".to_string(), |r| r.to_string());
            line += &format!("  {name} {shown} ({:.2} %)", accuracy * 100.0);
        }
        println!("{line}");
    }
    println!();
    let mean = |v: &[Option<u64>]| {
        let hits: Vec<u64> = v.iter().flatten().copied().collect();
        (
            hits.iter().sum::<u64>() as f64 / hits.len().max(1) as f64,
            hits.len(),
        )
    };
    let (base, _) = mean(&reached[0]);
    for ((name, _), v) in rules.iter().zip(&reached) {
        let (m, count) = mean(v);
        println!(
            "{name}: mean {m:.2} rounds to {:.0} % ({count} of {} seeds reached it), {:.3} x {}",
            args.target * 100.0,
            v.len(),
            m / base,
            rules[0].0
        );
    }
    Ok(())
}
