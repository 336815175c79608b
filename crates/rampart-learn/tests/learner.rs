//! Learner behaviour: momentum, weight decay, schedules, determinism,
//! checkpoints.

use std::path::Path;

use rampart_learn::{
    CheckpointError, CorruptKind, DatasetKind, LearnError, Learner, LearnerConfig, ModelKind,
    Schedule, Split, SyntheticConfig, read_checkpoint,
};

fn split() -> (DatasetKind, Split) {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(4).with_sizes(1000, 200));
    let split = kind.load(Path::new("")).unwrap();
    (kind, split)
}

fn learner(config: LearnerConfig, seed: u64) -> Learner {
    let (kind, split) = split();
    let net = ModelKind::Mlp { hidden: vec![16] }
        .build(&kind.sample_shape(), kind.num_classes(), 5)
        .unwrap();
    Learner::new(net, config, split.train, seed).unwrap()
}

fn run(l: &mut Learner, steps: usize) {
    for _ in 0..steps {
        let g = l.next_gradient().unwrap();
        l.apply_scheduled(&g).unwrap();
    }
}

#[test]
fn momentum_and_weight_decay_follow_the_formula() {
    let beta = 0.5f32;
    let wd = 0.01f32;
    let with = LearnerConfig::builder()
        .momentum(beta)
        .weight_decay(wd)
        .build()
        .unwrap();
    let mut a = learner(with, 8);
    let mut raw = learner(LearnerConfig::default(), 8);
    let w = a.parameters().unwrap();
    let mut m = vec![0.0f32; a.dim()];
    // No update applied: parameters stay fixed, batches are the same stream.
    for _ in 0..4 {
        let sent = a.next_gradient().unwrap();
        let g = raw.next_gradient().unwrap();
        for j in 0..m.len() {
            m[j] = beta * m[j] + (g[j] + wd * w[j]);
        }
        assert!(
            sent.iter()
                .zip(&m)
                .all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0))
        );
    }
    assert_eq!(a.momentum().len(), a.dim());
    assert!(raw.momentum().is_empty());
}

#[test]
fn dampening_gives_a_moving_average() {
    let cfg = LearnerConfig::builder()
        .momentum(0.9)
        .dampening(0.9)
        .build()
        .unwrap();
    let mut a = learner(cfg, 3);
    let mut raw = learner(LearnerConfig::default(), 3);
    let sent = a.next_gradient().unwrap();
    let g = raw.next_gradient().unwrap();
    for (s, g) in sent.iter().zip(&g) {
        assert!((s - 0.1 * g).abs() <= 1e-7 + 1e-6 * g.abs());
    }
}

#[test]
fn schedules() {
    let c = Schedule::Constant { lr: 0.1 };
    assert_eq!(c.lr(0), 0.1);
    assert_eq!(c.lr(1_000_000), 0.1);
    let s = Schedule::Step {
        lr: 1.0,
        gamma: 0.5,
        every: 10,
    };
    assert_eq!(
        (s.lr(0), s.lr(9), s.lr(10), s.lr(25)),
        (1.0, 1.0, 0.5, 0.25)
    );
    let cos = Schedule::Cosine {
        lr: 1.0,
        min_lr: 0.0,
        total: 100,
    };
    assert_eq!(cos.lr(0), 1.0);
    assert!((cos.lr(50) - 0.5).abs() < 1e-7);
    assert!((cos.lr(25) - 0.853_553_4).abs() < 1e-6);
    assert!(cos.lr(100).abs() < 1e-7);
    assert_eq!(cos.lr(100), cos.lr(500));
    let bad = LearnerConfig::builder()
        .schedule(Schedule::Step {
            lr: 1.0,
            gamma: 0.5,
            every: 0,
        })
        .build();
    assert!(matches!(
        bad,
        Err(LearnError::InvalidConfig { field: "every", .. })
    ));
    // The learner's clock advances with each update.
    let mut l = learner(LearnerConfig::builder().schedule(s).build().unwrap(), 1);
    run(&mut l, 10);
    assert_eq!((l.step(), l.lr()), (10, 0.5));
}

#[test]
fn config_validation_and_serde() {
    for b in [
        LearnerConfig::builder().batch_size(0),
        LearnerConfig::builder().momentum(1.0),
        LearnerConfig::builder().momentum(-0.1),
        LearnerConfig::builder().weight_decay(f32::NAN),
        LearnerConfig::builder().schedule(Schedule::Constant { lr: f32::INFINITY }),
    ] {
        assert!(matches!(b.build(), Err(LearnError::InvalidConfig { .. })));
    }
    let cfg = LearnerConfig::builder()
        .batch_size(64)
        .momentum(0.9)
        .schedule(Schedule::Cosine {
            lr: 0.1,
            min_lr: 0.001,
            total: 1000,
        })
        .build()
        .unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(serde_json::from_str::<LearnerConfig>(&json).unwrap(), cfg);
    let bad = json.replace("\"batch_size\":64", "\"batch_size\":0");
    assert!(serde_json::from_str::<LearnerConfig>(&bad).is_err());
    let kinds = vec![
        ModelKind::LogReg,
        ModelKind::Mlp { hidden: vec![128] },
        ModelKind::Cnn,
    ];
    let json = serde_json::to_string(&kinds).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<ModelKind>>(&json).unwrap(),
        kinds
    );
}

#[test]
fn learner_checks_its_inputs() {
    let (kind, split) = split();
    let net = || {
        ModelKind::LogReg
            .build(&kind.sample_shape(), 10, 0)
            .unwrap()
    };
    let empty = split.train.subset(&[]).unwrap();
    assert!(matches!(
        Learner::new(net(), LearnerConfig::default(), empty, 0),
        Err(LearnError::EmptyShard)
    ));
    let other = ModelKind::LogReg.build(&[1, 28, 28], 10, 0).unwrap();
    assert!(matches!(
        Learner::new(other, LearnerConfig::default(), split.train.clone(), 0),
        Err(LearnError::DataShape { .. })
    ));
    let mut l = Learner::new(net(), LearnerConfig::default(), split.train, 0).unwrap();
    assert!(matches!(
        l.apply(&[0.0; 3], 0.1),
        Err(LearnError::DimMismatch { .. })
    ));
    // A shard smaller than the batch is used whole.
    let tiny = split.test.subset(&[0, 1, 2]).unwrap();
    let mut t = Learner::new(net(), LearnerConfig::default(), tiny, 0).unwrap();
    assert_eq!(t.sample_batch(), vec![0, 1, 2]);
    l.set_parameters(&vec![0.0; l.dim()]).unwrap();
    let e = l.evaluate(&split.test).unwrap();
    assert!((e.loss - 10f64.ln()).abs() < 1e-4, "{e:?}");
}

#[test]
fn training_is_bit_for_bit_reproducible() {
    let cfg = LearnerConfig::builder()
        .momentum(0.9)
        .weight_decay(1e-4)
        .build()
        .unwrap();
    let mut a = learner(cfg.clone(), 77);
    let mut b = learner(cfg.clone(), 77);
    let mut c = learner(cfg, 78);
    run(&mut a, 30);
    run(&mut b, 30);
    run(&mut c, 30);
    let (pa, pb, pc) = (
        a.parameters().unwrap(),
        b.parameters().unwrap(),
        c.parameters().unwrap(),
    );
    assert!(pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_ne!(pa, pc, "another sampler seed draws other batches");
}

#[test]
fn checkpoint_resume_continues_the_same_trajectory() {
    let cfg = LearnerConfig::builder()
        .momentum(0.9)
        .schedule(Schedule::Step {
            lr: 0.1,
            gamma: 0.5,
            every: 5,
        })
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-0.safetensors");

    let mut a = learner(cfg.clone(), 11);
    let hash = a.config_hash(b"job-1");
    run(&mut a, 10);
    a.save_checkpoint(&path, 10, &hash).unwrap();
    run(&mut a, 10);

    let mut b = learner(cfg.clone(), 999);
    assert_eq!(b.load_checkpoint(&path, &hash).unwrap(), 10);
    assert_eq!(b.step(), 10);
    run(&mut b, 10);
    assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
    assert_eq!(a.momentum(), b.momentum());
    assert_eq!(read_checkpoint(&path).unwrap().round, 10);

    // Another job: refused, learner untouched.
    let before = b.parameters().unwrap();
    let other = b.config_hash(b"job-2");
    assert_ne!(other, hash);
    assert!(matches!(
        b.load_checkpoint(&path, &other),
        Err(CheckpointError::ConfigMismatch { .. })
    ));
    assert_eq!(b.parameters().unwrap(), before);
    // Another model size under the same hash.
    let (kind, split) = split();
    let net = ModelKind::LogReg
        .build(&kind.sample_shape(), 10, 0)
        .unwrap();
    let mut small = Learner::new(net, cfg, split.train, 0).unwrap();
    assert!(matches!(
        small.load_checkpoint(&path, &hash),
        Err(CheckpointError::DimMismatch { .. })
    ));
    // Corrupt file.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        b.load_checkpoint(&path, &hash),
        Err(CheckpointError::Corrupt {
            kind: CorruptKind::DigestMismatch,
            ..
        })
    ));
    assert_eq!(b.parameters().unwrap(), before);
}

#[test]
fn learner_can_move_to_a_training_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Learner>();
    let mut l = learner(LearnerConfig::default(), 0);
    let handle = std::thread::spawn(move || {
        run(&mut l, 2);
        l
    });
    assert_eq!(handle.join().unwrap().step(), 2);
}
