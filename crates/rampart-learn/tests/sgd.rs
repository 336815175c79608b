//! Flat gradient → apply equals candle's own SGD step.

use candle_nn::Optimizer;
use rampart_learn::{Dataset, ModelKind, Network, Rng};

fn data(shape: &[usize], n: usize) -> Dataset {
    let len: usize = shape.iter().product();
    let mut rng = Rng::seed_from_u64(3);
    let xs = (0..n * len)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect();
    let ys = (0..n).map(|_| rng.below(10) as u32).collect();
    Dataset::new(xs, ys, shape.to_vec(), 10).unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from((x - y).abs());
            d / f64::from(x.abs().max(y.abs())).max(1e-12)
        })
        .fold(0.0, f64::max)
}

#[test]
fn flat_apply_matches_candle_sgd() {
    for (kind, shape) in [
        (ModelKind::LogReg, vec![1, 28, 28]),
        (
            ModelKind::Mlp {
                hidden: vec![64, 32],
            },
            vec![1, 28, 28],
        ),
        (ModelKind::Cnn, vec![1, 28, 28]),
    ] {
        let ours: Network = kind.build(&shape, 10, 9).unwrap();
        let theirs: Network = kind.build(&shape, 10, 9).unwrap();
        let mut sgd = candle_nn::SGD::new(theirs.vars(), 0.1).unwrap();
        let d = data(&shape, 256);
        let mut worst = 0.0f64;
        for step in 0..5 {
            let idx: Vec<usize> = (step * 32..(step + 1) * 32).collect();
            let (xs, ys) = d.batch(&idx).unwrap();
            let (_, g) = ours.gradient(&xs, &ys).unwrap();
            ours.apply(&g, 0.1).unwrap();
            let loss = candle_nn::loss::cross_entropy(&theirs.forward(&xs).unwrap(), &ys).unwrap();
            sgd.backward_step(&loss).unwrap();
            worst = worst.max(max_rel(
                &ours.parameters().unwrap(),
                &theirs.parameters().unwrap(),
            ));
        }
        println!("{kind:?}: max relative difference after 5 steps {worst:e}");
        assert!(worst <= 1e-6, "{kind:?}: {worst}");
    }
}
