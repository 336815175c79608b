//! `rampart node`: runs one member of a training job.
//!
//! The node is configured by a TOML file (`--config`) whose keys are the
//! long flags with `_` for `-`; flags override the file. The job itself (the
//! members, the rule, the model, the data, the hyper-parameters) comes from
//! the roster file shared by every member. Everything the node does is
//! written as JSON lines (`--metrics`): the node library's events, test-set
//! evaluations and a final line with the model hash.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rampart_learn::{
    Dataset, DatasetKind, Learner, LearnerConfig, ModelKind, Partition, Schedule, SyntheticConfig,
};
use rampart_node::{Event, JobId, NodeConfig, NodeHandle, Trainer, TrainerError};
use rampart_testnet::metrics::MetricLine;
use rampart_testnet::spec::NonFinite;
use rampart_testnet::{Behaviour, DataName, JobSpec, ModelName, PartitionSpec, Roster};
use serde::Deserialize;
use sha2::{Digest, Sha256};

const AFTER_HELP: &str = "\
Configuration file (--config): TOML with the keys key, roster, listen, bootstrap, data_dir,
checkpoint_dir, metrics, log_format, role, colluders, snapshot_dir, each meaning the same as the flag
of that name (listen and bootstrap are arrays). Relative paths are relative to the file.
Unknown keys are an error. Flags override the file.

Logs go to stderr, filtered by RUST_LOG (default: info). Metrics (--metrics) are JSON lines
tagged by \"kind\": start, event (the node's events: Listening, Started, RoundCompleted,
InputRejected, PeerExcluded, Finished, ...), eval (test accuracy every eval_every rounds of
the job) and final (accuracy, model_hash, rejected inputs per reason, excluded peers).

After its last round the node stays up for at most 3 x round_timeout_ms / 5 (or until no
member is connected) so that members still in that round can fetch its input.

Exit status: 0 when the node finished its rounds, 2 on any error (one `error:` line).";

/// Flags of `rampart node`.
#[derive(Args, Debug, Default)]
#[command(after_long_help = AFTER_HELP)]
pub(crate) struct NodeArgs {
    /// Node configuration file (TOML); flags override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// This node's key file (from `rampart keygen`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// The job's roster file (TOML), identical at every member.
    #[arg(long, value_name = "FILE")]
    roster: Option<PathBuf>,

    /// Address to listen on, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable) [default:
    /// /ip4/0.0.0.0/tcp/0].
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,

    /// A member to dial at start, as MULTIADDR/p2p/PEERID (repeatable); the roster's member
    /// addresses are dialled too.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,

    /// Directory of the data set files (MNIST, Fashion-MNIST, CIFAR-10); not needed for
    /// synthetic data. `rampart data fetch mnist --dir DIR` fills it.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Directory of this node's checkpoint, written after every round and resumed from at
    /// start.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,

    /// Where to write the metrics as JSON lines: a file, or - for stdout [default: none].
    #[arg(long, value_name = "FILE")]
    metrics: Option<String>,

    /// Log format on stderr [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// This node's role, for testnets: honest, or a Byzantine behaviour with parameters
    /// (sign-flip, ipm[:tau=T], alie[:tau=T], mimic[:idx=I], gaussian[:mu=M][:sigma=S], inf,
    /// nan, label-flip, silent, garbage, wrong-dimension, non-finite, replay, equivocate,
    /// delay[:ms=M], crash[:at=R]) [default: honest]. Value attacks (sign-flip to nan) forge
    /// each round's input from the other members' inputs of the round that reached this node.
    #[arg(long, value_name = "BEHAVIOUR")]
    role: Option<String>,

    /// For value attacks: a fellow Byzantine member (PEERID), whose inputs this node neither
    /// waits for nor forges from (repeatable).
    #[arg(long, value_name = "PEERID")]
    colluder: Vec<String>,

    /// Write the parameters at each evaluated round to DIR/params-<round>.f32 (raw f32
    /// little-endian), for measuring the distance between models.
    #[arg(long, value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,

    /// Stop when standard input reaches end of file (testnets use it so that no node
    /// outlives its orchestrator).
    #[arg(long)]
    stop_on_stdin_eof: bool,
}

/// Log formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    key: Option<PathBuf>,
    roster: Option<PathBuf>,
    #[serde(default)]
    listen: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    data_dir: Option<PathBuf>,
    checkpoint_dir: Option<PathBuf>,
    metrics: Option<String>,
    log_format: Option<LogFormat>,
    role: Option<String>,
    #[serde(default)]
    colluders: Vec<String>,
    snapshot_dir: Option<PathBuf>,
}

/// The merged, checked settings.
struct Settings {
    key: PathBuf,
    roster: PathBuf,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    data_dir: Option<PathBuf>,
    checkpoint_dir: Option<PathBuf>,
    metrics: Option<String>,
    log_format: LogFormat,
    role: Behaviour,
    colluders: Vec<PeerId>,
    snapshot_dir: Option<PathBuf>,
    stop_on_stdin_eof: bool,
}

fn merge(args: &NodeArgs) -> Result<Settings> {
    let (file, base) = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            let f: NodeFile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}", e.message().trim()))
                .with_context(|| format!("config {}", p.display()))?;
            (f, p.parent().map(Path::to_path_buf).unwrap_or_default())
        }
        None => (NodeFile::default(), PathBuf::new()),
    };
    let rel = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { base.join(p) } else { p });
    let key = args.key.clone().or_else(|| rel(file.key.clone())).context(
        "no key file: give --key FILE or `key` in the config (create one with `rampart keygen`)",
    )?;
    let roster = args
        .roster
        .clone()
        .or_else(|| rel(file.roster.clone()))
        .context("no roster: give --roster FILE or `roster` in the config")?;
    let listen_s = if args.listen.is_empty() {
        file.listen.clone()
    } else {
        args.listen.clone()
    };
    let mut listen = Vec::new();
    for l in &listen_s {
        listen.push(
            l.parse::<Multiaddr>()
                .map_err(|e| anyhow::anyhow!("listen address {l:?}: {e}"))?,
        );
    }
    if listen.is_empty() {
        listen.push(
            "/ip4/0.0.0.0/tcp/0"
                .parse()
                .context("default listen address")?,
        );
    }
    let boot_s = if args.bootstrap.is_empty() {
        file.bootstrap.clone()
    } else {
        args.bootstrap.clone()
    };
    let bootstrap = boot_s
        .iter()
        .map(|b| split_p2p(b))
        .collect::<Result<Vec<_>>>()?;
    let role_s = args.role.clone().or(file.role.clone());
    let role = match role_s {
        Some(r) => r.parse().with_context(|| format!("role {r:?}"))?,
        None => Behaviour::Honest,
    };
    let colluders_s = if args.colluder.is_empty() {
        file.colluders.clone()
    } else {
        args.colluder.clone()
    };
    let colluders = colluders_s
        .iter()
        .map(|c| {
            c.parse::<PeerId>()
                .map_err(|e| anyhow::anyhow!("colluder {c:?} is not a peer id: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Settings {
        key,
        roster,
        listen,
        bootstrap,
        data_dir: args.data_dir.clone().or_else(|| rel(file.data_dir.clone())),
        checkpoint_dir: args
            .checkpoint_dir
            .clone()
            .or_else(|| rel(file.checkpoint_dir.clone())),
        metrics: args.metrics.clone().or(file.metrics.clone()).map(|m| {
            if m == "-" || Path::new(&m).is_absolute() {
                m
            } else {
                base.join(m).to_string_lossy().into_owned()
            }
        }),
        log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        role,
        colluders,
        snapshot_dir: args
            .snapshot_dir
            .clone()
            .or_else(|| rel(file.snapshot_dir.clone())),
        stop_on_stdin_eof: args.stop_on_stdin_eof,
    })
}

/// Splits `MULTIADDR/p2p/PEERID` into the peer and the address before it.
fn split_p2p(s: &str) -> Result<(PeerId, Multiaddr)> {
    let mut addr: Multiaddr = s
        .parse()
        .map_err(|e| anyhow::anyhow!("bootstrap address {s:?}: {e}"))?;
    match addr.pop() {
        Some(Protocol::P2p(peer)) => Ok((peer, addr)),
        _ => bail!("bootstrap address {s:?} must end with /p2p/<peer id>"),
    }
}

fn install_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (tests calling run twice) is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Where metric lines go; shared by the event loop and the trainer thread.
#[derive(Clone)]
struct Sink {
    out: Option<Arc<Mutex<Box<dyn Write + Send>>>>,
    start: Instant,
}

impl Sink {
    fn open(spec: Option<&str>) -> Result<Self> {
        let out: Option<Box<dyn Write + Send>> = match spec {
            None => None,
            Some("-") => Some(Box::new(std::io::stdout())),
            Some(p) => Some(Box::new(std::io::LineWriter::new(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open metrics file {p}"))?,
            ))),
        };
        Ok(Self {
            out: out.map(|o| Arc::new(Mutex::new(o))),
            start: Instant::now(),
        })
    }

    fn t_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn write(&self, line: &MetricLine) {
        let Some(out) = &self.out else { return };
        let Ok(text) = serde_json::to_string(line) else {
            return;
        };
        if let Ok(mut w) = out.lock() {
            // A closed stdout (the orchestrator went away) is handled by
            // --stop-on-stdin-eof; nothing else to do here.
            let _ = writeln!(w, "{text}");
            let _ = w.flush();
        }
    }
}

/// The final evaluation, shared from the trainer thread.
#[derive(Clone, Debug, Default)]
struct FinalEval {
    accuracy: f64,
    loss: f64,
    model_hash: String,
}

/// The node's trainer: a `rampart-learn` learner that also evaluates on the
/// test set and writes parameter snapshots. (Value attacks are played by
/// the node library, from the inputs that reach the node: see
/// `rampart_node::ValueAttack`.)
struct NodeTrainer {
    learner: Learner,
    test: Dataset,
    job: JobSpec,
    sink: Sink,
    snapshot_dir: Option<PathBuf>,
    last: Arc<Mutex<Option<FinalEval>>>,
}

fn hash_params(p: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in p {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Trainer for NodeTrainer {
    fn dim(&self) -> usize {
        self.learner.dim()
    }

    fn gradient(&mut self, _round: u64) -> Result<(Option<f32>, Vec<f32>), TrainerError> {
        let own = self.learner.next_gradient().map_err(TrainerError::new)?;
        Ok((self.learner.last_loss(), own))
    }

    fn apply(&mut self, update: &[f32], round: u64) -> Result<(), TrainerError> {
        self.learner
            .apply_scheduled(update)
            .map_err(TrainerError::new)?;
        if self.job.evaluates(round) {
            let eval = self
                .learner
                .evaluate(&self.test)
                .map_err(TrainerError::new)?;
            let params = self.learner.parameters().map_err(TrainerError::new)?;
            let snapshot = match &self.snapshot_dir {
                Some(dir) => {
                    let path = dir.join(format!("params-{round}.f32"));
                    let tmp = dir.join(format!(".params-{round}.f32.tmp"));
                    let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
                    std::fs::write(&tmp, bytes)
                        .and_then(|()| std::fs::rename(&tmp, &path))
                        .map_err(TrainerError::new)?;
                    Some(path.to_string_lossy().into_owned())
                }
                None => None,
            };
            self.sink.write(&MetricLine::Eval {
                t_ms: self.sink.t_ms(),
                round,
                accuracy: eval.accuracy,
                loss: eval.loss,
                snapshot,
            });
            if round + 1 >= self.job.rounds
                && let Ok(mut last) = self.last.lock()
            {
                *last = Some(FinalEval {
                    accuracy: eval.accuracy,
                    loss: eval.loss,
                    model_hash: hash_params(&params),
                });
            }
        }
        Ok(())
    }

    fn parameters(&self) -> Result<Vec<f32>, TrainerError> {
        self.learner.parameters().map_err(TrainerError::new)
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<(), TrainerError> {
        self.learner
            .set_parameters(params)
            .map_err(TrainerError::new)
    }

    fn save_checkpoint(
        &self,
        path: &Path,
        rounds_done: u64,
        job: &JobId,
    ) -> Result<(), TrainerError> {
        Trainer::save_checkpoint(&self.learner, path, rounds_done, job)
    }

    fn load_checkpoint(&mut self, path: &Path, job: &JobId) -> Result<u64, TrainerError> {
        Trainer::load_checkpoint(&mut self.learner, path, job)
    }
}

/// The seed of member `index`'s batch sampler.
fn learner_seed(job: &JobSpec, index: usize) -> u64 {
    job.seed
        .wrapping_mul(0x2545_f491_4f6c_dd1d)
        .wrapping_add(index as u64 + 1)
}

/// Everything the trainer needs, loaded once.
struct JobData {
    kind: DatasetKind,
    train: Dataset,
    test: Dataset,
    shards: Vec<Vec<usize>>,
}

/// The data set a job names.
pub(crate) fn dataset_kind(job: &JobSpec) -> DatasetKind {
    job.data
        .file_kind()
        .unwrap_or_else(|| DatasetKind::Synthetic(SyntheticConfig::new(job.seed)))
}

/// The model architecture a job names.
pub(crate) fn model_kind(job: &JobSpec) -> ModelKind {
    match job.model {
        ModelName::Logreg => ModelKind::LogReg,
        ModelName::Mlp => ModelKind::Mlp {
            hidden: job.hidden.clone(),
        },
        ModelName::Cnn => ModelKind::Cnn,
    }
}

fn load_data(job: &JobSpec, n: usize, data_dir: Option<&Path>) -> Result<JobData> {
    let kind = dataset_kind(job);
    let dir = match (job.data, data_dir) {
        (DataName::Synthetic, d) => d.map(Path::to_path_buf).unwrap_or_default(),
        (_, Some(d)) => d.to_path_buf(),
        (other, None) => bail!("data set {other:?} needs --data-dir DIR"),
    };
    rampart_testnet::scenario::check_data_dir(job.data, &dir)
        .context("cannot load the data set")?;
    let split = kind
        .load(&dir)
        .with_context(|| format!("cannot load the data set from {}", dir.display()))?;
    let partition = match job.partition {
        PartitionSpec::Iid => Partition::Iid,
        PartitionSpec::Dirichlet(alpha) => Partition::Dirichlet { alpha },
    };
    let shards = partition
        .split(split.train.labels(), n, job.seed)
        .context("cannot partition the training set")?;
    Ok(JobData {
        kind,
        train: split.train,
        test: split.test,
        shards,
    })
}

fn build_learner(job: &JobSpec, data: &JobData, index: usize, flip: bool) -> Result<Learner> {
    let model = model_kind(job);
    let net = model
        .build(&data.kind.sample_shape(), data.kind.num_classes(), job.seed)
        .context("cannot build the model")?;
    let config = LearnerConfig::builder()
        .batch_size(job.batch)
        .momentum(job.momentum)
        .dampening(job.dampening)
        .schedule(Schedule::Constant { lr: job.lr })
        .build()
        .context("invalid hyper-parameters")?;
    let mut shard = data
        .train
        .subset(&data.shards[index])
        .with_context(|| format!("shard of member {index}"))?;
    if flip {
        let c = shard.num_classes() as u32;
        let labels: Vec<u32> = shard
            .labels()
            .iter()
            .map(|&y| rampart_attack::flip_label(y, c))
            .collect();
        shard = Dataset::new(
            shard.features().to_vec(),
            labels,
            shard.sample_shape().to_vec(),
            shard.num_classes(),
        )
        .context("flipped shard")?;
    }
    Learner::new(net, config, shard, learner_seed(job, index))
        .with_context(|| format!("member {index} cannot train (empty shard?)"))
}

fn value_attack(b: &Behaviour) -> Option<rampart_attack::Attack> {
    use rampart_attack::Attack as A;
    Some(match *b {
        Behaviour::SignFlip => A::SignFlip,
        Behaviour::Ipm { tau } => A::Ipm { tau },
        Behaviour::Alie { tau } => A::Alie { tau, ddof: 1 },
        Behaviour::Mimic { idx } => A::Mimic { idx },
        Behaviour::Gaussian { mu, sigma } => A::Gaussian { mu, sigma },
        Behaviour::Inf => A::Inf,
        Behaviour::Nan => A::Nan,
        _ => return None,
    })
}

/// The node library's script for a protocol attack. A replaying node
/// alternates: an honest round, then a replay of that round's payload in
/// the next one (a node that never sent honestly has nothing to replay).
fn protocol_attack(b: &Behaviour) -> Option<Vec<rampart_node::Attack>> {
    use rampart_node::Attack as A;
    Some(match *b {
        Behaviour::Silent => vec![A::Silent],
        Behaviour::Garbage => vec![A::Garbage],
        Behaviour::WrongDimension => vec![A::WrongDimension],
        Behaviour::NonFinite => vec![A::NonFinite],
        Behaviour::Replay => vec![A::Honest, A::Replay],
        Behaviour::Equivocate => vec![A::Equivocate],
        Behaviour::Impersonate => vec![A::Impersonate],
        Behaviour::Tamper => vec![A::Tamper],
        Behaviour::FutureRound => vec![A::FutureRound],
        Behaviour::WrongJob => vec![A::WrongJob],
        Behaviour::Oversize => vec![A::Oversize],
        Behaviour::Delay { ms } => vec![A::Delay { ms }],
        _ => return None,
    })
}

/// Runs the subcommand.
pub(crate) fn run(args: &NodeArgs) -> Result<()> {
    let s = merge(args)?;
    install_tracing(s.log_format);
    let key = rampart_testnet::roster::read_key(&s.key)?;
    let me = key.public().to_peer_id();
    let roster = Roster::load(&s.roster)?;
    let index = roster.index_of(&me).with_context(|| {
        format!(
            "this node ({me}, key {}) is not a member of roster {}",
            s.key.display(),
            s.roster.display()
        )
    })?;
    for (p, _) in &s.bootstrap {
        if roster.index_of(p).is_none() {
            bail!(
                "bootstrap peer {p} is not a member of roster {}",
                s.roster.display()
            );
        }
    }
    if let Some(d) = &s.snapshot_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if let Some(d) = &s.checkpoint_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let job = roster.job.clone();
    let n = roster.n;
    let data = load_data(&job, n, s.data_dir.as_deref())?;
    let learner = build_learner(&job, &data, index, s.role == Behaviour::LabelFlip)?;
    let attack = value_attack(&s.role).map(|attack| {
        let mut va = rampart_node::ValueAttack::new(attack);
        va.colluders = s.colluders.clone();
        va.f = Some(job.f);
        va.seed = learner_seed(&job, index);
        va
    });
    let sink = Sink::open(s.metrics.as_deref())?;
    let last = Arc::new(Mutex::new(None));
    let dim = learner.dim();
    let trainer = NodeTrainer {
        learner,
        test: data.test,
        job: job.clone(),
        sink: sink.clone(),
        snapshot_dir: s.snapshot_dir.clone(),
        last: last.clone(),
    };
    drop(data.train);
    let mut builder = NodeConfig::builder()
        .keypair(key)
        .roster(roster.members.iter().map(|m| m.peer))
        .rule(job.rule()?)
        .rounds(job.rounds)
        .round_timeout(Duration::from_millis(job.round_timeout_ms))
        .start_timeout(Duration::from_millis(job.start_timeout_ms))
        .job_tag(roster.tag().to_vec())
        .trainer(trainer);
    for l in &s.listen {
        builder = builder.listen(l.clone());
    }
    for m in &roster.members {
        if m.peer != me {
            for a in &m.addrs {
                builder = builder.bootstrap(m.peer, a.clone());
            }
        }
    }
    for (p, a) in &s.bootstrap {
        builder = builder.bootstrap(*p, a.clone());
    }
    if let Some(d) = &s.checkpoint_dir {
        builder = builder.checkpoint_dir(d);
    }
    if let Some(script) = protocol_attack(&s.role) {
        if s.role == Behaviour::Oversize {
            // Its own limit must let the oversize frames leave.
            builder = builder.max_frame(2 * (dim * 4 + rampart_node::ENVELOPE_LIMIT));
        }
        builder = builder.adversary(script);
    }
    if let Some(va) = attack {
        builder = builder.value_attack(va);
    }
    if job.non_finite == NonFinite::Aggregate {
        builder = builder.non_finite(rampart_node::NonFinitePolicy::PassToRule);
    }
    builder = builder
        .drift_period(job.drift_period)
        .gradient_encoding(job.encoding.wire());
    let config = builder.build().context("invalid node configuration")?;
    let job_id = config.job().to_hex();
    tracing::info!(peer = %me, index, job = %job_id, role = %s.role, "starting node");
    sink.write(&MetricLine::Start {
        t_ms: sink.t_ms(),
        peer: me.to_base58(),
        role: s.role.to_string(),
        job: job_id,
        dim,
        n,
        rounds: job.rounds,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // After its last round a node answers late pulls for a while (see
    // `linger`): three pull periods of the node library.
    let grace =
        3 * (Duration::from_millis(job.round_timeout_ms) / 5).max(Duration::from_millis(20));
    runtime.block_on(drive(config, sink, last, s.stop_on_stdin_eof, grace))
}

async fn drive(
    config: NodeConfig,
    sink: Sink,
    last: Arc<Mutex<Option<FinalEval>>>,
    stop_on_eof: bool,
    grace: Duration,
) -> Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let (handle, mut rx) = NodeHandle::spawn(config).context("cannot start the node")?;
    let (eof_tx, mut eof_rx) = tokio::sync::mpsc::channel::<()>(1);
    if stop_on_eof {
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = Vec::new();
                while matches!(stdin.read_until(b'\n', &mut buf), Ok(k) if k > 0) {
                    buf.clear();
                }
                let _ = eof_tx.blocking_send(());
            })
            .context("cannot watch stdin")?;
    }
    let mut bytes_sent = 0u64;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = eof_rx.recv(), if stop_on_eof => {
                let _ = handle.shutdown().await;
                bail!("standard input closed: stopping (--stop-on-stdin-eof)");
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = handle.shutdown().await;
                bail!("interrupted");
            }
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(RecvError::Lagged(k)) => {
                tracing::warn!(missed = k, "metrics fell behind; {k} events not written");
                continue;
            }
            Err(RecvError::Closed) => bail!("the node stopped without finishing"),
        };
        let value = serde_json::to_value(&ev).unwrap_or(serde_json::Value::Null);
        sink.write(&MetricLine::Event {
            t_ms: sink.t_ms(),
            event: value,
        });
        match ev {
            Event::RoundCompleted { bytes_sent: b, .. } => bytes_sent += b,
            Event::Finished { rounds } => {
                let status = handle.status().await.context("node status")?;
                let fin = match last.lock().ok().and_then(|l| l.clone()) {
                    Some(f) => f,
                    None => {
                        let p = handle.parameters().await.context("node parameters")?;
                        FinalEval {
                            model_hash: hash_params(&p),
                            ..FinalEval::default()
                        }
                    }
                };
                let mut counters = std::collections::BTreeMap::new();
                let mut ignored = std::collections::BTreeMap::new();
                for (r, c) in status.counters.iter() {
                    let into = if r.is_reject() {
                        &mut counters
                    } else {
                        &mut ignored
                    };
                    into.insert(format!("{r:?}"), c);
                }
                sink.write(&MetricLine::Final {
                    t_ms: sink.t_ms(),
                    rounds,
                    accuracy: fin.accuracy,
                    loss: fin.loss,
                    model_hash: fin.model_hash,
                    counters,
                    ignored,
                    excluded: status.excluded.iter().map(|p| p.to_base58()).collect(),
                    bytes_sent,
                });
                linger(&handle, grace).await;
                let _ = handle.shutdown().await;
                return Ok(());
            }
            Event::Failed { error } => {
                let _ = handle.shutdown().await;
                bail!("the node failed: {error}");
            }
            _ => {}
        }
    }
}

/// Keeps a finished node up for at most `grace`, so that peers still in
/// the last round can get its input (its push may still be in flight when
/// it finishes; they pull it from any member that holds it). It leaves as
/// soon as no roster peer is connected.
async fn linger(handle: &NodeHandle, grace: Duration) {
    let end = tokio::time::Instant::now() + grace;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        match handle.status().await {
            Ok(status) if !status.connected.is_empty() => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag but --config and --stop-on-stdin-eof is a configuration
    /// key (its long name with `_`, or the plural for a repeatable one)
    /// that `--help` names.
    #[test]
    fn every_flag_is_a_documented_config_key() {
        let cmd = <NodeArgs as clap::Args>::augment_args(clap::Command::new("node"));
        let mut keys = 0;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["config", "stop-on-stdin-eof"].contains(&long) {
                continue;
            }
            let key = long.replace('-', "_");
            let value = |k: &str| match k {
                "listen" | "bootstrap" | "colluders" => "[]",
                "log_format" => "\"json\"",
                _ => "\"x\"",
            };
            let plural = format!("{key}s");
            let found = [key.as_str(), plural.as_str()]
                .into_iter()
                .find(|k| toml::from_str::<NodeFile>(&format!("{k} = {}", value(k))).is_ok());
            let k = found.unwrap_or_else(|| panic!("--{long} has no config key"));
            assert!(AFTER_HELP.contains(k), "--help does not name the key {k}");
            keys += 1;
        }
        assert!(keys >= 10, "{keys} keys");
        assert!(toml::from_str::<NodeFile>("listen_on = []").is_err());
    }
}
