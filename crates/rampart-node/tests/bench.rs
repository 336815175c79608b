//! Dissemination figures (issue 4): bytes per node per round against the
//! bound (n − 1) · d · 4, and round latency, for 8 nodes and d ≈ 10⁶.
//! Ignored by default (it moves ~0.2 GB per round through loopback):
//!
//! ```text
//! cargo test -p rampart-node --test bench -- --ignored --nocapture
//! ```

use std::time::Duration;

use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{Event, LinearRegression, TestNet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn eight_nodes_one_million_coordinates() {
    let n = 8;
    let d = 1_000_000;
    let rounds = 5;
    let rule = Rule::MultiBulyan {
        f: 1,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    let timeout = Duration::from_secs(300);
    let mut net = TestNet::start(n, timeout, |i, b| {
        b.rule(rule.clone())
            .rounds(rounds)
            .round_timeout(Duration::from_secs(120))
            .job_tag("bench")
            .trainer(LinearRegression::new(d, 1, i as u64, 2))
    })
    .await
    .unwrap();
    let per_node = net.run_to_end(timeout).await.unwrap();
    let bound = ((n - 1) * d * 4) as f64;
    let mut bytes = Vec::new();
    let mut totals = Vec::new();
    let mut collect = Vec::new();
    let mut aggregate = Vec::new();
    let mut compute = Vec::new();
    for events in &per_node {
        for ev in events {
            match ev {
                // Round 0 includes connection warm-up; report the others.
                Event::RoundCompleted {
                    round,
                    bytes_sent,
                    timings,
                    accepted,
                    ..
                } if *round > 0 => {
                    assert_eq!(*accepted, n);
                    bytes.push(*bytes_sent as f64);
                    totals.push(timings.total.as_secs_f64());
                    collect.push(timings.collect.as_secs_f64());
                    aggregate.push(timings.aggregate.as_secs_f64());
                    compute.push(timings.compute.as_secs_f64());
                }
                Event::RoundCompleted { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "n = {n}, d = {d}, rounds measured = {} per node",
        rounds - 1
    );
    println!(
        "bytes sent per node per round: mean {:.0} ({:.4} x bound {:.0}), max {:.0}",
        mean(&bytes),
        mean(&bytes) / bound,
        bound,
        max(&bytes)
    );
    println!(
        "round latency (s): mean {:.3}, max {:.3}; compute {:.3}, collect {:.3}, aggregate+apply {:.3}",
        mean(&totals),
        max(&totals),
        mean(&compute),
        mean(&collect),
        mean(&aggregate)
    );
    assert!(mean(&bytes) >= bound);
    assert!(mean(&bytes) / bound < 1.01);
    net.shutdown().await;
}
