//! The examples' wiring: a few nodes started with `LocalNet` train in
//! lockstep and end with identical models; a refused configuration names
//! its node.

use std::path::Path;
use std::time::Duration;

use rampart_examples::{ExampleError, LocalNet, learners};
use rampart_gar::Rule;
use rampart_learn::{DatasetKind, Learner, LearnerConfig, ModelKind, SyntheticConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_net_trains_identical_models() {
    let nodes = 3;
    let seed = 5;
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(seed).with_sizes(600, 200));
    let split = kind.load(Path::new("")).unwrap();
    let model = ModelKind::LogReg;
    let network = || model.build(&kind.sample_shape(), kind.num_classes(), seed);
    let config = LearnerConfig::default();
    let mut learners = learners(&split.train, nodes, seed, &config, network)
        .unwrap()
        .into_iter();
    let mut net = LocalNet::start(nodes, |_, b| {
        b.rule(Rule::Median)
            .rounds(5)
            .round_timeout(Duration::from_secs(10))
            .trainer(learners.next().unwrap())
    })
    .await
    .unwrap();
    let losses = net.finish(0..nodes).await.unwrap();
    assert_eq!(losses.len(), nodes);
    assert!(losses.iter().all(Option::is_some), "{losses:?}");
    let mut evaluator = Learner::new(network().unwrap(), config, split.test.clone(), seed).unwrap();
    let first = net.accuracy(0, &mut evaluator, &split.test).await.unwrap();
    assert!((0.0..=1.0).contains(&first));
    let models = all_parameters(&net).await;
    assert!(models.windows(2).all(|w| w[0] == w[1]));
    net.shutdown().await;
}

async fn all_parameters(net: &LocalNet) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for h in &net.handles {
        out.push(h.parameters().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_configuration_names_its_node() {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(1).with_sizes(100, 20));
    let split = kind.load(Path::new("")).unwrap();
    let network = || ModelKind::LogReg.build(&kind.sample_shape(), kind.num_classes(), 1);
    let mut learners = learners(&split.train, 3, 1, &LearnerConfig::default(), network)
        .unwrap()
        .into_iter();
    // Krum needs n >= 2f + 3: 3 nodes cannot declare f = 1.
    let err = LocalNet::start(3, |_, b| {
        b.rule(Rule::Krum { f: 1 })
            .trainer(learners.next().unwrap())
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ExampleError::Config { node: 0, .. }), "{err}");
    assert!(err.to_string().contains("krum"), "{err}");
}
