//! Issue 4, first acceptance item: 5 honest nodes train an MLP on the
//! built-in synthetic data set for 30 rounds with no faults; all final
//! parameters are bit-identical and equal to a single-process simulation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use libp2p::PeerId;
use rampart_gar::{CoordinatePhase, Rule};
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Partition, SyntheticConfig, partition,
};
use rampart_node::{Event, TestNet, Trainer, aggregate_inputs};

const N: usize = 5;
const ROUNDS: u64 = 30;
const SEED: u64 = 3;

fn learners() -> Vec<Learner> {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(SEED).with_sizes(2000, 200));
    let split = kind.load(Path::new("")).unwrap();
    let shards = partition(Partition::Iid, split.train.labels(), N, SEED).unwrap();
    shards
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let net = ModelKind::Mlp { hidden: vec![32] }
                .build(&kind.sample_shape(), kind.num_classes(), SEED)
                .unwrap();
            let data = split.train.subset(shard).unwrap();
            Learner::new(net, LearnerConfig::default(), data, 100 + i as u64).unwrap()
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mlp_nodes_agree_with_the_simulation() {
    let rule = Rule::MultiBulyan {
        f: 0,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let roster = TestNet::roster(N);

    // Single-process simulation of the same job.
    let mut sim = learners();
    for round in 0..ROUNDS {
        let mut inputs: BTreeMap<PeerId, Vec<f32>> = BTreeMap::new();
        for (peer, l) in roster.iter().zip(&mut sim) {
            inputs.insert(*peer, Trainer::gradient(l, round).unwrap().1);
        }
        let update = aggregate_inputs(&rule, N, &inputs).unwrap();
        for l in &mut sim {
            Trainer::apply(l, &update, round).unwrap();
        }
    }
    let expected = Trainer::parameters(&sim[0]).unwrap();

    let mut nodes: Vec<Option<Learner>> = learners().into_iter().map(Some).collect();
    let timeout = Duration::from_secs(60);
    let mut net = TestNet::start(N, timeout, |i, b| {
        let learner = nodes[i].take().unwrap();
        b.rule(rule.clone())
            .rounds(ROUNDS)
            .round_timeout(Duration::from_secs(30))
            .job_tag("mlp-5")
            .trainer(learner)
    })
    .await
    .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    for events in &per_node {
        assert_eq!(events.len(), ROUNDS as usize);
        assert!(events.iter().all(|e| matches!(
            e,
            Event::RoundCompleted {
                accepted: N,
                rejected: 0,
                ..
            }
        )));
    }
    for (i, h) in net.handles.iter().enumerate() {
        let p = h.parameters().await.unwrap();
        assert_eq!(
            bits(&p),
            bits(&expected),
            "node {i} differs from the simulation"
        );
    }
    net.shutdown().await;
}
