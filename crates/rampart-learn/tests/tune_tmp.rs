use std::path::Path;
use rampart_learn::*;

fn train(learner: &mut Learner, steps: usize) {
    for _ in 0..steps {
        let g = learner.next_gradient().unwrap();
        learner.apply_scheduled(&g).unwrap();
    }
}

#[test]
fn tune_synth() {
    for spread in [0.8f32, 0.9, 1.0] {
        for k in [3usize, 4] {
        let kind = DatasetKind::Synthetic(SyntheticConfig::new(1).with_spread(spread).with_clusters_per_class(k));
        let split = kind.load(Path::new("")).unwrap();
        let config = LearnerConfig::builder().batch_size(32).momentum(0.9)
            .schedule(Schedule::Constant { lr: 0.05 }).build().unwrap();
        let run = |model: ModelKind, steps: usize| {
            let net = model.build(&kind.sample_shape(), kind.num_classes(), 2).unwrap();
            let mut learner = Learner::new(net, config.clone(), split.train.clone(), 2).unwrap();
            let mut curve = Vec::new();
            for _ in 0..steps / 100 {
                train(&mut learner, 100);
                curve.push(learner.evaluate(&split.test).unwrap().accuracy);
            }
            curve
        };
        let mlp = run(ModelKind::Mlp { hidden: vec![64] }, 1000);
        let logreg = run(ModelKind::LogReg, 600);
        println!("spread {spread} k {k}: mlp {mlp:.3?} logreg {logreg:.3?}");
        }
    }
}

#[test]
fn tune_mnist() {
    let split = DatasetKind::Mnist.load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/mnist"))).unwrap();
    for (lr, damp, steps, cos) in [(0.05f32, 0.0f32, 3000u64, true), (0.1, 0.0, 3000, true), (0.5, 0.9, 3000, true), (0.05, 0.0, 3000, false)] {
        let t = std::time::Instant::now();
        let net = ModelKind::Mlp { hidden: vec![128] }.build(&[1, 28, 28], 10, 1).unwrap();
        let sched = if cos { Schedule::Cosine { lr, min_lr: 0.0, total: steps } } else { Schedule::Constant { lr } };
        let config = LearnerConfig::builder().batch_size(64).momentum(0.9).dampening(damp).schedule(sched).build().unwrap();
        let mut learner = Learner::new(net, config, split.train.clone(), 1).unwrap();
        let mut curve = Vec::new();
        for _ in 0..(steps / 500) {
            train(&mut learner, 500);
            curve.push(learner.evaluate(&split.test).unwrap().accuracy);
        }
        println!("lr {lr} damp {damp} cos {cos}: {curve:.4?} {:.1?}", t.elapsed());
    }
}
