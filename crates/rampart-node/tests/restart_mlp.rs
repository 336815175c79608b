//! Issue 4 acceptance, with the real learner: a node training an MLP
//! (`rampart-learn`'s `Learner`, checkpointed as safetensors) is killed
//! mid-run, restarted from its checkpoint with a freshly built learner,
//! catches up from its peers' models and completes the remaining rounds.

use std::path::Path;
use std::time::Duration;

use rampart_gar::Rule;
use rampart_learn::{
    DatasetKind, Learner, LearnerConfig, ModelKind, Partition, SyntheticConfig, partition,
};
use rampart_node::{
    CHECKPOINT_FILE, NodeConfig, Rejoin, TestNet, follow_to_end, last_rounds, node_dirs,
    round_completed,
};

const N: usize = 5;
const SEED: u64 = 11;

/// Node `i`'s learner, built from scratch (as a restarted process would).
fn learner(i: usize) -> Learner {
    let kind = DatasetKind::Synthetic(SyntheticConfig::new(SEED).with_sizes(1000, 100));
    let split = kind.load(Path::new("")).unwrap();
    let shards = partition(Partition::Iid, split.train.labels(), N, SEED).unwrap();
    let net = ModelKind::Mlp { hidden: vec![16] }
        .build(&kind.sample_shape(), kind.num_classes(), SEED)
        .unwrap();
    let data = split.train.subset(&shards[i]).unwrap();
    Learner::new(net, LearnerConfig::default(), data, 500 + i as u64).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mlp_node_resumes_from_its_checkpoint_and_finishes() {
    let victim = 4;
    let rounds = 20;
    let kill_after = 4;
    let rule = Rule::TrimmedMean { f: 1 };
    let timeout = Duration::from_secs(60);
    // Removed when the test ends, whether it passes or not.
    let base = tempfile::tempdir().unwrap();
    let dirs = node_dirs(base.path(), N).unwrap();
    let configure = |i: usize, b: rampart_node::NodeConfigBuilder| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_millis(500))
            .job_tag("restart-mlp")
            .checkpoint_dir(&dirs[i])
            .trainer(learner(i))
    };
    let mut net = TestNet::start(N, timeout, configure).await.unwrap();

    round_completed(&mut net.events[victim], kill_after, timeout)
        .await
        .unwrap();
    net.handles[victim].shutdown().await.unwrap();
    let checkpoint = dirs[victim].join(CHECKPOINT_FILE);
    assert!(checkpoint.exists());
    let ahead = kill_after + 3;
    round_completed(&mut net.events[0], ahead, timeout)
        .await
        .unwrap();

    // A new process: a fresh learner, the same checkpoint directory.
    let config = configure(victim, TestNet::builder(N, victim))
        .build()
        .unwrap();
    let (handle, mut rx) = net.spawn(victim, config).await.unwrap();
    let Rejoin {
        resumed,
        caught_up,
        completed,
        ..
    } = follow_to_end(&mut rx, timeout).await.unwrap();
    // The checkpoint held the rounds done before the kill (it may have
    // finished one more round between the event and the shutdown).
    let resumed = resumed.expect("no Resumed event");
    assert!(
        (kill_after + 1..=kill_after + 2).contains(&resumed),
        "{resumed}"
    );
    let (joined, answers) = caught_up.expect("no CaughtUp event");
    assert!(joined >= ahead, "joined at {joined}");
    assert!(answers >= 3, "{answers} answers");
    assert_eq!(completed.first(), Some(&joined));
    assert_eq!(completed.last(), Some(&(rounds - 1)));
    assert!(completed.windows(2).all(|w| w[1] == w[0] + 1));

    let lasts = last_rounds(&mut net.events, Some(victim), timeout)
        .await
        .unwrap();
    for (i, last) in lasts.into_iter().enumerate() {
        assert_eq!(last, Some((rounds - 1, N)), "node {i}");
    }
    let params = handle.parameters().await.unwrap();
    assert!(params.iter().all(|x| x.is_finite()));
    // The final checkpoint is the restarted node's last round.
    let mut check = learner(victim);
    let job = NodeConfig::builder()
        .keypair(TestNet::key(victim))
        .roster(TestNet::roster(N))
        .rule(rule.clone())
        .job_tag("restart-mlp")
        .trainer(learner(victim))
        .build()
        .unwrap()
        .job();
    let done = rampart_node::Trainer::load_checkpoint(&mut check, &checkpoint, &job).unwrap();
    assert_eq!(done, rounds);
    assert_eq!(rampart_node::Trainer::parameters(&check).unwrap(), params);
    handle.shutdown().await.unwrap();
    net.shutdown().await;
}
