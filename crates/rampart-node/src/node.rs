//! The node actor: a public [`NodeHandle`] and a private actor that owns the
//! swarm, the validator and the round state, plus a dedicated trainer thread
//! that owns the model.
//!
//! The event loop only moves bytes, validates and schedules; gradients and
//! aggregation run on the trainer thread, which answers each job over a
//! `oneshot` (so no cycle of bounded channels exists).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, request_response};
use rampart_gar::{Aggregate, GarError, Rule};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::adversary::{self, Attack, Plan, ValueAttack};
use crate::codec::Frame;
use crate::config::{ConfigError, NodeConfig};
use crate::event::{Event, RoundTimings, Status};
use crate::round::{NodeRule, drift_step};
use crate::signed::{self, Signed};
use crate::swarm::{self, Behaviour, BehaviourEvent, SwarmError};
use crate::trainer::{Trainer, TrainerError};
use crate::validate::{Freshness, NonFinitePolicy, Reason, Refusal, Validator, ValidatorConfig};
use crate::wire::{
    Encoding, EquivocationProof, JobId, Message, PayloadKind, PullRequest, SignError, SignedHeader,
    SignedPayload, Values,
};

mod forge;

/// Capacity of the command channel of a node.
const COMMAND_CAPACITY: usize = 32;
/// Capacity of the event broadcast (slow subscribers lose the oldest).
const EVENT_CAPACITY: usize = 1024;
/// Capacity of the trainer's job queue (at most one round job is in flight,
/// plus parameter queries).
const TRAINER_CAPACITY: usize = 8;

/// Errors of a node and of its handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The swarm could not be built.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// The trainer thread could not be started.
    #[error("cannot start the trainer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The node has stopped.
    #[error("the node has stopped")]
    Closed,
    /// The trainer's queue is full.
    #[error("the trainer is busy")]
    Busy,
    /// The trainer failed.
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    /// The rule refused the round's inputs.
    #[error("aggregation: {0}")]
    Rule(#[from] GarError),
    /// A custom rule returned a vector of the wrong length.
    #[error("custom rule {rule} returned {got} values for inputs of dimension {expected}")]
    RuleOutput {
        /// The rule's name.
        rule: &'static str,
        /// The inputs' dimension.
        expected: usize,
        /// The length of the rule's output.
        got: usize,
    },
    /// A header could not be signed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

enum Command {
    Status(oneshot::Sender<Status>),
    Parameters(oneshot::Sender<Result<Vec<f32>, NodeError>>),
    Dial(PeerId, Multiaddr),
    Pause(bool, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a running node. Cheap to clone; the node stops when the last
/// handle is dropped or [`NodeHandle::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    peer: PeerId,
}

impl NodeHandle {
    /// Starts a node on the current tokio runtime. Returns the handle and a
    /// subscription that sees every event from the first one.
    pub fn spawn(config: NodeConfig) -> Result<(Self, broadcast::Receiver<Event>), NodeError> {
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let peer = config.local;
        let actor = Actor::new(config, rx, events.clone())?;
        let span = tracing::info_span!("node", peer = %peer);
        tokio::spawn(tracing::Instrument::instrument(actor.run(), span));
        Ok((Self { tx, events, peer }, first))
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// A new subscription to the node's events (from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Closed)?;
        rx.await.map_err(|_| NodeError::Closed)
    }

    /// A snapshot of the node.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(Command::Status).await
    }

    /// The trainer's current flat parameters.
    pub async fn parameters(&self) -> Result<Vec<f32>, NodeError> {
        self.ask(Command::Parameters).await?
    }

    /// Records `addr` for roster member `peer` and dials it.
    pub async fn dial(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NodeError> {
        self.tx
            .send(Command::Dial(peer, addr))
            .await
            .map_err(|_| NodeError::Closed)
    }

    /// Pauses training: the round in progress (if any) completes, then the
    /// node computes no further gradients until [`NodeHandle::resume`]
    /// ([`Event::Paused`] when it stops). A paused node stays connected and
    /// keeps answering pulls and state requests, so its peers (which close
    /// rounds without it at the timeout, if f ≥ 1) are not held up.
    pub async fn pause(&self) -> Result<(), NodeError> {
        self.ask(|tx| Command::Pause(true, tx)).await
    }

    /// Resumes a paused node: it first asks its peers where they are and
    /// catches up (the coordinate-wise median of the models of the round
    /// 2f + 1 of them reached, as after a restart), then trains again
    /// ([`Event::Unpaused`]).
    pub async fn resume(&self) -> Result<(), NodeError> {
        self.ask(|tx| Command::Pause(false, tx)).await
    }

    /// Stops the node and waits until it has.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.ask(Command::Shutdown).await
    }
}

/// What the trainer thread hands back for a round's gradient.
struct Gradient {
    loss: Option<f32>,
    /// The gradient; once sealed, as the peers decode it (rounded to the
    /// job's encoding), since the node aggregates its own input that way.
    values: Vec<f32>,
    /// Whether every value is finite.
    finite: bool,
    /// The gradient signed for sending, when a [`Seal`] was asked for and
    /// the gradient may be signed (finite, or the job passes non-finite
    /// values to the rule).
    sealed: Option<Result<Sealed, SignError>>,
}

/// How the trainer thread signs a round's gradient, so that hashing,
/// signing and recording it stay off the event loop.
struct Seal {
    keypair: Keypair,
    job: JobId,
    encoding: Encoding,
    /// Whether a gradient with a NaN or infinite value is signed (the job's
    /// policy passes such inputs to the rule).
    non_finite: bool,
    /// The signed-gradient record (with a checkpoint directory, honest
    /// nodes only): where it is, what was found there at start, and the
    /// rule's f.
    record: Option<(PathBuf, Option<Signed>, usize)>,
}

/// A round's gradient, signed for sending.
enum Sealed {
    /// The signed payload and its push frame.
    Ready {
        payload: Box<SignedPayload>,
        push: Bytes,
    },
    /// Not to be sent: a gradient with another hash was signed for this
    /// round before a restart ([`signed::keep_word`]).
    Withheld,
}

impl Seal {
    /// Signs `values` for `round` and records the signature; `None` when a
    /// non-finite gradient is not to be signed.
    fn seal(
        self,
        round: u64,
        values: &mut Vec<f32>,
        finite: bool,
    ) -> Option<Result<Sealed, SignError>> {
        if !finite && !self.non_finite {
            return None;
        }
        let (payload, push) = match SignedPayload::push(
            &self.keypair,
            self.job,
            round,
            PayloadKind::Gradient,
            values,
            self.encoding,
        ) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if let Some((path, before, f)) = &self.record
            && !signed::keep_word(
                path,
                &self.job,
                *before,
                round,
                payload.header.header.payload_hash,
                *f,
            )
        {
            return Some(Ok(Sealed::Withheld));
        }
        if self.encoding != Encoding::F32Le {
            *values = crate::wire::quantize(values, self.encoding);
        }
        Some(Ok(Sealed::Ready {
            payload: Box::new(payload),
            push,
        }))
    }
}

type GradientResult = Result<Gradient, TrainerError>;
type ApplyResult = Result<Vec<f32>, NodeError>;
type RestoreResult = Result<Option<u64>, NodeError>;
/// The median model and the spread of the models it came from.
type DriftResult = Result<(Vec<f32>, f64), NodeError>;

enum Job {
    Gradient {
        round: u64,
        /// Sign the gradient for sending (not for a value attacker, which
        /// forges its input from the others').
        seal: Option<Box<Seal>>,
        reply: oneshot::Sender<GradientResult>,
    },
    Apply {
        round: u64,
        rule: NodeRule,
        n: usize,
        inputs: BTreeMap<PeerId, Values>,
        /// Where to checkpoint after applying, and the job it belongs to.
        checkpoint: Option<(PathBuf, JobId)>,
        /// A buffer for the parameters sent back (the node's previous copy,
        /// reused).
        buffer: Vec<f32>,
        reply: oneshot::Sender<ApplyResult>,
    },
    Restore {
        path: PathBuf,
        job: JobId,
        reply: oneshot::Sender<RestoreResult>,
    },
    /// Replace the parameters by the coordinate-wise median of `models`.
    SetMedian {
        models: Vec<Vec<f32>>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Parameters {
        reply: oneshot::Sender<Result<Vec<f32>, NodeError>>,
    },
    /// The drift-control step after `round`: replace the parameters by the
    /// median of `models` (sorted by sender), then checkpoint.
    Drift {
        round: u64,
        models: BTreeMap<PeerId, Values>,
        f: usize,
        checkpoint: Option<(PathBuf, JobId)>,
        reply: oneshot::Sender<DriftResult>,
    },
}

fn trainer_loop(mut trainer: Box<dyn Trainer>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Gradient { round, seal, reply } => {
                let result = trainer.gradient(round).map(|(loss, mut values)| {
                    let finite = crate::wire::all_finite(&values);
                    let sealed = seal.and_then(|s| s.seal(round, &mut values, finite));
                    Gradient {
                        loss,
                        values,
                        finite,
                        sealed,
                    }
                });
                let _ = reply.send(result);
            }
            Job::Apply {
                round,
                rule,
                n,
                inputs,
                checkpoint,
                mut buffer,
                reply,
            } => {
                let r = rule
                    .aggregate(n, &inputs)
                    .and_then(|u| trainer.apply(&u, round).map_err(NodeError::from))
                    .and_then(|()| match &checkpoint {
                        Some((path, job)) => trainer
                            .save_checkpoint(path, round + 1, job)
                            .map_err(NodeError::from),
                        None => Ok(()),
                    })
                    .and_then(|()| {
                        trainer
                            .parameters_into(&mut buffer)
                            .map_err(NodeError::from)
                    })
                    .map(|()| buffer);
                let _ = reply.send(r);
            }
            Job::Restore { path, job, reply } => {
                let r = if path.exists() {
                    trainer
                        .load_checkpoint(&path, &job)
                        .map(Some)
                        .map_err(NodeError::from)
                } else {
                    Ok(None)
                };
                let _ = reply.send(r);
            }
            Job::SetMedian { models, reply } => {
                let rows: Vec<&[f32]> = models.iter().map(Vec::as_slice).collect();
                let r = Aggregate::<f32>::aggregate(&Rule::Median, &rows)
                    .map_err(NodeError::from)
                    .and_then(|a| trainer.set_parameters(&a.output).map_err(NodeError::from));
                let _ = reply.send(r);
            }
            Job::Parameters { reply } => {
                let _ = reply.send(trainer.parameters().map_err(NodeError::from));
            }
            Job::Drift {
                round,
                models,
                f,
                checkpoint,
                reply,
            } => {
                let r =
                    drift_step(&models, f)
                        .map_err(NodeError::from)
                        .and_then(|(model, spread)| {
                            trainer.set_parameters(&model)?;
                            if let Some((path, job)) = &checkpoint {
                                trainer.save_checkpoint(path, round + 1, job)?;
                            }
                            Ok((model, spread))
                        });
                let _ = reply.send(r);
            }
        }
    }
}

/// One accepted input: the signed payload (kept to answer pulls) and its
/// values.
struct Input {
    payload: SignedPayload,
    /// In place in the payload's frame where possible (no second copy).
    values: Values,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The trainer loads the checkpoint.
    Restoring,
    /// Waiting to be connected to the roster.
    Connecting,
    /// A resumed node asks its peers for their models.
    CatchingUp,
    /// The trainer takes the median of the peers' models.
    Resyncing,
    /// The trainer computes this round's gradient.
    Computing,
    /// Waiting for the other inputs.
    Collecting,
    /// The trainer aggregates and applies.
    Aggregating,
    /// A value attacker waits for the honest inputs to forge its own.
    Forging,
    /// Drift control after the round: waiting for the other models.
    Drifting,
    /// The trainer takes the median of the models.
    Contracting,
    /// Paused by the handle before starting the round (still answers
    /// pulls and state requests).
    Paused,
    /// All rounds done (the node keeps answering pulls until stopped).
    Finished,
}

struct Actor {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    keypair: Keypair,
    local: PeerId,
    job: JobId,
    roster: Vec<PeerId>,
    rule: NodeRule,
    rounds: u64,
    round_timeout: Duration,
    start_timeout: Duration,
    validator: Validator,
    events: broadcast::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    jobs: mpsc::Sender<Job>,
    pending_gradient: Option<oneshot::Receiver<GradientResult>>,
    pending_apply: Option<oneshot::Receiver<ApplyResult>>,
    phase: Phase,
    round: u64,
    /// Accepted inputs per round, for the current round, the rounds ahead
    /// (bounded by the validator's window) and the previous round (to answer
    /// late pulls).
    inputs: BTreeMap<u64, BTreeMap<PeerId, Input>>,
    /// Headers seen on gossip whose payload has not arrived, with the number
    /// of pulls sent for each.
    announced: BTreeMap<(u64, PeerId), (SignedHeader, usize)>,
    connected: BTreeSet<PeerId>,
    /// Known addresses of roster peers (configuration, `dial` commands and
    /// identify), newest last, at most [`MAX_PEER_ADDRS`] each. Kept here
    /// because the swarm forgets an address after one failed dial.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    listen: Vec<Multiaddr>,
    deadline: Option<Instant>,
    round_started: Instant,
    gradient_at: Instant,
    last_input_at: Instant,
    aggregate_started: Instant,
    compute_time: Duration,
    loss: Option<f32>,
    rejected_at_round_start: u64,
    pulls: HashMap<request_response::OutboundRequestId, (u64, PeerId)>,
    /// Testnet behaviour per round (empty: honest).
    script: Vec<Attack>,
    /// The last payload this node sent honestly (for the replay attack).
    last_honest: Option<SignedPayload>,
    checkpoint: Option<PathBuf>,
    /// The record of the last gradient signed (next to the checkpoint).
    signed_path: Option<PathBuf>,
    /// The record found at start: a gradient signed before a restart, not
    /// to be contradicted.
    signed_before: Option<Signed>,
    pending_restore: Option<oneshot::Receiver<RestoreResult>>,
    pending_set: Option<oneshot::Receiver<Result<(), NodeError>>>,
    /// Whether the node resumed from a checkpoint (and must catch up).
    resumed: bool,
    /// Rounds done and the parameters after them (answers state requests).
    latest: Option<(u64, Vec<f32>)>,
    /// The buffer of the parameters `latest` held before, for the trainer
    /// to fill after the next round (one allocation reused).
    spare: Vec<f32>,
    /// State requests in flight and the answers received: sender → (rounds
    /// done, parameters).
    state_requests: HashSet<request_response::OutboundRequestId>,
    answers: BTreeMap<PeerId, (u64, Vec<f32>)>,
    catch_up_round: u64,
    /// Application bytes handed to libp2p since the round started (frames
    /// pushed, gossiped, requested and answered; no transport overhead).
    bytes_sent: u64,
    /// Whether the catch-up interrupted a round being collected.
    catch_up_resume: bool,
    /// Pulls by (round, sender) for inputs never announced.
    blind_pulls: HashMap<(u64, PeerId), usize>,
    /// Roster members that announced another job id (identify): not
    /// counted as connected until a connection announces ours.
    foreign: HashSet<PeerId>,
    f: usize,
    /// Testnets: forge the input from the honest ones received.
    value_attack: Option<ValueAttack>,
    /// The own gradient held while forging.
    forging: Option<Vec<f32>>,
    /// Plans held back by the delay attack, with when they are due.
    delayed: VecDeque<forge::Delayed>,
    /// Peers that sent a refused input for a round (see `note_faulty`).
    faulty: BTreeMap<u64, BTreeSet<PeerId>>,
    /// The (round, peer) marks placed by a refused input whose round could
    /// not be read: they move on when the peer's own answer for that round
    /// turns up, even after the round closed (see `note_faulty`).
    floating: BTreeSet<(u64, PeerId)>,
    /// Rounds ahead whose inputs are buffered.
    max_ahead: u64,
    /// Testnets: the round whose own input this node aggregates but does
    /// not serve to pulls (it sent something else: garbage, a replay, …).
    withheld: Option<u64>,
    /// Drift-control period K (0: off).
    drift_period: u64,
    /// How this job's gradients travel.
    gradient_encoding: Encoding,
    /// Models received for the drift step after each round (this round's,
    /// those buffered ahead, and the last one done, to answer pulls).
    drift_inputs: BTreeMap<u64, BTreeMap<PeerId, Input>>,
    /// Drift headers seen on gossip whose model has not arrived.
    drift_announced: BTreeMap<(u64, PeerId), (SignedHeader, usize)>,
    /// Blind pulls of drift models by (round, sender).
    drift_blind: HashMap<(u64, PeerId), usize>,
    pending_drift: Option<oneshot::Receiver<DriftResult>>,
    /// What the job does with NaN and ±∞ (also applied to this node's own
    /// gradient).
    non_finite: NonFinitePolicy,
    /// Whether a non-finite own gradient was already reported (policy
    /// `PassToRule`: once per run).
    own_non_finite_reported: bool,
    /// The round's `RoundCompleted`, held back during its drift step.
    report: Option<Event>,
    drift_started: Instant,
    /// Whether training is paused (takes effect at the next round start).
    paused: bool,
    /// Liveness probes in flight: the peer probed and when.
    probes: HashMap<request_response::OutboundRequestId, (PeerId, Instant)>,
    /// Probes in a row that each peer left unanswered.
    probe_misses: HashMap<PeerId, u32>,
    /// Connections on which the peer identified itself (identify).
    identified: HashSet<libp2p::swarm::ConnectionId>,
    /// Members already reported for closing a connection before
    /// identifying themselves (see `closed_unidentified`).
    refused_by: HashSet<PeerId>,
}

impl Actor {
    fn new(
        cfg: NodeConfig,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
    ) -> Result<Self, NodeError> {
        let swarm = swarm::build(&cfg)?;
        let topic = swarm::topic(&cfg);
        let validator = Validator::new(ValidatorConfig {
            job: cfg.job,
            roster: cfg.roster.clone(),
            dim: cfg.dim,
            gradient_encoding: cfg.gradient_encoding,
            max_frame: cfg.max_frame,
            non_finite: cfg.non_finite,
            max_ahead: cfg.max_ahead,
        });
        let (jobs, job_rx) = mpsc::channel(TRAINER_CAPACITY);
        let trainer = cfg.trainer;
        std::thread::Builder::new()
            .name(format!("rampart-trainer-{}", cfg.local))
            .spawn(move || trainer_loop(trainer, job_rx))
            .map_err(NodeError::Thread)?;
        let now = Instant::now();
        let f = cfg.rule.f();
        let mut addresses: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in &cfg.bootstrap {
            remember(&mut addresses, *peer, addr.clone());
        }
        Ok(Self {
            swarm,
            topic,
            keypair: cfg.keypair,
            local: cfg.local,
            job: cfg.job,
            roster: cfg.roster,
            rule: cfg.rule,
            rounds: cfg.rounds,
            round_timeout: cfg.round_timeout,
            start_timeout: cfg.start_timeout,
            validator,
            events,
            commands,
            jobs,
            pending_gradient: None,
            pending_apply: None,
            phase: Phase::Connecting,
            round: 0,
            inputs: BTreeMap::new(),
            announced: BTreeMap::new(),
            connected: BTreeSet::new(),
            addresses,
            listen: Vec::new(),
            deadline: Some(now + cfg.start_timeout),
            round_started: now,
            gradient_at: now,
            last_input_at: now,
            aggregate_started: now,
            compute_time: Duration::ZERO,
            loss: None,
            rejected_at_round_start: 0,
            pulls: HashMap::new(),
            script: cfg.script,
            last_honest: None,
            signed_path: cfg.checkpoint.as_deref().map(signed::record_path),
            signed_before: None,
            checkpoint: cfg.checkpoint,
            pending_restore: None,
            pending_set: None,
            resumed: false,
            latest: None,
            spare: Vec::new(),
            state_requests: HashSet::new(),
            answers: BTreeMap::new(),
            catch_up_round: 0,
            bytes_sent: 0,
            catch_up_resume: false,
            blind_pulls: HashMap::new(),
            foreign: HashSet::new(),
            f,
            value_attack: cfg.value_attack,
            forging: None,
            delayed: VecDeque::new(),
            faulty: BTreeMap::new(),
            floating: BTreeSet::new(),
            max_ahead: cfg.max_ahead,
            withheld: None,
            drift_period: cfg.drift_period,
            gradient_encoding: cfg.gradient_encoding,
            drift_inputs: BTreeMap::new(),
            drift_announced: BTreeMap::new(),
            drift_blind: HashMap::new(),
            pending_drift: None,
            non_finite: cfg.non_finite,
            own_non_finite_reported: false,
            report: None,
            drift_started: now,
            paused: false,
            probes: HashMap::new(),
            probe_misses: HashMap::new(),
            identified: HashSet::new(),
            refused_by: HashSet::new(),
        })
    }

    fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    async fn run(mut self) {
        // Addresses from the configuration were added at build time; dial
        // every roster peer the swarm knows an address for.
        let others: Vec<PeerId> = self
            .roster
            .iter()
            .filter(|p| **p != self.local)
            .copied()
            .collect();
        for peer in others {
            self.dial(peer);
        }
        if let Some(path) = &self.signed_path {
            match signed::read(path, &self.job) {
                Ok(found) => self.signed_before = found,
                // Without the record the node cannot know what it signed:
                // refusing to start is safer than risking an equivocation.
                Err(e) => {
                    self.fail(format!(
                        "{e}; remove the file if no node of this job ever ran from this \
                         checkpoint directory"
                    ));
                }
            }
        }
        if let Some(path) = self.checkpoint.clone()
            && self.phase != Phase::Finished
        {
            let (reply, rx) = oneshot::channel();
            if self
                .jobs
                .try_send(Job::Restore {
                    path,
                    job: self.job,
                    reply,
                })
                .is_err()
            {
                self.fail("the trainer thread is gone".into());
            } else {
                self.phase = Phase::Restoring;
                self.pending_restore = Some(rx);
            }
        }
        let pull_period = (self.round_timeout / 5).max(Duration::from_millis(20));
        let mut pull_tick = tokio::time::interval(pull_period);
        pull_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe_tick = tokio::time::interval(probe_period(self.round_timeout));
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline;
            let delayed = Self::next_delayed(&self.delayed);
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = self.commands.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                },
                r = recv_opt(&mut self.pending_gradient) => {
                    self.pending_gradient = None;
                    self.on_gradient(r);
                }
                r = recv_opt(&mut self.pending_apply) => {
                    self.pending_apply = None;
                    self.on_applied(r);
                }
                r = recv_opt(&mut self.pending_restore) => {
                    self.pending_restore = None;
                    self.on_restored(r);
                }
                r = recv_opt(&mut self.pending_set) => {
                    self.pending_set = None;
                    self.on_resynced(r);
                }
                r = recv_opt(&mut self.pending_drift) => {
                    self.pending_drift = None;
                    self.on_drifted(r);
                }
                () = sleep_opt(deadline) => self.on_deadline(),
                () = sleep_opt(delayed) => self.send_delayed(),
                _ = pull_tick.tick() => {
                    self.redial();
                    self.pull_missing();
                }
                _ = probe_tick.tick() => self.probe(),
            }
        }
        info!("node stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(Status {
                    peer: self.local,
                    round: self.round,
                    finished: self.phase == Phase::Finished,
                    listen: self.listen.clone(),
                    connected: self.connected.iter().copied().collect(),
                    counters: self.validator.counters().clone(),
                    excluded: self.validator.excluded().copied().collect(),
                    paused: self.paused,
                });
            }
            Command::Parameters(reply) => {
                if let Err(e) = self.jobs.try_send(Job::Parameters { reply }) {
                    let reply = match e {
                        mpsc::error::TrySendError::Full(Job::Parameters { reply })
                        | mpsc::error::TrySendError::Closed(Job::Parameters { reply }) => reply,
                        _ => return,
                    };
                    let _ = reply.send(Err(NodeError::Busy));
                }
            }
            Command::Dial(peer, addr) => {
                if self.roster.contains(&peer) && peer != self.local {
                    remember(&mut self.addresses, peer, addr.clone());
                    self.swarm.add_peer_address(peer, addr);
                    self.dial(peer);
                }
            }
            Command::Pause(pause, reply) => {
                let _ = reply.send(());
                if pause != self.paused {
                    self.paused = pause;
                    if !pause && self.phase == Phase::Paused {
                        info!(round = self.round, "resuming");
                        self.emit(Event::Unpaused { round: self.round });
                        // The peers went on meanwhile: join them.
                        self.catch_up_resume = false;
                        self.catch_up();
                    }
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.listen.push(address.clone());
                self.emit(Event::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                // The allow list only lets roster members this far; a
                // member known to run another job counts once it announces
                // ours.
                if !self.foreign.contains(&peer_id) {
                    self.connected.insert(peer_id);
                }
                if self.phase == Phase::Connecting && self.connected.len() + 1 >= self.roster.len()
                {
                    self.start();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                if !self.identified.remove(&connection_id) && cause.is_some() {
                    self.closed_unidentified(peer_id);
                }
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    // The round may have been waiting only for this peer.
                    self.check_complete(false);
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { .. },
                peer_id: Some(peer),
                ..
            } => {
                warn!(
                    %peer,
                    "connection from {peer} denied: it is not a member of our roster (job {}); \
                     if it should be, check that both use the same roster file",
                    self.job.to_hex()
                );
                self.emit(Event::ConnectionDenied { peer });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                debug!(%peer, %error, "dial failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(ev)) => self.on_rr(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                connection_id,
                peer_id,
                info,
            })) if self.roster.contains(&peer_id) => {
                self.identified.insert(connection_id);
                self.refused_by.remove(&peer_id);
                self.check_job(peer_id, &info.agent_version);
                for addr in info.listen_addrs.into_iter().take(MAX_PEER_ADDRS) {
                    remember(&mut self.addresses, peer_id, addr.clone());
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            #[cfg(feature = "mdns")]
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if self.roster.contains(&peer) && peer != self.local {
                        debug!(%peer, %addr, "roster peer found by mDNS");
                        remember(&mut self.addresses, peer, addr.clone());
                        self.swarm.add_peer_address(peer, addr);
                        self.dial(peer);
                    }
                }
            }
            _ => {}
        }
    }

    /// Compares the job id a member announced (identify) with ours; a
    /// mismatch is logged and emitted once per connection, at both ends,
    /// and the member no longer counts as connected (it cannot take part).
    fn check_job(&mut self, peer: PeerId, agent: &str) {
        let ours = self.job.to_hex();
        match swarm::peer_job(agent) {
            Some(theirs) if theirs != ours => {
                self.foreign.insert(peer);
                self.connected.remove(&peer);
                error!(
                    %peer,
                    theirs,
                    ours = %ours,
                    "peer {peer} runs job {theirs}, we run job {ours}: check that both use the \
                     same roster file (`rampart roster id` prints its job id)"
                );
                self.emit(Event::JobMismatch {
                    peer,
                    theirs: theirs.to_owned(),
                    ours,
                });
            }
            Some(_) => {
                if self.foreign.remove(&peer) {
                    self.connected.insert(peer);
                }
            }
            None => warn!(%peer, agent, "roster member announced no job id"),
        }
    }

    /// A roster member closed a connection before identifying itself on
    /// it. A member whose roster does not list this node denies the
    /// connection right after the handshake, and only its end can log why;
    /// this end reports it once per member (again after the member has
    /// identified itself in between).
    fn closed_unidentified(&mut self, peer: PeerId) {
        if self.phase == Phase::Finished
            || !self.roster.contains(&peer)
            || !self.refused_by.insert(peer)
        {
            return;
        }
        warn!(
            %peer,
            "roster member {peer} closed the connection before identifying itself: most \
             likely its roster does not list this node (job {}); check that both use the same \
             roster file (`rampart roster id` prints its job id)",
            self.job.to_hex()
        );
        self.emit(Event::RefusedByPeer { peer });
    }

    fn start(&mut self) {
        self.emit(Event::Started {
            connected: self.connected.len(),
        });
        if self.resumed {
            self.catch_up();
        } else {
            info!(connected = self.connected.len(), "starting round 0");
            self.start_round();
        }
    }

    fn on_restored(&mut self, r: Result<RestoreResult, oneshot::error::RecvError>) {
        match r {
            Ok(Ok(Some(round))) => {
                info!(round, "resumed from checkpoint");
                self.round = round;
                self.validator.advance(round);
                self.resumed = true;
                self.emit(Event::Resumed { round });
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return self.fail(e.to_string()),
            Err(_) => return self.fail("the trainer thread stopped".into()),
        }
        self.phase = Phase::Connecting;
        if self.round >= self.rounds {
            self.phase = Phase::Finished;
            self.emit(Event::Finished { rounds: self.round });
        } else if self.connected.len() + 1 >= self.roster.len() {
            self.start();
        }
    }

    /// Asks every connected peer for its model.
    fn catch_up(&mut self) {
        self.phase = Phase::CatchingUp;
        self.answers.clear();
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        if let Ok(bytes) = Message::StateRequest.encode() {
            let bytes = Bytes::from(bytes);
            for peer in peers {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&peer, bytes.clone().into());
                self.state_requests.insert(id);
            }
        }
        self.deadline = Some(Instant::now() + self.round_timeout);
        if self.state_requests.is_empty() {
            self.finish_catch_up();
        }
    }

    /// Joins the round that at least 2f + 1 peers (or all who answered, if
    /// fewer) have reached, with the coordinate-wise median of their models.
    fn finish_catch_up(&mut self) {
        self.state_requests.clear();
        self.deadline = None;
        let need = (2 * self.f + 1).min(self.answers.len()).max(1);
        // Peers straddle rounds while they run, so no single round need be
        // reported by 2f + 1 of them: join the (2f + 1)-th most advanced
        // round (at least f + 1 honest peers have reached it, so Byzantine
        // answers cannot pull it up) with the median of every model at or
        // beyond it.
        let answers = std::mem::take(&mut self.answers);
        let mut rounds: Vec<u64> = answers.values().map(|(r, _)| *r).collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let best = rounds.get(need - 1).map(|&target| {
            let models: Vec<Vec<f32>> = answers
                .into_values()
                .filter(|(r, _)| *r >= target)
                .map(|(_, p)| p)
                .collect();
            (target, models)
        });
        match best {
            Some((round, models)) if round > self.round => {
                self.catch_up_resume = false;
                let (reply, rx) = oneshot::channel();
                self.catch_up_round = round;
                let answers = models.len();
                if self
                    .jobs
                    .try_send(Job::SetMedian { models, reply })
                    .is_err()
                {
                    return self.fail("the trainer thread is gone".into());
                }
                self.phase = Phase::Resyncing;
                self.pending_set = Some(rx);
                self.emit(Event::CaughtUp { round, answers });
            }
            _ if self.catch_up_resume => {
                // Nobody is ahead: keep collecting this round (its input is
                // already signed and sent, so it is not recomputed).
                self.catch_up_resume = false;
                self.phase = Phase::Collecting;
                self.deadline = Some(Instant::now() + self.round_timeout);
                self.check_complete(false);
            }
            _ => self.start_round(),
        }
    }

    fn on_resynced(&mut self, r: Result<Result<(), NodeError>, oneshot::error::RecvError>) {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.fail(e.to_string()),
            Err(_) => return self.fail("the trainer thread stopped".into()),
        }
        self.round = self.catch_up_round;
        self.validator.advance(self.round);
        self.inputs.retain(|r, _| *r + 1 >= self.catch_up_round);
        if self.round >= self.rounds {
            self.phase = Phase::Finished;
            self.emit(Event::Finished { rounds: self.round });
        } else {
            self.start_round();
        }
    }

    fn state_answer(&self) -> Option<SignedPayload> {
        let (round, params) = self.latest.as_ref()?;
        SignedPayload::new_f32(
            &self.keypair,
            self.job,
            *round,
            PayloadKind::Parameters,
            params,
        )
        .ok()
    }

    fn start_round(&mut self) {
        if self.paused {
            info!(round = self.round, "paused");
            self.phase = Phase::Paused;
            self.deadline = None;
            self.emit(Event::Paused { round: self.round });
            return;
        }
        self.phase = Phase::Computing;
        self.deadline = None;
        self.round_started = Instant::now();
        self.rejected_at_round_start = self.validator.counters().rejected();
        self.bytes_sent = 0;
        let (reply, rx) = oneshot::channel();
        // Scripted protocol attackers keep no record: they sign what they
        // like.
        let record = match &self.signed_path {
            Some(path) if self.script.is_empty() => {
                let before = self.signed_before.take_if(|s| s.round == self.round);
                Some((path.clone(), before, self.rule.f()))
            }
            _ => None,
        };
        let seal = self.value_attack.is_none().then(|| {
            Box::new(Seal {
                keypair: self.keypair.clone(),
                job: self.job,
                encoding: self.gradient_encoding,
                non_finite: self.non_finite == NonFinitePolicy::PassToRule,
                record,
            })
        });
        let job = Job::Gradient {
            round: self.round,
            seal,
            reply,
        };
        if self.jobs.try_send(job).is_err() {
            self.fail("the trainer thread is gone or overloaded".into());
            return;
        }
        self.pending_gradient = Some(rx);
    }

    fn fail(&mut self, error: String) {
        warn!(%error, "node failed");
        self.phase = Phase::Finished;
        self.deadline = None;
        self.emit(Event::Failed { error });
    }

    fn on_gradient(&mut self, r: Result<GradientResult, oneshot::error::RecvError>) {
        let Gradient {
            loss,
            values: grad,
            finite,
            sealed,
        } = match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return self.fail(e.to_string()),
            Err(_) => return self.fail("the trainer thread stopped".into()),
        };
        self.gradient_at = Instant::now();
        self.compute_time = self.gradient_at - self.round_started;
        self.loss = loss;
        if !finite {
            match self.non_finite {
                // The peers would refuse it and this node would aggregate
                // it: fail now with the cause rather than time out rounds.
                NonFinitePolicy::Reject => {
                    return self.fail(format!(
                        "the trainer's gradient for round {} has a NaN or infinite value, so the \
                         model has diverged and the peers would refuse it (the job refuses \
                         non-finite inputs); lower the learning rate, or restart from an earlier \
                         checkpoint",
                        self.round
                    ));
                }
                NonFinitePolicy::PassToRule => {
                    if !self.own_non_finite_reported {
                        self.own_non_finite_reported = true;
                        warn!(
                            round = self.round,
                            "the trainer's gradient has a NaN or infinite value; sending it to \
                             the rule, as the job's non-finite policy says (reported once)"
                        );
                    }
                }
            }
        }
        if self.value_attack.is_some() {
            return self.start_forging(grad);
        }
        // Signed (and rounded to the job's encoding: the node aggregates
        // its own input as the others decode it) on the trainer thread.
        let (payload, push) = match sealed {
            Some(Ok(Sealed::Ready { payload, push })) => (*payload, push),
            Some(Ok(Sealed::Withheld)) => {
                // This round's input was signed before a restart and
                // differs now: send nothing rather than a second version
                // of it.
                self.phase = Phase::Collecting;
                self.deadline = Some(Instant::now() + self.round_timeout);
                self.check_complete(false);
                return;
            }
            Some(Err(e)) => return self.fail(e.to_string()),
            None => return self.fail("the trainer thread did not sign the gradient".into()),
        };
        // Record our own header so a conflicting one is an equivocation.
        let _ = self.validator.header(&payload.header);
        let attack = match self.script.len() {
            0 => Attack::Honest,
            len => self.script[(self.round % len as u64) as usize],
        };
        let victim = self
            .roster
            .iter()
            .position(|p| *p == self.local)
            .map(|i| self.roster[(i + 1) % self.roster.len()])
            .filter(|p| *p != self.local)
            .and_then(|p| crate::wire::ed25519_public_of(&p));
        let plan = match adversary::forge(
            attack,
            &self.keypair,
            self.job,
            &payload,
            &push,
            &grad,
            self.last_honest.as_ref(),
            victim,
        ) {
            Ok(plan) => plan,
            Err(e) => return self.fail(e.to_string()),
        };
        if matches!(attack, Attack::Honest | Attack::Delay { .. }) {
            self.last_honest = Some(payload.clone());
        }
        let input = Input {
            payload,
            values: grad.into(),
        };
        match attack {
            // A late sender neither sends its input nor answers pulls for it
            // before the delay.
            Attack::Delay { ms } => self.delay(ms, plan, input),
            // A silent node keeps its input to itself: not even pulls get it.
            Attack::Silent => {}
            _ => {
                self.send(plan);
                self.inputs
                    .entry(self.round)
                    .or_default()
                    .insert(self.local, input);
                // A node that sent something else than its input must not
                // hand the input to the peers that pull it: some would
                // aggregate it and others not.
                if matches!(
                    attack,
                    Attack::Garbage
                        | Attack::WrongDimension
                        | Attack::NonFinite
                        | Attack::Replay
                        | Attack::Impersonate
                        | Attack::Tamper
                        | Attack::FutureRound
                        | Attack::WrongJob
                        | Attack::Oversize
                ) {
                    self.withheld = Some(self.round);
                }
            }
        }
        self.phase = Phase::Collecting;
        self.deadline = Some(Instant::now() + self.round_timeout);
        self.check_complete(false);
    }

    /// Gossips the header and pushes the payload to every roster peer (the
    /// plan's push for the parity of the peer's roster position).
    fn send(&mut self, plan: Plan) {
        if let Some(bytes) = &plan.gossip {
            self.bytes_sent += bytes.len() as u64;
        }
        if let Some(bytes) = plan.gossip
            && let Err(e) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), bytes)
        {
            debug!(error = %e, "header not gossiped");
        }
        let targets: Vec<(usize, PeerId)> = self
            .roster
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != self.local && !self.validator.is_excluded(p))
            .map(|(i, p)| (i, *p))
            .collect();
        for (i, peer) in targets {
            if let Some(frame) = &plan.push[i % 2] {
                self.bytes_sent += frame.len() as u64;
                self.swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&peer, frame.clone().into());
            }
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        let acceptance = match self.validator.decode(&msg.data) {
            Err(r) => self.refused(source, r),
            Ok(Message::Header(h)) => match self.validator.header(&h) {
                Ok(fresh) => {
                    let round = h.header.round;
                    if let Some(sender) = self.validator.member(&h.header.sender) {
                        let (store, announced) = match h.header.kind {
                            PayloadKind::Drift => (&self.drift_inputs, &mut self.drift_announced),
                            _ => (&self.inputs, &mut self.announced),
                        };
                        let have = store.get(&round).is_some_and(|m| m.contains_key(&sender));
                        if fresh == Freshness::New && !have {
                            announced.insert((round, sender), (h, 0));
                        }
                    }
                    gossipsub::MessageAcceptance::Accept
                }
                Err(r) => self.refused(source, r),
            },
            Ok(Message::Equivocation(p)) => match self.validator.proof(&p) {
                Ok(peer) => {
                    self.exclude(peer, p, false);
                    gossipsub::MessageAcceptance::Accept
                }
                Err(r) => self.refused(source, r),
            },
            Ok(_) => self.refused(source, Reason::UnexpectedMessage.into()),
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    /// Reports a refusal (counted by the validator) and maps it to a
    /// gossipsub verdict. Equivocation is ignored, not rejected, on gossip:
    /// the relaying peer is not the culprit.
    fn refused(&mut self, peer: PeerId, r: Refusal) -> gossipsub::MessageAcceptance {
        if let Some(proof) = r.proof {
            if let Some(culprit) = proof.sender() {
                self.exclude(culprit, *proof, true);
            }
            return gossipsub::MessageAcceptance::Ignore;
        }
        if r.reason.is_reject() {
            debug!(%peer, reason = ?r.reason, "input rejected");
            self.emit(Event::InputRejected {
                peer,
                reason: r.reason,
            });
            gossipsub::MessageAcceptance::Reject
        } else {
            gossipsub::MessageAcceptance::Ignore
        }
    }

    fn exclude(&mut self, peer: PeerId, proof: EquivocationProof, publish: bool) {
        warn!(%peer, "peer excluded for equivocation");
        if publish && let Ok(bytes) = Message::Equivocation(proof.clone()).encode() {
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), bytes);
        }
        let round = self.round;
        let aggregating = self.phase == Phase::Aggregating;
        for (r, m) in self.inputs.iter_mut() {
            // The round being aggregated keeps its inputs.
            if *r > round || (*r == round && !aggregating) {
                m.remove(&peer);
            }
        }
        self.announced.retain(|(_, p), _| *p != peer);
        let contracting = self.phase == Phase::Contracting;
        for (r, m) in self.drift_inputs.iter_mut() {
            if *r > round || (*r == round && !contracting) {
                m.remove(&peer);
            }
        }
        self.drift_announced.retain(|(_, p), _| *p != peer);
        self.emit(Event::PeerExcluded {
            peer,
            evidence: Box::new(proof),
        });
        self.check_complete(false);
        self.check_drift_complete(false);
        self.try_forge(false);
    }

    fn on_rr(&mut self, ev: request_response::Event<Frame, Bytes>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let request = match request {
                    Frame::Bytes(b) => b,
                    // Announced longer than the frame limit, and left
                    // unread: counted like any refused input (the round is
                    // unknown: the peer's first one not answered yet).
                    Frame::TooLarge { len, limit } => {
                        debug!(%peer, len, limit, "oversize request refused");
                        let r = self.validator.oversize();
                        self.refused(peer, r);
                        self.note_faulty(peer, None);
                        return;
                    }
                };
                let response = match self.validator.decode_frame(request) {
                    Err(r) => {
                        let reject = r.reason.is_reject();
                        self.refused(peer, r);
                        if reject {
                            // The round is unknown: the peer's first one
                            // not answered yet.
                            self.note_faulty(peer, None);
                        }
                        return;
                    }
                    Ok(Message::Push(p)) => {
                        self.on_payload(peer, p, true);
                        Message::Ack
                    }
                    Ok(Message::Pull(req)) => Message::Payload(self.lookup(&req)),
                    Ok(Message::StateRequest) => Message::Payload(self.state_answer()),
                    Ok(Message::Ping) => Message::Ack,
                    Ok(_) => {
                        self.refused(peer, Reason::UnexpectedMessage.into());
                        return;
                    }
                };
                if let Ok(bytes) = response.encode() {
                    self.bytes_sent += bytes.len() as u64;
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(channel, bytes.into());
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let pulled = self.pulls.remove(&request_id);
                let state = self.state_requests.remove(&request_id);
                if self.probes.remove(&request_id).is_some() {
                    // Any answer shows the connection carries traffic.
                    self.probe_misses.remove(&peer);
                }
                match self.validator.decode_frame(response) {
                    Err(r) => {
                        self.refused(peer, r);
                    }
                    Ok(Message::Ack) => {}
                    Ok(Message::Payload(Some(p))) if pulled.is_some() => {
                        self.on_payload(peer, p, false)
                    }
                    Ok(Message::Payload(Some(p)))
                        if state && p.header.header.kind == PayloadKind::Parameters =>
                    {
                        self.on_state(peer, p);
                    }
                    Ok(Message::Payload(None)) => {
                        if state {
                            self.check_catch_up();
                        }
                    }
                    Ok(_) => {
                        self.refused(peer, Reason::UnexpectedMessage.into());
                    }
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if self.probes.remove(&request_id).is_some()
                    && matches!(error, request_response::OutboundFailure::Timeout)
                {
                    self.probe_missed(peer);
                }
                self.pulls.remove(&request_id);
                if self.state_requests.remove(&request_id) {
                    self.check_catch_up();
                }
                debug!(%peer, %error, "request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_state(&mut self, from: PeerId, p: SignedPayload) {
        match self.validator.payload(&p) {
            Err(r) => {
                self.refused(from, r);
            }
            Ok((_, values)) => {
                if let Some(sender) = self.validator.member(&p.header.header.sender) {
                    self.answers
                        .insert(sender, (p.header.header.round, values.into_vec()));
                }
            }
        }
        self.check_catch_up();
    }

    fn check_catch_up(&mut self) {
        if self.phase == Phase::CatchingUp && self.state_requests.is_empty() {
            self.finish_catch_up();
        }
    }

    fn lookup(&self, req: &PullRequest) -> Option<SignedPayload> {
        let store = match req.kind {
            PayloadKind::Drift => &self.drift_inputs,
            _ => &self.inputs,
        };
        let m = store.get(&req.round)?;
        let withheld = req.kind == PayloadKind::Gradient && self.withheld == Some(req.round);
        m.iter()
            .filter(|(p, _)| !(withheld && **p == self.local))
            .map(|(_, i)| i)
            .find(|i| {
                let h = &i.payload.header.header;
                h.sender == req.sender
                    && h.kind == req.kind
                    && req.payload_hash.is_none_or(|x| x == h.payload_hash)
            })
            .map(|i| i.payload.clone())
    }

    /// A payload from `from`: pushed by it (`pushed`), or its answer to a
    /// pull.
    fn on_payload(&mut self, from: PeerId, p: SignedPayload, pushed: bool) {
        if p.header.header.kind == PayloadKind::Drift {
            return self.on_drift_payload(from, p);
        }
        if p.header.header.kind != PayloadKind::Gradient {
            self.refused(from, Reason::UnexpectedMessage.into());
            return;
        }
        match self.validator.payload(&p) {
            Err(r) => {
                let reject = r.reason.is_reject();
                self.refused(from, r);
                // A member pushes only its own input, so a refused push is
                // its fault whatever sender the header names (an
                // impersonation, say). A pull answer may be relayed: only
                // its signer is to blame.
                if reject
                    && (pushed || self.validator.member(&p.header.header.sender) == Some(from))
                {
                    self.note_faulty(from, Some(p.header.header.round));
                } else if pushed {
                    // Still the pusher's answer for that round (late, say).
                    self.refloat(from, p.header.header.round);
                }
            }
            Ok((_, values)) => {
                let round = p.header.header.round;
                let Some(sender) = self.validator.member(&p.header.header.sender) else {
                    return;
                };
                if round == self.round && self.phase == Phase::Aggregating {
                    // Too late for the round being aggregated.
                    return;
                }
                self.announced.remove(&(round, sender));
                let slot = self.inputs.entry(round).or_default();
                if let std::collections::btree_map::Entry::Vacant(e) = slot.entry(sender) {
                    e.insert(Input { payload: p, values });
                    if round == self.round {
                        self.last_input_at = Instant::now();
                    }
                    self.refloat(sender, round);
                    self.check_complete(false);
                    self.try_forge(false);
                }
            }
        }
    }

    fn expected(&self) -> usize {
        self.roster
            .iter()
            .filter(|p| !self.validator.is_excluded(p))
            .count()
    }

    fn check_complete(&mut self, timed_out: bool) {
        if self.phase != Phase::Collecting {
            return;
        }
        let have = self.inputs.get(&self.round).map_or(0, BTreeMap::len);
        let n = self.roster.len();
        let expected = self.expected();
        let complete = have >= expected;
        let enough = self.rule.can_aggregate(n, have);
        // Peers that sent only refused inputs this round, or that are not
        // connected, will not send a valid one: with a quorum, the round
        // need not wait for them.
        let answered = enough && have + self.faulty_in_round() + self.unreachable() >= expected;
        if complete || answered || (timed_out && enough) {
            self.aggregate();
        } else if timed_out {
            // Without a quorum at the timeout this node is probably behind
            // (the others closed this round and moved on): ask the peers
            // where they are, and come back to this round if they are not
            // ahead.
            warn!(
                round = self.round,
                have, "round timeout without a quorum; catching up"
            );
            self.catch_up_resume = true;
            self.catch_up();
        }
    }

    fn aggregate(&mut self) {
        self.phase = Phase::Aggregating;
        self.deadline = None;
        // The values move to the trainer (no copy): after this only the
        // signed payloads are needed, to answer pulls.
        let inputs: BTreeMap<PeerId, Values> = self
            .inputs
            .get_mut(&self.round)
            .map(|m| {
                m.iter_mut()
                    .map(|(p, i)| (*p, std::mem::take(&mut i.values)))
                    .collect()
            })
            .unwrap_or_default();
        self.last_input_at = self.last_input_at.max(self.gradient_at);
        let (reply, rx) = oneshot::channel();
        let job = Job::Apply {
            round: self.round,
            rule: self.rule.clone(),
            n: self.roster.len(),
            inputs,
            checkpoint: self.checkpoint.clone().map(|p| (p, self.job)),
            buffer: std::mem::take(&mut self.spare),
            reply,
        };
        if self.jobs.try_send(job).is_err() {
            return self.fail("the trainer thread is gone or overloaded".into());
        }
        self.pending_apply = Some(rx);
        self.aggregate_started = Instant::now();
    }

    fn on_applied(&mut self, r: Result<ApplyResult, oneshot::error::RecvError>) {
        let params = match r {
            Ok(Ok(params)) => params,
            Ok(Err(e)) => return self.fail(e.to_string()),
            Err(_) => return self.fail("the trainer thread stopped".into()),
        };
        let now = Instant::now();
        let accepted = self.inputs.get(&self.round).map_or(0, BTreeMap::len);
        let rejected = self.validator.counters().rejected() - self.rejected_at_round_start;
        let report = Event::RoundCompleted {
            round: self.round,
            loss: self.loss,
            accepted,
            rejected,
            excluded: self.validator.excluded().copied().collect(),
            timings: RoundTimings {
                compute: self.compute_time,
                collect: self
                    .last_input_at
                    .saturating_duration_since(self.gradient_at),
                aggregate: now - self.aggregate_started,
                drift: Duration::ZERO,
                total: now - self.round_started,
            },
            honest_spread: None,
            bytes_sent: self.bytes_sent,
        };
        if self.drift_period > 0 && (self.round + 1).is_multiple_of(self.drift_period) {
            // `latest` keeps the previous round's model until the step is
            // done, so state answers never disagree about one round.
            return self.start_drift(params, report);
        }
        self.set_latest(params);
        self.finish_round(report);
    }

    /// Emits the round's report and moves on to the next round.
    fn finish_round(&mut self, report: Event) {
        self.emit(report);
        let done = self.round;
        self.round += 1;
        self.validator.advance(self.round);
        // Keep the round just done to answer late pulls.
        self.inputs.retain(|r, _| *r >= done);
        self.announced.retain(|(r, _), _| *r >= self.round);
        self.drift_inputs.retain(|r, _| *r >= done);
        self.drift_announced.retain(|(r, _), _| *r >= self.round);
        self.drift_blind.retain(|(r, _), _| *r >= self.round);
        if self.round >= self.rounds {
            self.phase = Phase::Finished;
            info!(rounds = self.round, "finished");
            self.emit(Event::Finished { rounds: self.round });
        } else {
            self.start_round();
        }
    }

    /// Starts the drift-control step after the current round: signs the
    /// model (a `Drift` payload of this round), gossips its header, pushes
    /// it to every roster peer, and collects the others' models.
    fn start_drift(&mut self, params: Vec<f32>, report: Event) {
        self.report = Some(report);
        self.drift_started = Instant::now();
        let (payload, push) = match SignedPayload::push_f32(
            &self.keypair,
            self.job,
            self.round,
            PayloadKind::Drift,
            &params,
        ) {
            Ok(p) => p,
            Err(e) => return self.fail(e.to_string()),
        };
        let _ = self.validator.header(&payload.header);
        self.send(adversary::honest_framed(&payload, &push));
        self.drift_inputs.entry(self.round).or_default().insert(
            self.local,
            Input {
                payload,
                values: params.into(),
            },
        );
        self.phase = Phase::Drifting;
        self.deadline = Some(Instant::now() + self.round_timeout);
        self.check_drift_complete(false);
    }

    fn on_drift_payload(&mut self, from: PeerId, p: SignedPayload) {
        match self.validator.payload(&p) {
            Err(r) => {
                self.refused(from, r);
            }
            Ok((_, values)) => {
                let round = p.header.header.round;
                let Some(sender) = self.validator.member(&p.header.header.sender) else {
                    return;
                };
                if round == self.round && self.phase == Phase::Contracting {
                    return;
                }
                self.drift_announced.remove(&(round, sender));
                let slot = self.drift_inputs.entry(round).or_default();
                if let std::collections::btree_map::Entry::Vacant(e) = slot.entry(sender) {
                    e.insert(Input { payload: p, values });
                    self.check_drift_complete(false);
                }
            }
        }
    }

    /// Closes the drift step with every non-excluded member's model, or at
    /// the timeout with the same quorum as a round (n − f). Without a
    /// quorum the node keeps its own model and goes on.
    fn check_drift_complete(&mut self, timed_out: bool) {
        if self.phase != Phase::Drifting {
            return;
        }
        let have = self.drift_inputs.get(&self.round).map_or(0, BTreeMap::len);
        let complete = have >= self.expected();
        let enough = have >= self.rule.quorum(self.roster.len());
        if complete || (timed_out && enough) {
            let models: BTreeMap<PeerId, Values> = self
                .drift_inputs
                .get_mut(&self.round)
                .map(|m| {
                    m.iter_mut()
                        .map(|(p, i)| (*p, std::mem::take(&mut i.values)))
                        .collect()
                })
                .unwrap_or_default();
            let (reply, rx) = oneshot::channel();
            let job = Job::Drift {
                round: self.round,
                models,
                f: self.f,
                checkpoint: self.checkpoint.clone().map(|p| (p, self.job)),
                reply,
            };
            if self.jobs.try_send(job).is_err() {
                return self.fail("the trainer thread is gone or overloaded".into());
            }
            self.phase = Phase::Contracting;
            self.deadline = None;
            self.pending_drift = Some(rx);
        } else if timed_out {
            warn!(
                round = self.round,
                have, "drift step without a quorum; keeping the local model"
            );
            let own = self
                .drift_inputs
                .get(&self.round)
                .and_then(|m| m.get(&self.local))
                .map(|i| i.values.clone());
            if let Some(own) = own {
                self.set_latest(own.into_vec());
            }
            self.end_drift(None);
        }
    }

    /// Keeps `params` as the model after the current round (for state
    /// answers); the buffer it replaces is kept for the next round.
    fn set_latest(&mut self, params: Vec<f32>) {
        if let Some((_, old)) = self.latest.replace((self.round + 1, params)) {
            self.spare = old;
        }
    }

    fn on_drifted(&mut self, r: Result<DriftResult, oneshot::error::RecvError>) {
        let (model, spread) = match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return self.fail(e.to_string()),
            Err(_) => return self.fail("the trainer thread stopped".into()),
        };
        self.set_latest(model);
        self.end_drift(Some(spread));
    }

    fn end_drift(&mut self, spread: Option<f64>) {
        let Some(mut report) = self.report.take() else {
            return self.fail("drift step without a round report".into());
        };
        let now = Instant::now();
        if let Event::RoundCompleted {
            timings,
            honest_spread,
            bytes_sent,
            ..
        } = &mut report
        {
            timings.drift = now - self.drift_started;
            timings.total = now - self.round_started;
            *honest_spread = spread;
            *bytes_sent = self.bytes_sent;
        }
        self.finish_round(report);
    }

    fn on_deadline(&mut self) {
        self.deadline = None;
        match self.phase {
            Phase::Connecting => {
                let n = self.roster.len();
                if self.connected.len() + 1 >= self.rule.quorum(n) {
                    self.start();
                } else {
                    warn!(
                        connected = self.connected.len(),
                        "not enough roster peers to start"
                    );
                    self.deadline = Some(Instant::now() + self.start_timeout);
                }
            }
            Phase::Collecting => self.check_complete(true),
            Phase::Forging => self.try_forge(true),
            Phase::Drifting => self.check_drift_complete(true),
            Phase::CatchingUp => self.finish_catch_up(),
            _ => {}
        }
    }

    /// Sends a liveness probe to every connected peer that has none in
    /// flight, and counts a miss for each probe unanswered after two round
    /// timeouts (see [`probe_period`]). libp2p reports a request's timeout
    /// once; the requests after it on a stalled connection wait for their
    /// stream without a timeout of their own, hence this check.
    fn probe(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        let now = Instant::now();
        let stale: Vec<(request_response::OutboundRequestId, PeerId)> = self
            .probes
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > self.round_timeout * 2)
            .map(|(id, (peer, _))| (*id, *peer))
            .collect();
        for (id, peer) in stale {
            self.probes.remove(&id);
            self.probe_missed(peer);
        }
        let Ok(bytes) = Message::Ping.encode().map(Bytes::from) else {
            return;
        };
        let waiting: HashSet<PeerId> = self.probes.values().map(|(p, _)| *p).collect();
        let due: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|p| !waiting.contains(p))
            .copied()
            .collect();
        for peer in due {
            self.bytes_sent += bytes.len() as u64;
            let id = self
                .swarm
                .behaviour_mut()
                .rr
                .send_request(&peer, bytes.clone().into());
            self.probes.insert(id, (peer, now));
        }
    }

    /// A probe to `peer` went unanswered. After [`DEAD_AFTER_MISSES`] in a
    /// row its connections are closed, so that the redial tick opens a
    /// fresh one as soon as the peer can be reached.
    fn probe_missed(&mut self, peer: PeerId) {
        let misses = self.probe_misses.entry(peer).or_insert(0);
        *misses += 1;
        if *misses >= DEAD_AFTER_MISSES {
            self.probe_misses.remove(&peer);
            self.probes.retain(|_, (p, _)| *p != peer);
            warn!(
                %peer,
                "connection to {peer} is dead ({DEAD_AFTER_MISSES} liveness probes in a row \
                 unanswered); closing it and redialling"
            );
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Dials every roster peer that is not connected (libp2p skips peers
    /// already connected or being dialled). Simultaneous dials between two
    /// peers occasionally both fail; this retries them, and reconnects
    /// peers that restarted.
    fn redial(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        let missing: Vec<PeerId> = self
            .roster
            .iter()
            .filter(|p| **p != self.local && !self.connected.contains(p))
            .copied()
            .collect();
        for peer in missing {
            self.dial(peer);
        }
    }

    /// Dials a roster peer at every address known for it, unless connected
    /// or already dialling. Each dial takes a fresh local port: two peers
    /// dialling each other from their listening ports at the same moment
    /// would otherwise make one TCP connection by simultaneous open, on
    /// which both sides start the handshake as the dialer and both fail.
    fn dial(&mut self, peer: PeerId) {
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "dial not started");
        }
    }

    /// Asks for payloads announced on gossip but not received: first from
    /// their sender, then from the other roster peers in turn.
    fn pull_missing(&mut self) {
        if self.phase == Phase::Drifting {
            // A drift step's pulls are keyed by the peer asked.
            for (target, _, req) in self.missing_pulls(true) {
                self.send_pull(target, target, req);
            }
            return;
        }
        if !matches!(self.phase, Phase::Collecting | Phase::Forging) {
            return;
        }
        for (target, sender, req) in self.missing_pulls(false) {
            self.send_pull(target, sender, req);
        }
    }

    /// The pulls due in this round's exchange of gradients, or of models
    /// when `drift`: as (peer asked, sender of the payload, request).
    ///
    /// A push normally arrives right after its header, so nothing is pulled
    /// before round_timeout / 5 into the exchange (a large push still in
    /// flight is not fetched a second time). Then payloads announced on
    /// gossip are asked from their sender, then from the other members in
    /// turn; payloads never announced (the push and the gossip were missed,
    /// e.g. while this node was down) are asked from their senders, who keep
    /// their own payloads of the current and the previous round (3 tries
    /// each).
    fn missing_pulls(&mut self, drift: bool) -> Vec<(PeerId, PeerId, PullRequest)> {
        let round = self.round;
        let n = self.roster.len();
        let (started, announced, received, blind, kind) = if drift {
            (
                self.drift_started,
                &mut self.drift_announced,
                self.drift_inputs.get(&round),
                &mut self.drift_blind,
                PayloadKind::Drift,
            )
        } else {
            (
                self.gradient_at,
                &mut self.announced,
                self.inputs.get(&round),
                &mut self.blind_pulls,
                PayloadKind::Gradient,
            )
        };
        if Instant::now().saturating_duration_since(started) < self.round_timeout / 5 {
            return Vec::new();
        }
        let mut requests = Vec::new();
        for ((r, sender), (h, tries)) in announced.iter_mut() {
            if *r != round || *tries >= n {
                continue;
            }
            let start = self.roster.iter().position(|p| p == sender).unwrap_or(0);
            let target = self.roster[(start + *tries) % n];
            *tries += 1;
            if target == self.local || !self.connected.contains(&target) {
                continue;
            }
            let req = PullRequest {
                round,
                sender: h.header.sender,
                kind: h.header.kind,
                payload_hash: Some(h.header.payload_hash),
            };
            requests.push((target, *sender, req));
        }
        let missing: Vec<PeerId> = self
            .roster
            .iter()
            .filter(|p| {
                **p != self.local
                    && self.connected.contains(p)
                    && !self.validator.is_excluded(p)
                    && !received.is_some_and(|m| m.contains_key(p))
                    && !announced.contains_key(&(round, **p))
            })
            .copied()
            .collect();
        for peer in missing {
            let tries = blind.entry((round, peer)).or_default();
            if *tries >= 3 {
                continue;
            }
            *tries += 1;
            let Some(sender) = crate::wire::ed25519_public_of(&peer) else {
                continue;
            };
            let req = PullRequest {
                round,
                sender,
                kind,
                payload_hash: None,
            };
            requests.push((peer, peer, req));
        }
        blind.retain(|(r, _), _| *r >= round);
        requests
    }

    /// Sends one pull request to `target`, remembering it under `key`.
    fn send_pull(&mut self, target: PeerId, key: PeerId, req: PullRequest) {
        if let Ok(bytes) = Message::Pull(req).encode() {
            self.bytes_sent += bytes.len() as u64;
            let id = self
                .swarm
                .behaviour_mut()
                .rr
                .send_request(&target, Bytes::from(bytes).into());
            self.pulls.insert(id, (self.round, key));
        }
    }
}

/// The most addresses remembered per peer.
const MAX_PEER_ADDRS: usize = 8;

/// Liveness probes in a row that must go unanswered before a peer's
/// connections count as dead. Two, so that one probe stuck behind a busy
/// moment does not cost a healthy connection.
const DEAD_AFTER_MISSES: u32 = 2;

/// How often each connected peer is probed: every half round timeout. A
/// probe misses when libp2p reports its timeout (one round timeout) or
/// when it is still unanswered after two, so a link that died (a cable
/// pulled, a partition) is noticed within about 3.5 round timeouts; the
/// connections are then closed and the peer redialled until the link is
/// back, where a stalled connection would wait for TCP's next
/// retransmission, which backs off to tens of seconds.
fn probe_period(round_timeout: Duration) -> Duration {
    (round_timeout / 2).max(Duration::from_millis(50))
}

/// Adds `addr` to `peer`'s known addresses (moved to the end if known),
/// dropping the oldest beyond [`MAX_PEER_ADDRS`].
fn remember(book: &mut HashMap<PeerId, Vec<Multiaddr>>, peer: PeerId, addr: Multiaddr) {
    let addrs = book.entry(peer).or_default();
    addrs.retain(|a| *a != addr);
    addrs.push(addr);
    if addrs.len() > MAX_PEER_ADDRS {
        addrs.remove(0);
    }
}

async fn recv_opt<T>(
    rx: &mut Option<oneshot::Receiver<T>>,
) -> Result<T, oneshot::error::RecvError> {
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
