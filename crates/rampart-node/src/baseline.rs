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

use crate::codec::{Frame, FrameCodec};
use crate::harness::{HarnessError, TestNet};

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
    if frame.len() < 8 || n < 2 {
        return Err(HarnessError::Baseline(
            "need n >= 2 and a frame of 8 bytes or more".into(),
        ));
    }
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
}

type Done = (usize, Result<(Vec<Duration>, u64), HarnessError>);

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
        let mut reported = false;
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
                        *received.entry(u64::from_le_bytes(r)).or_default() += 1;
                        bytes += 1;
                        let _ = self.swarm.behaviour_mut().send_response(channel, Bytes::from_static(&[0]));
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. })
                        if !reported =>
                    {
                        reported = true;
                        let _ = done
                            .send((self.index, Err(HarnessError::Baseline(error.to_string()))))
                            .await;
                    }
                    _ => {}
                },
                Ok(()) = go.changed(), if !started => {
                    started = true;
                    start = Instant::now();
                    bytes += self.push(round);
                }
                Ok(()) = stop.changed() => break,
            }
            while started
                && round < self.rounds
                && received.get(&(round as u64)).copied().unwrap_or(0) >= n - 1
            {
                lat.push(start.elapsed());
                received.remove(&(round as u64));
                round += 1;
                if round < self.rounds {
                    start = Instant::now();
                    bytes += self.push(round);
                } else if !reported {
                    reported = true;
                    let per_round = bytes / self.rounds as u64;
                    let _ = done
                        .send((self.index, Ok((std::mem::take(&mut lat), per_round))))
                        .await;
                }
            }
        }
    }

    /// Pushes this round's frame to every peer (the round's frame built
    /// once and shared by the pushes, as a node does); returns the bytes
    /// handed to libp2p.
    fn push(&mut self, round: usize) -> u64 {
        self.frame[..8].copy_from_slice(&(round as u64).to_le_bytes());
        let frame = Bytes::copy_from_slice(&self.frame);
        let peers: Vec<PeerId> = self.peers.iter().map(|(p, _)| *p).collect();
        for p in &peers {
            self.swarm
                .behaviour_mut()
                .send_request(p, frame.clone().into());
        }
        (self.frame.len() * peers.len()) as u64
    }
}
