//! Dissemination benchmark (issue 4, DESIGN §6): n nodes on 127.0.0.1 in one
//! process, d coordinates, against a plain direct push of the same frames
//! between n bare libp2p swarms of the same transport
//! (`rampart_node::baseline`), measured in the same run.
//!
//! ```text
//! cargo bench -p rampart-node --bench dissemination
//! cargo bench -p rampart-node --bench dissemination -- --nodes 8 --dim 1000000 --rounds 6 --workers 2
//! ```
//!
//! `--workers` sets the tokio runtime's worker threads (default: the
//! machine's available parallelism, 2 on the reference machine).
//!
//! Round 0 (connection warm-up) is left out of every figure. Runs, in order:
//! baseline, the floor (the baseline's swarms also doing the work no node
//! can skip: gradient, hashes, average; `baseline::push_rounds_with`),
//! nodes with the average rule, nodes with multi-Bulyan (f = 1),
//! nodes with multi-Bulyan and drift control every 2 rounds, nodes with the
//! average rule and bf16 gradients (half the bytes; its "x baseline"
//! still divides by the f32 plain push, and its "x bound" by the f32
//! bound), baseline again.

use std::time::Duration;

use rampart_gar::{CoordinatePhase, Rule};
use rampart_node::{
    Encoding, Event, JobId, LinearRegression, PayloadKind, SignedPayload, TestNet, Trainer,
    baseline,
};

struct Args {
    nodes: usize,
    dim: usize,
    rounds: u64,
    /// Tokio worker threads (default: the machine's available parallelism).
    workers: usize,
    /// Run only `average` (the nodes with that rule), `baseline` or `floor`, for
    /// profiling.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 8,
        dim: 1_000_000,
        rounds: 6,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut val = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} needs a number"))
        };
        if k == "--only" {
            a.only = it.next().cloned();
            continue;
        }
        match k.as_str() {
            "--nodes" => a.nodes = val() as usize,
            "--dim" => a.dim = val() as usize,
            "--rounds" => a.rounds = val(),
            "--workers" => a.workers = (val() as usize).max(1),
            // `cargo bench` passes --bench; other flags are not ours.
            _ => {}
        }
    }
    a
}

/// CPU seconds (user + system) this process used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[derive(Default)]
struct Figures {
    total: Vec<f64>,
    collect: Vec<f64>,
    compute: Vec<f64>,
    aggregate: Vec<f64>,
    drift: Vec<f64>,
    bytes: Vec<f64>,
    /// Process CPU seconds per round (all nodes, every round, set-up
    /// included).
    cpu_per_round: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

async fn nodes(a: &Args, rule: Rule, drift: u64, tag: &str, encoding: Encoding) -> Figures {
    let timeout = Duration::from_secs(600);
    let cpu0 = cpu_seconds();
    let mut net = TestNet::start(a.nodes, timeout, |i, b| {
        b.rule(rule.clone())
            .rounds(a.rounds)
            .round_timeout(Duration::from_secs(120))
            .drift_period(drift)
            .job_tag(tag)
            .gradient_encoding(encoding)
            .trainer(trainer(a, i))
    })
    .await
    .expect("start the nodes");
    let per_node = net.run_to_end(timeout).await.expect("run the nodes");
    net.shutdown().await;
    let mut f = Figures::default();
    if let (Some(a0), Some(a1)) = (cpu0, cpu_seconds()) {
        f.cpu_per_round = (a1 - a0) / a.rounds as f64;
    }
    for events in &per_node {
        for ev in events {
            match ev {
                Event::RoundCompleted {
                    round,
                    bytes_sent,
                    timings,
                    accepted,
                    ..
                } if *round > 0 => {
                    assert_eq!(*accepted, a.nodes, "a round closed without every input");
                    f.bytes.push(*bytes_sent as f64);
                    f.total.push(timings.total.as_secs_f64());
                    f.collect.push(timings.collect.as_secs_f64());
                    f.compute.push(timings.compute.as_secs_f64());
                    f.aggregate.push(timings.aggregate.as_secs_f64());
                    f.drift.push(timings.drift.as_secs_f64());
                }
                Event::RoundCompleted { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    f
}

/// The bench's trainer for node `i` (the nodes' and the floor's).
fn trainer(a: &Args, i: usize) -> LinearRegression {
    // One sample per gradient (two passes over the model, a few ms at
    // d = 1e6: the figure is about dissemination, not training), and a rate
    // inside the trainer's stable range at this size (about 3 / d): at its
    // default 0.1 the gradients overflow within ten rounds and the inputs
    // are rejected as non-finite.
    LinearRegression::new(a.dim, 1, i as u64, 2)
        .with_batch(1)
        .with_learning_rate(1.0 / a.dim as f32)
}

/// The plain push of `frame`; with `work`, each swarm also does the work
/// no node can skip (`baseline::push_rounds_with`).
async fn plain(a: &Args, frame: &[u8], work: bool) -> Figures {
    let cpu0 = cpu_seconds();
    let trainers: Vec<Box<dyn Trainer>> = if work {
        (0..a.nodes)
            .map(|i| Box::new(trainer(a, i)) as Box<dyn Trainer>)
            .collect()
    } else {
        Vec::new()
    };
    let runs = baseline::push_rounds_with(
        a.nodes,
        frame,
        a.rounds as usize,
        Duration::from_secs(600),
        trainers,
    )
    .await
    .expect("baseline");
    let mut f = Figures::default();
    if let (Some(a0), Some(a1)) = (cpu0, cpu_seconds()) {
        f.cpu_per_round = (a1 - a0) / a.rounds as f64;
    }
    for (lat, bytes) in runs {
        for l in lat.iter().skip(1) {
            f.total.push(l.as_secs_f64());
            f.collect.push(l.as_secs_f64());
            f.bytes.push(bytes as f64);
        }
    }
    f
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A node's push frame: version, envelope with the signed header, d f32.
    let values: Vec<f32> = (0..a.dim).map(|i| (i % 1000) as f32 * 1e-3).collect();
    let (_, frame) = SignedPayload::push_f32(
        &TestNet::key(0),
        JobId([0; 32]),
        0,
        PayloadKind::Gradient,
        &values,
    )
    .expect("sign");
    let mb = Rule::MultiBulyan {
        f: 1,
        m: None,
        phase: CoordinatePhase::MedianClosest,
    };
    if a.only.as_deref() == Some("average") {
        let f = rt.block_on(nodes(
            &a,
            Rule::Average,
            0,
            "bench-average",
            Encoding::F32Le,
        ));
        println!(
            "nodes, average: round {:.3} s, collect {:.3} s",
            mean(&f.total),
            mean(&f.collect)
        );
        return;
    }
    if a.only.as_deref() == Some("baseline") {
        let f = rt.block_on(plain(&a, &frame, false));
        println!("plain push: round {:.3} s", mean(&f.total));
        return;
    }
    if a.only.as_deref() == Some("floor") {
        let f = rt.block_on(plain(&a, &frame, true));
        println!(
            "plain push with the node's necessary work: round {:.3} s",
            mean(&f.total)
        );
        return;
    }
    let f32le = Encoding::F32Le;
    let (base1, floor, avg, mbul, mbul_drift, avg_bf16, base2) = rt.block_on(async {
        let base1 = plain(&a, &frame, false).await;
        eprintln!("baseline: round {:.3} s", mean(&base1.total));
        let floor = plain(&a, &frame, true).await;
        eprintln!(
            "plain push with the node's necessary work: round {:.3} s",
            mean(&floor.total)
        );
        let avg = nodes(&a, Rule::Average, 0, "bench-average", f32le).await;
        eprintln!("nodes, average: round {:.3} s", mean(&avg.total));
        let mbul = nodes(&a, mb.clone(), 0, "bench-multi-bulyan", f32le).await;
        eprintln!("nodes, multi-Bulyan: round {:.3} s", mean(&mbul.total));
        let mbul_drift = nodes(&a, mb.clone(), 2, "bench-multi-bulyan-drift", f32le).await;
        eprintln!(
            "nodes, multi-Bulyan with drift: round {:.3} s",
            mean(&mbul_drift.total)
        );
        let avg_bf16 = nodes(&a, Rule::Average, 0, "bench-average-bf16", Encoding::Bf16Le).await;
        eprintln!("nodes, average, bf16: round {:.3} s", mean(&avg_bf16.total));
        let base2 = plain(&a, &frame, false).await;
        (base1, floor, avg, mbul, mbul_drift, avg_bf16, base2)
    });
    let bound = ((a.nodes - 1) * a.dim * 4) as f64;
    let mut both = base1.total.clone();
    both.extend(&base2.total);
    let base = mean(&both);
    println!(
        "n = {}, d = {}, frame = {} bytes, rounds measured = {} per node (round 0 left out), {} tokio workers, {} CPUs",
        a.nodes,
        a.dim,
        frame.len(),
        a.rounds - 1,
        a.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "bound (n - 1) * d * 4 = {bound:.0} bytes; baseline round = mean of both baseline runs = {base:.3} s"
    );
    println!();
    println!(
        "| run | round latency mean / median / max (s) | x baseline (mean) | of which compute / collect / aggregate+apply / drift (s, mean) | bytes sent per node per round | x bound | CPU s per round, all nodes |"
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, f: &Figures, parts: bool| {
        let breakdown = if parts {
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3}",
                mean(&f.compute),
                mean(&f.collect),
                mean(&f.aggregate),
                mean(&f.drift)
            )
        } else {
            "-".into()
        };
        println!(
            "| {name} | {:.3} / {:.3} / {:.3} | {:.2} | {breakdown} | {:.0} | {:.4} | {:.2} |",
            mean(&f.total),
            median(&f.total),
            max(&f.total),
            mean(&f.total) / base,
            mean(&f.bytes),
            mean(&f.bytes) / bound,
            f.cpu_per_round
        );
    };
    row("plain push (baseline, first)", &base1, false);
    row(
        "plain push + gradient, hashes, average (floor)",
        &floor,
        false,
    );
    row("nodes, average", &avg, true);
    row("nodes, multi-Bulyan f = 1", &mbul, true);
    row(
        "nodes, multi-Bulyan f = 1, drift every 2 rounds",
        &mbul_drift,
        true,
    );
    row("nodes, average, bf16 gradients", &avg_bf16, true);
    row("plain push (baseline, again)", &base2, false);
    println!();
    println!(
        "floor = the plain push where each swarm also computes its gradient, hashes it into its frame, \
         hashes and checks each payload it receives and applies the average of the n gradients: \
         the work no node can skip. Nodes over the floor: average {:.2}, multi-Bulyan {:.2}",
        mean(&avg.total) / mean(&floor.total),
        mean(&mbul.total) / mean(&floor.total),
    );
}
