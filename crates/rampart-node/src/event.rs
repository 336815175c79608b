//! Events a node broadcasts to its subscribers (the CLI writes them as JSON
//! lines) and the status it reports on request.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::validate::{Counters, Reason};
use crate::wire::EquivocationProof;

/// Where the time of one round went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundTimings {
    /// Computing the local gradient.
    pub compute: Duration,
    /// From the local gradient to the last input used (or the timeout).
    pub collect: Duration,
    /// Aggregating and applying the update.
    pub aggregate: Duration,
    /// The drift-control step after the round (exchanging models and taking
    /// their median); zero in rounds without one.
    #[serde(default)]
    pub drift: Duration,
    /// The whole round.
    pub total: Duration,
}

/// Something that happened at a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The node listens on `addr`.
    Listening {
        /// A listen address, with `/p2p/<id>` not appended.
        addr: Multiaddr,
    },
    /// The node is connected to enough of the roster and starts round 0.
    Started {
        /// Roster peers connected at start.
        connected: usize,
    },
    /// A round was aggregated and applied.
    RoundCompleted {
        /// The round.
        round: u64,
        /// The local mini-batch loss, if the trainer reports one.
        loss: Option<f32>,
        /// Inputs aggregated (the node's own included).
        accepted: usize,
        /// Inputs refused with a rejecting reason during the round.
        rejected: u64,
        /// Peers excluded so far.
        excluded: Vec<PeerId>,
        /// Where the time went.
        timings: RoundTimings,
        /// Set in rounds followed by a drift-control step: the spread of the
        /// models that step received, before it replaced this node's model
        /// by their median — the largest L2 distance between two of the
        /// m − f models closest to the median, out of the m received
        /// ([`crate::drift_step`]). It estimates the largest distance
        /// between honest models without knowing which are honest: the f
        /// farthest models (where a Byzantine one would be) are left out.
        /// `None` in other rounds, and when the step lacked a quorum.
        honest_spread: Option<f64>,
        /// Application bytes this node handed to libp2p during the round
        /// (pushes, gossip, pulls and answers; without Noise/Yamux/TCP
        /// overhead). The dissemination bound is (n − 1) · d · 4.
        bytes_sent: u64,
    },
    /// A roster member was excluded for equivocating.
    PeerExcluded {
        /// The equivocating member.
        peer: PeerId,
        /// The two signed headers.
        evidence: Box<EquivocationProof>,
    },
    /// An input from `peer` was refused with a rejecting reason.
    InputRejected {
        /// The peer that sent it (the connection's remote, not a claimed
        /// sender).
        peer: PeerId,
        /// Why.
        reason: Reason,
    },
    /// An inbound connection from a peer outside the roster was denied.
    ConnectionDenied {
        /// The peer (authenticated by the transport handshake).
        peer: PeerId,
    },
    /// A roster member closed a connection right after the handshake,
    /// before identifying itself: most likely its roster does not list this
    /// node (the member's end emits `ConnectionDenied`). Emitted once per
    /// member, again only after it has identified itself in between.
    RefusedByPeer {
        /// The member.
        peer: PeerId,
    },
    /// A roster member runs another job (its roster file or version
    /// differs): nothing it sends can be accepted. Emitted once per peer,
    /// at both ends of the connection.
    JobMismatch {
        /// The member.
        peer: PeerId,
        /// The job id it announced (hex).
        theirs: String,
        /// This node's job id (hex).
        ours: String,
    },
    /// The node resumed from its checkpoint.
    Resumed {
        /// Rounds done according to the checkpoint.
        round: u64,
    },
    /// A resumed node took the coordinate-wise median of its peers' models.
    CaughtUp {
        /// The round it joins.
        round: u64,
        /// Peer models the median was taken over.
        answers: usize,
    },
    /// Testnets: a value attacker forged and sent its input of `round`.
    Forged {
        /// The round.
        round: u64,
        /// The honest inputs it was forged from, in PeerId order (empty: it
        /// had none by its deadline and forged from its own gradient).
        from: Vec<PeerId>,
        /// The signed hash of the forged payload.
        payload_hash: [u8; 32],
    },
    /// Training was paused ([`crate::NodeHandle::pause`]) before `round`.
    Paused {
        /// The round the node will resume from (before catching up).
        round: u64,
    },
    /// A paused node was resumed ([`crate::NodeHandle::resume`]); it catches
    /// up with its peers, then trains again.
    Unpaused {
        /// The round it was paused at.
        round: u64,
    },
    /// The node finished its rounds.
    Finished {
        /// Rounds completed.
        rounds: u64,
    },
    /// The node stopped on an error (the trainer failed, the rule refused
    /// its inputs).
    Failed {
        /// The error, as text.
        error: String,
    },
}

/// A snapshot of a node, answered by [`crate::NodeHandle::status`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// This node.
    pub peer: PeerId,
    /// The round in progress (or the number of rounds done when finished).
    pub round: u64,
    /// Whether the node has finished.
    pub finished: bool,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Roster peers currently connected.
    pub connected: Vec<PeerId>,
    /// Refusals per reason.
    pub counters: Counters,
    /// Excluded peers.
    pub excluded: Vec<PeerId>,
    /// Whether training is paused.
    #[serde(default)]
    pub paused: bool,
}
