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
//! cargo run --release -p rampart-node --example rounds_to_target -- \
//!     --data-dir ../shared/datasets/mnist --seeds 1-30 --rounds 60
//! ```
//!
//! Flags: `--data-dir DIR` (MNIST IDX files, required), `--seeds A-B` or
//! `--seeds A,B,..` (default 1-10), `--rounds R` (60), `--target ACC` (0.9),
//! `--every K` (5), `--nodes N` (11), `--f F` (2), `--rules
//! average,multi-bulyan` (any of average, median, multi-krum, multi-bulyan).
//! Prints one line per seed and the means at the end.

use std::error::Error;
use std::path::PathBuf;

use rampart_gar::{Aggregate, CoordinatePhase, Rule};
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Partition, Schedule, partition,
};

struct Args {
    data_dir: PathBuf,
    seeds: Vec<u64>,
    rounds: u64,
    target: f64,
    every: u64,
    nodes: usize,
    f: usize,
    rules: Vec<String>,
}

fn parse() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        data_dir: PathBuf::new(),
        seeds: (1..=10).collect(),
        rounds: 60,
        target: 0.9,
        every: 5,
        nodes: 11,
        f: 2,
        rules: vec!["average".into(), "multi-bulyan".into()],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--data-dir" => a.data_dir = value.into(),
            "--seeds" => {
                a.seeds = match value.split_once('-') {
                    Some((lo, hi)) => (lo.parse()?..=hi.parse()?).collect(),
                    None => value.split(',').map(str::parse).collect::<Result<_, _>>()?,
                }
            }
            "--rounds" => a.rounds = value.parse()?,
            "--target" => a.target = value.parse()?,
            "--every" => a.every = value.parse::<u64>()?.max(1),
            "--nodes" => a.nodes = value.parse()?,
            "--f" => a.f = value.parse()?,
            "--rules" => a.rules = value.split(',').map(String::from).collect(),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.data_dir.as_os_str().is_empty() {
        return Err("--data-dir DIR (the MNIST IDX files) is required".into());
    }
    Ok(a)
}

fn rule(name: &str, f: usize) -> Result<Rule, Box<dyn Error>> {
    Ok(match name {
        "average" => Rule::Average,
        "median" => Rule::Median,
        "multi-krum" => Rule::MultiKrum { f, m: None },
        "multi-bulyan" => Rule::MultiBulyan {
            f,
            m: None,
            phase: CoordinatePhase::MedianClosest,
        },
        other => return Err(format!("unknown rule {other}").into()),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse()?;
    let rules: Vec<(String, Rule)> = args
        .rules
        .iter()
        .map(|r| Ok((r.clone(), rule(r, args.f)?)))
        .collect::<Result<_, Box<dyn Error>>>()?;
    for (_, r) in &rules {
        r.check(args.nodes)?;
    }
    let split = DatasetKind::Mnist.load(&args.data_dir).map_err(|e| {
        format!(
            "cannot read MNIST from {}: {e} (point --data-dir at the IDX files)",
            args.data_dir.display()
        )
    })?;
    let config = LearnerConfig::builder()
        .batch_size(32)
        .momentum(0.9)
        .schedule(Schedule::Constant { lr: 0.1 })
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
                .collect::<Result<Vec<Learner>, Box<dyn Error>>>()?;
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
