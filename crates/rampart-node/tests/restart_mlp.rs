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
use rampart_node::{CHECKPOINT_FILE, Event, NodeConfig, NodeHandle, TestNet, wait_for};

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
    let base =
        std::env::temp_dir().join(format!("rampart-node-restart-mlp-{}", std::process::id()));
    let dirs: Vec<std::path::PathBuf> = (0..N)
        .map(|i| {
            let d = base.join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            d
        })
        .collect();
    let configure = |i: usize, b: rampart_node::NodeConfigBuilder| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_millis(500))
            .job_tag("restart-mlp")
            .checkpoint_dir(&dirs[i])
            .trainer(learner(i))
    };
    let mut net = TestNet::start(N, timeout, configure).await.unwrap();

    wait_for(&mut net.events[victim], timeout, |ev| match ev {
        Event::RoundCompleted { round, .. } if *round == kill_after => Some(()),
        Event::Failed { error } => panic!("{error}"),
        _ => None,
    })
    .await
    .unwrap();
    net.handles[victim].shutdown().await.unwrap();
    let checkpoint = dirs[victim].join(CHECKPOINT_FILE);
    assert!(checkpoint.exists());
    let ahead = kill_after + 3;
    wait_for(&mut net.events[0], timeout, |ev| match ev {
        Event::RoundCompleted { round, .. } if *round == ahead => Some(()),
        _ => None,
    })
    .await
    .unwrap();

    // A new process: a fresh learner, the same checkpoint directory.
    let config = configure(
        victim,
        NodeConfig::builder()
            .keypair(TestNet::key(victim))
            .roster(TestNet::roster(N))
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
    )
    .build()
    .unwrap();
    let (handle, mut rx) = NodeHandle::spawn(config).unwrap();
    let roster = TestNet::roster(N);
    for (j, addr) in net.addrs.iter().enumerate() {
        if j != victim {
            handle.dial(roster[j], addr.clone()).await.unwrap();
        }
    }
    let mut resumed = None;
    let mut caught_up = None;
    let mut completed = Vec::new();
    wait_for(&mut rx, timeout, |ev| match ev {
        Event::Resumed { round } => {
            resumed = Some(*round);
            None
        }
        Event::CaughtUp { round, answers } => {
            caught_up = Some((*round, *answers));
            None
        }
        Event::RoundCompleted { round, .. } => {
            completed.push(*round);
            None
        }
        Event::Failed { error } => panic!("restarted node failed: {error}"),
        Event::Finished { .. } => Some(()),
        _ => None,
    })
    .await
    .unwrap();
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

    for (i, rx) in net.events.iter_mut().enumerate() {
        if i == victim {
            continue;
        }
        let mut last = None;
        wait_for(rx, timeout, |ev| match ev {
            Event::RoundCompleted {
                round, accepted, ..
            } => {
                last = Some((*round, *accepted));
                None
            }
            Event::Failed { error } => panic!("node {i} failed: {error}"),
            Event::Finished { .. } => Some(()),
            _ => None,
        })
        .await
        .unwrap();
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
    let _ = std::fs::remove_dir_all(&base);
}
