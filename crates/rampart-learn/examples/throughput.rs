//! Gradient steps per second of each built-in model at batch 32 on MNIST
//! (random MNIST-shaped data when the files are absent), printed as a
//! Markdown table.
//!
//! ```text
//! cargo run --release -p rampart-learn --example throughput [-- <mnist dir> [seconds per model]]
//! ```
//!
//! A "step" is what a node does per round besides networking and
//! aggregation: `next_gradient` (sample, forward, backward, flatten,
//! momentum) and `apply` (write the flat update back). The last column
//! hashes the parameters after the run, to compare runs with different
//! `RAYON_NUM_THREADS` (determinism check).

use std::path::Path;
use std::time::{Duration, Instant};

use rampart_learn::{Dataset, DatasetKind, Learner, LearnerConfig, ModelKind, Rng, Schedule};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or_else(
        || {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/datasets/mnist"
            )
            .to_owned()
        },
        Clone::clone,
    );
    let seconds: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
    let train = match DatasetKind::Mnist.load(Path::new(&dir)) {
        Ok(split) => split.train,
        Err(e) => {
            eprintln!("MNIST not loaded ({e}); using random data of the same shape");
            let mut rng = Rng::seed_from_u64(0);
            let n = 10_000;
            let xs = (0..n * 784).map(|_| rng.next_f64() as f32).collect();
            let ys = (0..n).map(|_| rng.below(10) as u32).collect();
            Dataset::new(xs, ys, vec![1, 28, 28], 10)?
        }
    };
    let config = LearnerConfig::builder()
        .batch_size(32)
        .momentum(0.9)
        .schedule(Schedule::Constant { lr: 0.01 })
        .build()?;
    println!(
        "threads: RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!(
        "| model | d (parameters) | gradient steps/s | gradient + apply steps/s | params hash (200 steps) |"
    );
    println!("|---|---:|---:|---:|---|");
    for (label, kind) in [
        ("logistic regression 784-10", ModelKind::LogReg),
        ("MLP 784-128-10", ModelKind::Mlp { hidden: vec![128] }),
        ("MLP 784-256-10", ModelKind::Mlp { hidden: vec![256] }),
        ("CNN conv5x16-conv5x32-fc", ModelKind::Cnn),
    ] {
        let net = kind.build(&[1, 28, 28], 10, 1)?;
        let mut learner = Learner::new(net, config.clone(), train.clone(), 1)?;
        // Fixed work for the determinism hash.
        for _ in 0..200 {
            let g = learner.next_gradient()?;
            learner.apply_scheduled(&g)?;
        }
        let hash = fnv(&learner.parameters()?);
        let budget = Duration::from_secs_f64(seconds / 2.0);
        let grad_only = rate(budget, || learner.next_gradient().map(drop))?;
        let full = rate(budget, || {
            let g = learner.next_gradient()?;
            learner.apply_scheduled(&g).map(drop)
        })?;
        println!(
            "| {label} | {} | {grad_only:.0} | {full:.0} | {hash:016x} |",
            learner.dim()
        );
    }
    Ok(())
}

fn rate<E>(budget: Duration, mut step: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        step()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn fnv(xs: &[f32]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for x in xs {
        for b in x.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h
}
