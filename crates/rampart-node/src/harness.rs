//! In-process test network (feature `test-utils`): N nodes on 127.0.0.1,
//! TCP port 0, wired together by dialling the addresses each node reports.
//! Nothing sleeps: every wait is for an event, with a timeout.

use std::time::Duration;

use libp2p::identity::Keypair;
use std::net::Ipv4Addr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::broadcast;

use crate::config::{NodeConfig, NodeConfigBuilder};
use crate::event::Event;
use crate::node::{NodeError, NodeHandle};

/// Why the test network could not be set up or a wait failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A node could not be configured or started.
    #[error("node {index}: {source}")]
    Node {
        /// Index of the node.
        index: usize,
        /// Why.
        #[source]
        source: NodeError,
    },
    /// The awaited event did not come in time.
    #[error("timed out after {0:?} waiting for an event")]
    Timeout(Duration),
    /// The node's event stream ended.
    #[error("the event stream closed")]
    Closed,
    /// The plain-push baseline failed.
    #[error("baseline: {0}")]
    Baseline(String),
    /// The node reported `Failed`.
    #[error("the node failed: {0}")]
    Failed(String),
}

/// What a node that (re)joins a running job reported until it finished:
/// see [`follow_to_end`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rejoin {
    /// The round of its `Resumed` event (restart from a checkpoint).
    pub resumed: Option<u64>,
    /// The round of its `Unpaused` event.
    pub unpaused: Option<u64>,
    /// The round it joined and the number of models it took the median of.
    pub caught_up: Option<(u64, usize)>,
    /// The rounds it completed, in order.
    pub completed: Vec<u64>,
    /// The inputs it aggregated in each of those rounds.
    pub accepted: Vec<usize>,
    /// The round count of its `Finished` event.
    pub finished: u64,
}

/// Follows one node's events until `Finished`, collecting what a (re)joining
/// node reports; a `Failed` event is an error.
pub async fn follow_to_end(
    rx: &mut broadcast::Receiver<Event>,
    timeout: Duration,
) -> Result<Rejoin, HarnessError> {
    let mut seen = Rejoin::default();
    let mut failed = None;
    wait_for(rx, timeout, |ev| match ev {
        Event::Resumed { round } => {
            seen.resumed = Some(*round);
            None
        }
        Event::Unpaused { round } => {
            seen.unpaused = Some(*round);
            None
        }
        Event::CaughtUp { round, answers } => {
            seen.caught_up = Some((*round, *answers));
            None
        }
        Event::RoundCompleted {
            round, accepted, ..
        } => {
            seen.completed.push(*round);
            seen.accepted.push(*accepted);
            None
        }
        Event::Failed { error } => {
            failed = Some(error.clone());
            Some(())
        }
        Event::Finished { rounds } => {
            seen.finished = *rounds;
            Some(())
        }
        _ => None,
    })
    .await?;
    match failed {
        Some(e) => Err(HarnessError::Failed(e)),
        None => Ok(seen),
    }
}

/// Follows each node's events until `Finished` (skipping node `skip`, if
/// any) and returns the (round, accepted inputs) of each one's last
/// `RoundCompleted`; a `Failed` event is an error.
pub async fn last_rounds(
    events: &mut [broadcast::Receiver<Event>],
    skip: Option<usize>,
    timeout: Duration,
) -> Result<Vec<Option<(u64, usize)>>, HarnessError> {
    let mut out = Vec::with_capacity(events.len());
    for (i, rx) in events.iter_mut().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let mut last = None;
        let mut failed = None;
        wait_for(rx, timeout, |ev| match ev {
            Event::RoundCompleted {
                round, accepted, ..
            } => {
                last = Some((*round, *accepted));
                None
            }
            Event::Failed { error } => {
                failed = Some(format!("node {i}: {error}"));
                Some(())
            }
            Event::Finished { .. } => Some(()),
            _ => None,
        })
        .await?;
        if let Some(e) = failed {
            return Err(HarnessError::Failed(e));
        }
        out.push(last);
    }
    Ok(out)
}

/// Starts a node from `config` and has it dial each of `peers`.
pub async fn spawn_and_dial(
    config: NodeConfig,
    peers: impl IntoIterator<Item = (PeerId, Multiaddr)>,
) -> Result<(NodeHandle, broadcast::Receiver<Event>), NodeError> {
    let (handle, rx) = NodeHandle::spawn(config)?;
    for (peer, addr) in peers {
        handle.dial(peer, addr).await?;
    }
    Ok((handle, rx))
}

/// Creates one directory per node, `base/0` … `base/{n-1}` (checkpoint
/// directories of a test network).
pub fn node_dirs(base: &std::path::Path, n: usize) -> std::io::Result<Vec<std::path::PathBuf>> {
    (0..n)
        .map(|i| {
            let d = base.join(i.to_string());
            std::fs::create_dir_all(&d)?;
            Ok(d)
        })
        .collect()
}

/// Waits until the node of `rx` completes round `round` (at most
/// `timeout`); a `Failed` event ends the wait with
/// [`HarnessError::Failed`].
pub async fn round_completed(
    rx: &mut broadcast::Receiver<Event>,
    round: u64,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let mut failed = None;
    wait_for(rx, timeout, |ev| match ev {
        Event::RoundCompleted { round: r, .. } if *r == round => Some(()),
        Event::Failed { error } => {
            failed = Some(error.clone());
            Some(())
        }
        _ => None,
    })
    .await?;
    failed.map_or(Ok(()), |e| Err(HarnessError::Failed(e)))
}

/// Waits until `pick` returns `Some` for an event of `rx`, for at most
/// `timeout`. Lagging (missed events) is skipped over.
pub async fn wait_for<T>(
    rx: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T, HarnessError> {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return Ok(t);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(HarnessError::Closed),
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| HarnessError::Timeout(timeout))?
}

/// A running in-process network.
#[derive(Debug)]
pub struct TestNet {
    /// The nodes' keys, in index order.
    pub keys: Vec<Keypair>,
    /// The handles, in index order.
    pub handles: Vec<NodeHandle>,
    /// One subscription per node, opened before the node started.
    pub events: Vec<broadcast::Receiver<Event>>,
    /// Each node's first listen address.
    pub addrs: Vec<Multiaddr>,
}

impl TestNet {
    /// The deterministic key of node `i` of a test network.
    pub fn key(i: usize) -> Keypair {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        seed[31] = 0x5a;
        // An all-but-fixed 32-byte seed is always a valid Ed25519 secret.
        Keypair::ed25519_from_bytes(seed).unwrap_or_else(|_| Keypair::generate_ed25519())
    }

    /// The PeerIds of nodes `0..n`.
    pub fn roster(n: usize) -> Vec<PeerId> {
        (0..n).map(|i| Self::key(i).public().to_peer_id()).collect()
    }

    /// Node `i`'s builder in a network of `n`: its key, the roster of `n`
    /// and a 127.0.0.1 listen address on a free port.
    pub fn builder(n: usize, i: usize) -> NodeConfigBuilder {
        let listen = Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::LOCALHOST))
            .with(Protocol::Tcp(0));
        NodeConfig::builder()
            .keypair(Self::key(i))
            .roster(Self::roster(n))
            .listen(listen)
    }

    /// Starts `n` nodes. `configure(i, builder)` completes node i's builder
    /// ([`TestNet::builder`]). Waits (at most `timeout` per node) for every
    /// node to listen, then has every node dial every other.
    pub async fn start(
        n: usize,
        timeout: Duration,
        configure: impl FnMut(usize, NodeConfigBuilder) -> NodeConfigBuilder,
    ) -> Result<Self, HarnessError> {
        Self::start_first(n, n, timeout, configure).await
    }

    /// Starts nodes `0..started` of a roster of `n` (the others start later,
    /// with [`TestNet::spawn`]), as [`TestNet::start`] does.
    pub async fn start_first(
        n: usize,
        started: usize,
        timeout: Duration,
        mut configure: impl FnMut(usize, NodeConfigBuilder) -> NodeConfigBuilder,
    ) -> Result<Self, HarnessError> {
        let roster = Self::roster(n);
        let mut handles = Vec::with_capacity(started);
        let mut events = Vec::with_capacity(started);
        let mut addrs = Vec::with_capacity(started);
        for i in 0..started {
            let config =
                configure(i, Self::builder(n, i))
                    .build()
                    .map_err(|e| HarnessError::Node {
                        index: i,
                        source: e.into(),
                    })?;
            let (handle, mut rx) = NodeHandle::spawn(config)
                .map_err(|source| HarnessError::Node { index: i, source })?;
            let addr = wait_for(&mut rx, timeout, |ev| match ev {
                Event::Listening { addr } => Some(addr.clone()),
                _ => None,
            })
            .await?;
            handles.push(handle);
            events.push(rx);
            addrs.push(addr);
        }
        for (i, h) in handles.iter().enumerate() {
            for (j, addr) in addrs.iter().enumerate() {
                if i != j {
                    h.dial(roster[j], addr.clone())
                        .await
                        .map_err(|source| HarnessError::Node { index: i, source })?;
                }
            }
        }
        Ok(Self {
            keys: (0..started).map(Self::key).collect(),
            handles,
            events,
            addrs,
        })
    }

    /// Starts node `i` from `config` (a node started late, or restarted)
    /// and has it dial every other node this network started.
    pub async fn spawn(
        &self,
        i: usize,
        config: NodeConfig,
    ) -> Result<(NodeHandle, broadcast::Receiver<Event>), NodeError> {
        let peers = self
            .addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, addr)| (Self::key(j).public().to_peer_id(), addr.clone()));
        spawn_and_dial(config, peers).await
    }

    /// Waits until every node reports `Finished`; returns each node's
    /// `RoundCompleted` events in order.
    pub async fn run_to_end(&mut self, timeout: Duration) -> Result<Vec<Vec<Event>>, HarnessError> {
        let mut all = Vec::with_capacity(self.events.len());
        for rx in &mut self.events {
            let mut rounds = Vec::new();
            wait_for(rx, timeout, |ev| match ev {
                Event::Finished { .. } => Some(()),
                Event::RoundCompleted { .. } => {
                    rounds.push(ev.clone());
                    None
                }
                Event::Failed { .. } => {
                    rounds.push(ev.clone());
                    Some(())
                }
                _ => None,
            })
            .await?;
            all.push(rounds);
        }
        Ok(all)
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for h in &self.handles {
            let _ = h.shutdown().await;
        }
    }
}
