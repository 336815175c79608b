//! The dissemination baseline of the benchmarks (feature `test-utils`): a
//! plain direct push of the same frames over the same kind of libp2p
//! transport as a node (TCP with `nodelay`, Noise, Yamux, request-response
//! with the node's length-prefixed frame codec), with no protocol logic —
//! no gossip, no identify, no signatures, hashes, validation, trainer or
//! aggregation.
//!
//! N swarms on 127.0.0.1 run in lockstep like nodes do: in each round every
//! swarm pushes its frame to every other (one buffer shared by the pushes,
//! as a node does, each answered by a one-byte ack) and its round ends when
//! it has received the n − 1 frames of that round; then it starts the next
//! one.
//!
//! [`push_rounds_with`] can also give each swarm a trainer: its rounds then
//! do, around the same pushes, the work that no Byzantine-robust node can
//! skip, with the node's own code — compute the gradient, hash it and copy
//! it into the frame; hash and check every payload received (a node must
//! tie each payload to its signed header); average the n gradients and
//! apply the average. Still no gossip, signatures, validation or
//! bookkeeping: a lower bound on a node's round, measured on the same
//! machine in the same run.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, request_response, tcp, yamux,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use rampart_gar::{Aggregate, Rule};

use crate::codec::{Frame, FrameCodec};
use crate::harness::{HarnessError, TestNet};
use crate::trainer::Trainer;
use crate::wire::{Values, hash_and_decode_f32, payload_hash};

type Rr = request_response::Behaviour<FrameCodec>;

fn swarm(i: usize, max_frame: usize, timeout: Duration) -> Result<Swarm<Rr>, HarnessError> {
    let err = |e: String| HarnessError::Baseline(e);
    Ok(SwarmBuilder::with_existing_identity(TestNet::key(i))
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| err(e.to_string()))?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                FrameCodec::new(max_frame),
                [(
                    StreamProtocol::new("/rampart-baseline/1"),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default().with_request_timeout(timeout),
            )
        })
        .map_err(|e| err(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build())
}

/// Runs `rounds` lockstep rounds of `n` swarms each pushing `frame` (its
/// first 8 bytes are overwritten with the round number) to every other.
/// Returns, per swarm, the duration of each round (from the start of its
/// pushes to the arrival of the round's last frame) and the bytes it handed
/// to libp2p per round (frames and acks).
pub async fn push_rounds(
    n: usize,
    frame: &[u8],
    rounds: usize,
    timeout: Duration,
) -> Result<Vec<(Vec<Duration>, u64)>, HarnessError> {
    push_rounds_with(n, frame, rounds, timeout, Vec::new()).await
}

/// [`push_rounds`] where swarm `i` also drives `trainers[i]` (none: the
/// plain push). Each round it computes the trainer's gradient, hashes it and
/// copies it into the last `dim · 4` bytes of its frame (the payload of a
/// node's push frame); hashes and checks the payload of each frame it
/// receives; and when the round's n − 1 frames are in, averages the n
/// gradients with [`Rule::Average`] and applies the average. Round
/// durations then include the gradient, from the start of the round.
pub async fn push_rounds_with(
    n: usize,
    frame: &[u8],
    rounds: usize,
    timeout: Duration,
    trainers: Vec<Box<dyn Trainer>>,
) -> Result<Vec<(Vec<Duration>, u64)>, HarnessError> {
    if frame.len() < 8 || n < 2 {
        return Err(HarnessError::Baseline(
            "need n >= 2 and a frame of 8 bytes or more".into(),
        ));
    }
    if !trainers.is_empty()
        && (trainers.len() != n
            || trainers
                .iter()
                .any(|t| t.dim().saturating_mul(4).saturating_add(8) > frame.len()))
    {
        return Err(HarnessError::Baseline(
            "need one trainer per swarm, each with dim · 4 + 8 bytes of frame or fewer".into(),
        ));
    }
    let mut trainers = trainers.into_iter();
    let roster = TestNet::roster(n);
    let mut swarms = Vec::with_capacity(n);
    let mut addrs: Vec<Multiaddr> = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = swarm(i, frame.len() + 64, timeout)?;
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0"
            .parse()
            .map_err(|_| HarnessError::Closed)?;
        s.listen_on(listen)
            .map_err(|e| HarnessError::Baseline(e.to_string()))?;
        let addr = tokio::time::timeout(timeout, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .map_err(|_| HarnessError::Timeout(timeout))?;
        addrs.push(addr);
        swarms.push(s);
    }
    let (ready_tx, mut ready_rx) = mpsc::channel(n);
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel(n);
    for (i, s) in swarms.into_iter().enumerate() {
        let peers: Vec<(PeerId, Multiaddr)> = (0..n)
            .filter(|j| *j != i)
            .map(|j| (roster[j], addrs[j].clone()))
            .collect();
        let task = Lockstep {
            swarm: s,
            index: i,
            peers,
            frame: frame.to_vec(),
            rounds,
            work: trainers.next().map(|trainer| Work {
                trainer,
                own: Vec::new(),
                inputs: HashMap::new(),
            }),
        };
        tokio::spawn(task.run(
            ready_tx.clone(),
            go_rx.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        ));
    }
    let wait = |what: &'static str| HarnessError::Baseline(format!("a swarm stopped {what}"));
    tokio::time::timeout(timeout, async {
        for _ in 0..n {
            ready_rx.recv().await.ok_or_else(|| wait("connecting"))?;
        }
        Ok::<_, HarnessError>(())
    })
    .await
    .map_err(|_| HarnessError::Timeout(timeout))??;
    let _ = go_tx.send(true);
    let mut out: Vec<Option<(Vec<Duration>, u64)>> = vec![None; n];
    tokio::time::timeout(timeout, async {
        for _ in 0..n {
            let (i, r) = done_rx.recv().await.ok_or_else(|| wait("running"))?;
            out[i] = Some(r?);
        }
        Ok::<_, HarnessError>(())
    })
    .await
    .map_err(|_| HarnessError::Timeout(timeout))??;
    let _ = stop_tx.send(true);
    Ok(out.into_iter().flatten().collect())
}

struct Lockstep {
    swarm: Swarm<Rr>,
    index: usize,
    peers: Vec<(PeerId, Multiaddr)>,
    frame: Vec<u8>,
    rounds: usize,
    work: Option<Work>,
}

/// A swarm's node work ([`push_rounds_with`]).
struct Work {
    trainer: Box<dyn Trainer>,
    /// This round's own gradient.
    own: Vec<f32>,
    /// Checked payloads received, per round.
    inputs: HashMap<u64, Vec<Values>>,
}

impl Work {
    /// Hashes and checks the payload of a received frame, and keeps it.
    fn receive(&mut self, round: u64, frame: &Bytes) -> Result<(), HarnessError> {
        let len = self.trainer.dim() * 4;
        let payload = frame.slice(frame.len().saturating_sub(len)..);
        let decoded = hash_and_decode_f32(&payload);
        std::hint::black_box(decoded.hash);
        match decoded.values {
            Some((values, true)) if values.len() * 4 == len => {
                self.inputs.entry(round).or_default().push(values);
                Ok(())
            }
            _ => Err(HarnessError::Baseline(
                "a payload of the wrong size or not finite".into(),
            )),
        }
    }

    /// Averages the round's gradients and applies the average.
    fn finish(&mut self, round: u64) -> Result<(), HarnessError> {
        let fail = |e: String| HarnessError::Baseline(e);
        let inputs = self.inputs.remove(&round).unwrap_or_default();
        let mut rows: Vec<&[f32]> = Vec::with_capacity(inputs.len() + 1);
        rows.push(&self.own);
        rows.extend(inputs.iter().map(|v| &**v));
        let avg = Aggregate::<f32>::aggregate(&Rule::Average, &rows)
            .map_err(|e| fail(e.to_string()))?
            .output;
        self.trainer
            .apply(&avg, round)
            .map_err(|e| fail(e.to_string()))
    }
}

type Done = (usize, Result<(Vec<Duration>, u64), HarnessError>);

/// A swarm's one result for the caller: the first sent is the one kept.
struct Reporter {
    done: mpsc::Sender<Done>,
    index: usize,
    sent: bool,
}

impl Reporter {
    async fn send(&mut self, r: Result<(Vec<Duration>, u64), HarnessError>) {
        if !self.sent {
            self.sent = true;
            let _ = self.done.send((self.index, r)).await;
        }
    }
}

impl Lockstep {
    async fn run(
        mut self,
        ready: mpsc::Sender<()>,
        mut go: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
        done: mpsc::Sender<Done>,
    ) {
        let n = self.peers.len() + 1;
        // Each pair connects once: the higher index dials.
        for (j, (peer, addr)) in self.peers.iter().enumerate() {
            let j = if j >= self.index { j + 1 } else { j };
            if j < self.index {
                self.swarm.add_peer_address(*peer, addr.clone());
                let _ = self.swarm.dial(*peer);
            }
        }
        let mut connected = 0usize;
        let mut started = false;
        let mut round = 0usize;
        let mut start = Instant::now();
        let mut received: HashMap<u64, usize> = HashMap::new();
        let mut lat = Vec::with_capacity(self.rounds);
        let mut bytes = 0u64;
        let mut report = Reporter {
            done,
            index: self.index,
            sent: false,
        };
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => match ev {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        connected += 1;
                        if connected == n - 1 {
                            let _ = ready.send(()).await;
                        }
                    }
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) => {
                        let Frame::Bytes(request) = request else {
                            continue;
                        };
                        let mut r = [0u8; 8];
                        r.copy_from_slice(&request[..8]);
                        let r = u64::from_le_bytes(r);
                        if let Some(w) = &mut self.work
                            && let Err(e) = w.receive(r, &request)
                        {
                            report.send(Err(e)).await;
                        }
                        *received.entry(r).or_default() += 1;
                        bytes += 1;
                        let _ = self.swarm.behaviour_mut().send_response(channel, Bytes::from_static(&[0]));
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                        report.send(Err(HarnessError::Baseline(error.to_string()))).await;
                    }
                    _ => {}
                },
                Ok(()) = go.changed(), if !started => {
                    started = true;
                    start = Instant::now();
                    match self.push(round) {
                        Ok(b) => bytes += b,
                        Err(e) => {
                            round = self.rounds;
                            report.send(Err(e)).await;
                        }
                    }
                }
                Ok(()) = stop.changed() => break,
            }
            while started
                && round < self.rounds
                && received.get(&(round as u64)).copied().unwrap_or(0) >= n - 1
            {
                let finished = match &mut self.work {
                    Some(w) => w.finish(round as u64),
                    None => Ok(()),
                };
                lat.push(start.elapsed());
                received.remove(&(round as u64));
                round += 1;
                let pushed = finished.and_then(|()| {
                    if round < self.rounds {
                        start = Instant::now();
                        self.push(round)
                    } else {
                        Ok(0)
                    }
                });
                match pushed {
                    Ok(b) => bytes += b,
                    Err(e) => {
                        // This swarm stops; the caller gets the error.
                        report.send(Err(e)).await;
                        round = self.rounds;
                    }
                }
                if round >= self.rounds {
                    let per_round = bytes / self.rounds as u64;
                    report.send(Ok((std::mem::take(&mut lat), per_round))).await;
                }
            }
        }
    }

    /// Pushes this round's frame to every peer (the round's frame built
    /// once and shared by the pushes, as a node does); returns the bytes
    /// handed to libp2p. With a trainer, the frame's payload is this
    /// round's gradient, hashed, as a node's is.
    fn push(&mut self, round: usize) -> Result<u64, HarnessError> {
        self.frame[..8].copy_from_slice(&(round as u64).to_le_bytes());
        let frame = match &mut self.work {
            None => Bytes::copy_from_slice(&self.frame),
            Some(w) => {
                let (_, g) = w
                    .trainer
                    .gradient(round as u64)
                    .map_err(|e| HarnessError::Baseline(e.to_string()))?;
                if g.len() != w.trainer.dim() {
                    return Err(HarnessError::Baseline(format!(
                        "a gradient of {} values from a trainer of dimension {}",
                        g.len(),
                        w.trainer.dim()
                    )));
                }
                let payload: &[u8] = bytemuck::cast_slice(&g);
                std::hint::black_box(payload_hash(payload));
                let head = &self.frame[..self.frame.len() - payload.len()];
                let mut f = Vec::with_capacity(self.frame.len());
                f.extend_from_slice(head);
                f.extend_from_slice(payload);
                w.own = g;
                Bytes::from(f)
            }
        };
        let peers: Vec<PeerId> = self.peers.iter().map(|(p, _)| *p).collect();
        for p in &peers {
            self.swarm
                .behaviour_mut()
                .send_request(p, frame.clone().into());
        }
        Ok((self.frame.len() * peers.len()) as u64)
    }
}
