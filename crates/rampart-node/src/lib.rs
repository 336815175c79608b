//! The Rampart node: wire format, validation, libp2p swarm and the round
//! protocol of a Byzantine-robust peer-to-peer learning job.
//!
//! # Design
//!
//! * **Actor and handle.** [`NodeHandle::spawn`] starts a private actor that
//!   owns the libp2p swarm, the validator and the round state, and a
//!   dedicated thread that owns the [`Trainer`]: gradients and aggregation
//!   never run on the async executor. The handle is `Clone`; the node stops
//!   when the last handle drops or on [`NodeHandle::shutdown`].
//! * **Round protocol** (`docs/protocol.md`): each node signs a header for
//!   its gradient, gossips the header and pushes the payload directly to
//!   every roster peer; missing payloads are pulled by hash. A round closes
//!   when every non-excluded member's input arrived, or at the timeout with a
//!   quorum of n − f; inputs are sorted by sender PeerId and aggregated with
//!   the configured rule ([`aggregate_inputs`]).
//! * **Wire format** ([`Message`]): a version byte, a small bincode envelope
//!   decoded under a hard limit, then raw payload bytes. Headers are signed
//!   with the sender's Ed25519 libp2p key; payloads are content-addressed by
//!   the signed BLAKE3 hash.
//! * **Validation in one place**: every input gets a [`Verdict`]
//!   (accept / ignore / reject) with a [`Reason`], counted in [`Counters`].
//!   Two validly signed headers of one sender for one round with different
//!   hashes are an [`EquivocationProof`]; the sender is excluded.
//! * **Only the roster**: the swarm's allow list holds exactly the roster's
//!   PeerIds, so other peers' connections are denied after the handshake.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod adversary;
#[cfg(any(test, feature = "test-utils"))]
pub mod baseline;
// Only the test trainer writes its own checkpoint files; `Learner` uses
// rampart-learn's writer.
#[cfg(any(test, feature = "test-utils"))]
mod checkpoint;
mod codec;
mod config;
mod event;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(any(test, feature = "test-utils"))]
mod harness;
mod node;
mod round;
mod signed;
mod swarm;
mod trainer;
mod validate;
mod wire;

pub use adversary::{Attack, FUTURE_ROUNDS, ValueAttack};
pub use config::{CHECKPOINT_FILE, ConfigError, NodeConfig, NodeConfigBuilder};
pub use config::{job_id, job_id_for};
pub use event::{Event, RoundTimings, Status};
#[cfg(any(test, feature = "test-utils"))]
pub use harness::{
    HarnessError, Rejoin, TestNet, follow_to_end, last_rounds, node_dirs, round_completed,
    spawn_and_dial, wait_for,
};
pub use node::{NodeError, NodeHandle};
pub use round::{aggregate_inputs, drift_step, effective_rule, quorum};
pub use swarm::SwarmError;
#[cfg(any(test, feature = "test-utils"))]
pub use trainer::LinearRegression;
pub use trainer::{Trainer, TrainerError};
pub use validate::{Counters, NonFinitePolicy, Reason, Verdict};
pub use wire::{
    ENVELOPE_LIMIT, Encoding, EquivocationProof, Header, JobId, Message, PAYLOAD_ALIGN,
    PayloadKind, PullRequest, SignError, Signature, SignedHeader, SignedPayload, WIRE_VERSION,
    WireError, bf16_bits, bf16_value, ed25519_public, ed25519_public_of, f32_from_le, f32_to_le,
    payload_hash, quantize,
};
