//! The orchestrator: one OS process per node on 127.0.0.1, their metrics
//! read from their stdout, faults injected on schedule, and the state the
//! report is written from.
//!
//! Every child runs in its own process group and is told to stop when its
//! stdin closes, so neither Ctrl-C nor a crash of the orchestrator leaves a
//! node behind: children are killed (their whole group) on drop and on
//! SIGINT/SIGTERM, and a node whose parent vanished sees its stdin close.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::{self, MetricLine, RoundInfo};
use crate::netns::Lab;
use crate::roster::{testnet_key, write_key};
use crate::scenario::{NodePlan, Scenario};

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `rampart` binary that provides `rampart node`.
    pub exe: PathBuf,
    /// Report folder (created; keys and node folders inside are replaced).
    pub out: PathBuf,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What the run observed about one node.
#[derive(Clone, Debug, Default)]
pub struct NodeRecord {
    /// Node index (roster order).
    pub index: usize,
    /// PeerId (base58).
    pub peer: String,
    /// Behaviour string.
    pub role: String,
    /// Whether the node is Byzantine.
    pub byzantine: bool,
    /// Whether the scenario crashes this node.
    pub crashes: bool,
    /// Completed rounds, in order (restarts may repeat rounds).
    pub rounds: Vec<RoundInfo>,
    /// Evaluations: (round, accuracy, loss).
    pub evals: Vec<(u64, f64, f64)>,
    /// Rejected inputs per reason, from `InputRejected` events.
    pub rejected: BTreeMap<String, u64>,
    /// The final line, if the node finished.
    pub final_line: Option<FinalRecord>,
    /// Why the node failed, if it did.
    pub failure: Option<String>,
    /// Process starts (1 + restarts).
    pub starts: u32,
    /// Model dimension d (from the node's start line).
    pub dim: usize,
}

/// The `final` metrics line of a node.
#[derive(Clone, Debug, Default)]
pub struct FinalRecord {
    /// Rounds done.
    pub rounds: u64,
    /// Final test accuracy.
    pub accuracy: f64,
    /// Final test loss.
    pub loss: f64,
    /// Hash of the final parameters.
    pub model_hash: String,
    /// Refusals per reason.
    pub counters: BTreeMap<String, u64>,
    /// Ignored inputs per reason.
    pub ignored: BTreeMap<String, u64>,
    /// Excluded peers.
    pub excluded: Vec<String>,
    /// Bytes pushed.
    pub bytes_sent: u64,
}

/// Everything a run observed.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// The scenario run.
    pub scenario: Scenario,
    /// Per node.
    pub nodes: Vec<NodeRecord>,
    /// Largest distance between honest models at each evaluated round.
    pub spread: BTreeMap<u64, f64>,
    /// Wall time of the run.
    pub wall: Duration,
    /// Set when the run was interrupted (Ctrl-C) or timed out.
    pub aborted: Option<String>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Whether Ctrl-C (or SIGTERM) was received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn install_signal_handler() {
    HANDLER.get_or_init(|| {
        // If a handler is already installed (an embedding program), keep it.
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    });
}

/// A running node process; killed with its process group on drop.
struct NodeProcess {
    child: std::process::Child,
    /// Held open: the node stops when it closes.
    stdin: Option<ChildStdin>,
}

impl NodeProcess {
    fn kill(&mut self) {
        self.stdin.take();
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The child leads its own group (process_group(0)).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Msg {
    Line(usize, u32, MetricLine),
    Eof(usize, u32),
}

struct Slot {
    plan: NodePlan,
    key: PathBuf,
    dir: PathBuf,
    process: Option<NodeProcess>,
    generation: u32,
    addr: Option<String>,
    last_round: Option<u64>,
    finished: bool,
    crashed: bool,
    restarted: bool,
    /// Set while the node is cut off: the round the others had completed.
    cut_at: Option<u64>,
    /// Whether its partition was healed.
    healed: bool,
    record: NodeRecord,
    snapshots: BTreeMap<u64, PathBuf>,
}

/// Runs `scenario` to the end (or until Ctrl-C / its timeout) and returns
/// what was observed. The report is written by [`crate::report::write`].
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunRecord> {
    scenario.validate()?;
    scenario.check_data()?;
    install_signal_handler();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let started = Instant::now();
    let out = &opts.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for sub in ["keys", "nodes"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    let scenario_text = toml::to_string_pretty(scenario).context("cannot encode the scenario")?;
    std::fs::write(out.join("scenario.toml"), scenario_text)?;
    let roster = scenario.roster(scenario.seed);
    let roster_path = out.join("roster.toml");
    roster.save(&roster_path)?;

    let plans = scenario.plan()?;
    let mut slots = Vec::with_capacity(plans.len());
    for plan in plans {
        let i = plan.index;
        let key = out.join("keys").join(format!("node-{i}.key"));
        let kp = testnet_key(scenario.seed, i);
        write_key(&key, &kp)?;
        let dir = out.join("nodes").join(format!("node-{i}"));
        std::fs::create_dir_all(dir.join("checkpoint"))?;
        std::fs::create_dir_all(dir.join("snapshots"))?;
        let record = NodeRecord {
            index: i,
            peer: kp.public().to_peer_id().to_base58(),
            role: plan.behaviour.to_string(),
            byzantine: plan.behaviour.is_byzantine(),
            crashes: plan.crash_at.is_some(),
            ..NodeRecord::default()
        };
        slots.push(Slot {
            plan,
            key,
            dir,
            process: None,
            generation: 0,
            addr: None,
            last_round: None,
            finished: false,
            crashed: false,
            restarted: false,
            cut_at: None,
            healed: false,
            record,
            snapshots: BTreeMap::new(),
        });
    }

    let lab = if scenario.namespaces {
        crate::netns::available().context(
            "namespaces = true, but network namespaces cannot be created here (run as root, \
             with iproute2)",
        )?;
        Some(Lab::create(scenario.nodes)?)
    } else {
        None
    };
    let (tx, rx) = sync_channel::<Msg>(4096);
    let ctx = Ctx {
        exe: opts.exe.clone(),
        roster: roster_path,
        data_dir: scenario.data_dir.clone(),
        tx,
        lab,
    };
    let bar = progress_bar(scenario.rounds, opts.progress);
    let mut orch = Orchestrator {
        scenario,
        slots,
        ctx,
        spread: BTreeMap::new(),
        bar: bar.clone(),
    };
    let deadline = started + Duration::from_secs(scenario.timeout_s);
    let aborted = orch.drive(&rx, deadline);
    // Kill whatever is left (in order) before reading the last state.
    for s in &mut orch.slots {
        if let Some(mut p) = s.process.take() {
            p.kill();
        }
    }
    bar.finish_and_clear();
    // Drain lines still queued from the killed processes.
    while let Ok(msg) = rx.try_recv() {
        orch.handle(msg);
    }
    orch.flush_spread(true);
    let mut nodes = Vec::with_capacity(orch.slots.len());
    for s in orch.slots {
        for p in s.snapshots.values() {
            let _ = std::fs::remove_file(p);
        }
        nodes.push(s.record);
    }
    Ok(RunRecord {
        scenario: scenario.clone(),
        nodes,
        spread: orch.spread,
        wall: started.elapsed(),
        aborted,
    })
}

fn progress_bar(rounds: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(rounds), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] round {pos}/{len}  {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("starting nodes");
    bar
}

struct Ctx {
    exe: PathBuf,
    roster: PathBuf,
    data_dir: Option<PathBuf>,
    tx: SyncSender<Msg>,
    /// One network namespace per node (`namespaces = true`).
    lab: Option<Lab>,
}

struct Orchestrator<'a> {
    scenario: &'a Scenario,
    slots: Vec<Slot>,
    ctx: Ctx,
    spread: BTreeMap<u64, f64>,
    bar: ProgressBar,
}

impl Orchestrator<'_> {
    /// Runs until every node is done; returns why it stopped early, if so.
    fn drive(&mut self, rx: &Receiver<Msg>, deadline: Instant) -> Option<String> {
        if let Err(e) = self.start(0) {
            return Some(format!("{e:#}"));
        }
        // Byzantine nodes need not finish (an excluded equivocator never
        // gets a quorum again): once every honest node is done, the others
        // get a grace period, then the run ends.
        let grace =
            Duration::from_millis(3 * self.scenario.round_timeout_ms).max(Duration::from_secs(5));
        let mut honest_done_at: Option<Instant> = None;
        loop {
            if interrupted() {
                return Some("interrupted".into());
            }
            if Instant::now() >= deadline {
                return Some(format!(
                    "timed out after {} s (scenario timeout_s)",
                    self.scenario.timeout_s
                ));
            }
            if self.done() {
                return None;
            }
            if self.all_done(false) {
                let since = *honest_done_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= grace {
                    note(
                        &self.bar,
                        "every honest node is done; stopping the Byzantine nodes still running"
                            .to_owned(),
                    );
                    return None;
                }
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(msg) => {
                    if let Some(err) = self.handle(msg) {
                        return Some(err);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Some("channel closed".into()),
            }
        }
    }

    fn done(&self) -> bool {
        self.all_done(true)
    }

    /// Whether every node (or every honest one, without `byzantine`) has
    /// finished, failed or crashed for good.
    fn all_done(&self, byzantine: bool) -> bool {
        self.slots.iter().all(|s| {
            let over = s.process.is_none()
                && s.generation > 0
                && (s.finished
                    || s.record.failure.is_some()
                    || (s.crashed && (s.plan.restart_at.is_none() || s.restarted)));
            over || (!byzantine && s.plan.behaviour.is_byzantine())
        })
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let bootstrap: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(j, s)| *j != i && s.process.is_some())
            .filter_map(|(_, s)| {
                s.addr
                    .as_ref()
                    .map(|a| format!("{a}/p2p/{}", s.record.peer))
            })
            .collect();
        // A value attacker neither waits for nor uses the other Byzantine
        // nodes' inputs.
        let colluders: Vec<String> = if self.slots[i].plan.behaviour.is_value_attack() {
            self.slots
                .iter()
                .enumerate()
                .filter(|(j, s)| *j != i && s.plan.behaviour.is_byzantine())
                .map(|(_, s)| s.record.peer.clone())
                .collect()
        } else {
            Vec::new()
        };
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.record.starts += 1;
        slot.addr = None;
        let log = File::options()
            .create(true)
            .append(true)
            .open(slot.dir.join("node.log"))
            .context("cannot open the node log")?;
        // In its own namespace a node listens on that host's address.
        let (mut cmd, listen) = match &self.ctx.lab {
            Some(lab) => (
                lab.command(i, &self.ctx.exe),
                format!("/ip4/{}/tcp/0", Lab::addr(i)),
            ),
            None => (
                Command::new(&self.ctx.exe),
                "/ip4/127.0.0.1/tcp/0".to_owned(),
            ),
        };
        cmd.arg("node")
            .arg("--key")
            .arg(&slot.key)
            .arg("--roster")
            .arg(&self.ctx.roster)
            .arg("--listen")
            .arg(listen)
            .args(["--metrics", "-"])
            .args(["--log-format", "json"])
            .arg("--role")
            .arg(slot.plan.behaviour.to_string())
            .arg("--checkpoint-dir")
            .arg(slot.dir.join("checkpoint"))
            .arg("--snapshot-dir")
            .arg(slot.dir.join("snapshots"))
            .arg("--stop-on-stdin-eof");
        if let Some(d) = &self.ctx.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        for b in &bootstrap {
            cmd.arg("--bootstrap").arg(b);
        }
        for c in &colluders {
            cmd.arg("--colluder").arg(c);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn,rampart_node=info,rampart=info");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {i} ({})", self.ctx.exe.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stdin = child.stdin.take();
        let jsonl = File::options()
            .create(true)
            .append(true)
            .open(slot.dir.join("metrics.jsonl"))
            .context("cannot open the metrics file")?;
        let tx = self.ctx.tx.clone();
        let generation = slot.generation;
        std::thread::Builder::new()
            .name(format!("node-{i}-reader"))
            .spawn(move || read_lines(i, generation, stdout, jsonl, tx))
            .context("cannot spawn a reader thread")?;
        slot.process = Some(NodeProcess { child, stdin });
        Ok(())
    }

    /// Handles one message; returns a fatal error, if any.
    fn handle(&mut self, msg: Msg) -> Option<String> {
        match msg {
            Msg::Eof(i, g) => {
                let count = self.slots.len();
                let s = &mut self.slots[i];
                if g != s.generation {
                    return None;
                }
                if let Some(mut p) = s.process.take() {
                    p.kill();
                }
                if !s.finished && !s.crashed && s.record.failure.is_none() {
                    s.record.failure = Some(format!(
                        "exited before finishing; see {}",
                        s.dir.join("node.log").display()
                    ));
                }
                // A node that dies before listening blocks the chain of starts.
                if s.addr.is_none() && !s.crashed && i + 1 < count {
                    return Some(format!(
                        "node {i} exited before listening: {}",
                        log_tail(&s.dir.join("node.log"))
                    ));
                }
                None
            }
            Msg::Line(i, g, line) => {
                if g != self.slots[i].generation {
                    return None;
                }
                self.line(i, line)
            }
        }
    }

    fn line(&mut self, i: usize, line: MetricLine) -> Option<String> {
        match line {
            MetricLine::Start { dim, .. } => self.slots[i].record.dim = dim,
            MetricLine::Event { event, .. } => {
                if let Some(addr) = metrics::listening(&event) {
                    let first = self.slots[i].addr.is_none();
                    self.slots[i].addr = Some(addr);
                    // Start the next node once this one listens.
                    let next = i + 1;
                    if first
                        && next < self.slots.len()
                        && self.slots[next].generation == 0
                        && let Err(e) = self.start(next)
                    {
                        return Some(format!("{e:#}"));
                    }
                } else if let Some(info) = metrics::round_completed(&event) {
                    self.round(i, info);
                } else if let Some(reason) = metrics::rejected_reason(&event) {
                    *self.slots[i].record.rejected.entry(reason).or_default() += 1;
                } else if let Some(err) = metrics::failed(&event) {
                    self.slots[i].record.failure = Some(err);
                }
            }
            MetricLine::Eval {
                round,
                accuracy,
                loss,
                snapshot,
                ..
            } => {
                let s = &mut self.slots[i];
                s.record.evals.push((round, accuracy, loss));
                if let Some(p) = snapshot {
                    s.snapshots.insert(round, PathBuf::from(p));
                }
                self.flush_spread(false);
                self.update_bar();
            }
            MetricLine::Final {
                rounds,
                accuracy,
                loss,
                model_hash,
                counters,
                ignored,
                excluded,
                bytes_sent,
                ..
            } => {
                let s = &mut self.slots[i];
                s.finished = true;
                s.record.final_line = Some(FinalRecord {
                    rounds,
                    accuracy,
                    loss,
                    model_hash,
                    counters,
                    ignored,
                    excluded,
                    bytes_sent,
                });
            }
        }
        None
    }

    fn round(&mut self, i: usize, info: RoundInfo) {
        let round = info.round;
        let s = &mut self.slots[i];
        s.last_round = Some(round);
        s.record.rounds.push(info);
        if let Some(c) = s.plan.crash_at
            && !s.crashed
            && round >= c
        {
            s.crashed = true;
            if let Some(mut p) = s.process.take() {
                p.kill();
            }
            self.bar
                .println(format!("node {i} crashed after round {round}"));
        }
        // Restart crashed nodes once the others are far enough.
        let min_other = self
            .slots
            .iter()
            .filter(|s| !s.crashed && !s.plan.behaviour.is_byzantine())
            .filter_map(|s| s.last_round)
            .min();
        for j in 0..self.slots.len() {
            let s = &self.slots[j];
            if s.crashed
                && !s.restarted
                && let (Some(r), Some(m)) = (s.plan.restart_at, min_other)
                && m >= r
            {
                self.slots[j].restarted = true;
                self.slots[j].finished = false;
                match self.start(j) {
                    Ok(()) => note(&self.bar, format!("node {j} restarted at round {m}")),
                    Err(e) => self.slots[j].record.failure = Some(format!("{e:#}")),
                }
            }
        }
        self.partitions();
        self.update_bar();
    }

    /// Cuts off and heals the nodes with a partition, by the progress of
    /// the others (the slowest honest node neither crashed nor cut off).
    fn partitions(&mut self) {
        let Some(lab) = &self.ctx.lab else { return };
        for j in 0..self.slots.len() {
            let Some((at, k)) = self.slots[j].plan.partition else {
                continue;
            };
            let others = self
                .slots
                .iter()
                .enumerate()
                .filter(|(x, s)| {
                    *x != j && !s.crashed && !s.plan.behaviour.is_byzantine() && s.cut_at.is_none()
                })
                .filter_map(|(_, s)| s.last_round)
                .min();
            let Some(m) = others else { continue };
            let s = &mut self.slots[j];
            match s.cut_at {
                None if !s.healed && m >= at => match lab.cut(j) {
                    Ok(()) => {
                        s.cut_at = Some(m);
                        note(&self.bar, format!("node {j} cut off after round {m}"));
                    }
                    Err(e) => s.record.failure = Some(format!("{e:#}")),
                },
                Some(c) if m >= c + k => match lab.heal(j) {
                    Ok(()) => {
                        s.cut_at = None;
                        s.healed = true;
                        note(&self.bar, format!("node {j} reconnected after round {m}"));
                    }
                    Err(e) => s.record.failure = Some(format!("{e:#}")),
                },
                _ => {}
            }
        }
    }

    fn update_bar(&self) {
        let honest: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|s| !s.plan.behaviour.is_byzantine())
            .collect();
        let pos = honest
            .iter()
            .filter(|s| !s.crashed || s.restarted)
            .filter_map(|s| s.last_round.map(|r| r + 1))
            .min()
            .unwrap_or(0);
        let accs: Vec<f64> = honest
            .iter()
            .filter_map(|s| s.record.evals.last().map(|e| e.1))
            .collect();
        let rejected: u64 = self
            .slots
            .iter()
            .flat_map(|s| s.record.rejected.values())
            .sum();
        let acc = if accs.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1}%",
                100.0 * accs.iter().sum::<f64>() / accs.len() as f64
            )
        };
        self.bar.set_position(pos);
        self.bar
            .set_message(format!("honest accuracy {acc}  rejected {rejected}"));
    }

    /// Computes the honest spread of every round whose snapshots are all
    /// in (or, at the end, of every round with at least two).
    fn flush_spread(&mut self, at_end: bool) {
        let honest: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.plan.behaviour.is_byzantine() && s.plan.crash_at.is_none())
            .map(|(i, _)| i)
            .collect();
        let rounds: Vec<u64> = honest
            .iter()
            .flat_map(|&i| self.slots[i].snapshots.keys().copied())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for r in rounds {
            let have: Vec<usize> = honest
                .iter()
                .copied()
                .filter(|&i| self.slots[i].snapshots.contains_key(&r))
                .collect();
            if have.len() < honest.len() && !at_end {
                continue;
            }
            let models: Vec<Vec<f32>> = have
                .iter()
                .filter_map(|&i| read_f32(&self.slots[i].snapshots[&r]))
                .collect();
            if models.len() >= 2 || (models.len() == 1 && honest.len() == 1) {
                self.spread.insert(r, max_distance(&models));
            }
            for &i in &have {
                if let Some(p) = self.slots[i].snapshots.remove(&r) {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// A line for the user, above the progress bar when there is one.
fn note(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn read_lines(
    i: usize,
    generation: u32,
    stdout: std::process::ChildStdout,
    mut jsonl: File,
    tx: SyncSender<Msg>,
) {
    let reader = BufReader::new(stdout);
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(jsonl, "{line}");
        if let Ok(m) = serde_json::from_str::<MetricLine>(&line)
            && tx.send(Msg::Line(i, generation, m)).is_err()
        {
            return;
        }
    }
    let _ = tx.send(Msg::Eof(i, generation));
}

fn read_f32(path: &Path) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Largest Euclidean distance between two of `models` (f64 sums).
pub fn max_distance(models: &[Vec<f32>]) -> f64 {
    let mut best = 0.0f64;
    for (a, x) in models.iter().enumerate() {
        for y in &models[a + 1..] {
            let d: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| {
                    let t = f64::from(*p) - f64::from(*q);
                    t * t
                })
                .sum();
            best = best.max(d.sqrt());
        }
    }
    best
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    // JSON log lines: show the message field when there is one.
    serde_json::from_str::<serde_json::Value>(last)
        .ok()
        .and_then(|v| {
            v.get("fields")
                .and_then(|f| f.get("message"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| last.to_owned())
}

/// Checks that `exe` runs and offers `rampart node`.
pub fn check_exe(exe: &Path) -> Result<()> {
    let out = Command::new(exe)
        .args(["node", "--help"])
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("{} does not provide `rampart node`", exe.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_of_models() {
        let m = vec![vec![0.0f32, 0.0], vec![3.0, 4.0], vec![1.0, 0.0]];
        assert_eq!(max_distance(&m), 5.0);
        assert_eq!(max_distance(&m[..1]), 0.0);
    }
}
