//! Byzantine behaviours for tests and testnets: what a faulty roster member
//! sends instead of its honest header and payload.
//!
//! * Protocol attacks ([`Attack`]): silence, garbage bytes, wrong dimension,
//!   non-finite values, replays, equivocation, late sends.
//! * Value attacks ([`ValueAttack`]): the formulas of `rampart-attack` (sign
//!   flip, IPM, ALIE, …) applied to the honest gradients of the round that
//!   actually reached the node over the network. Such a node does not send
//!   at the start of the round: it waits for the other members' inputs, forges
//!   its vector from them and only then signs and sends it.

use std::time::Duration;

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::wire::{JobId, Message, PayloadKind, SignError, SignedPayload, WIRE_VERSION};

/// What a Byzantine node does in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Attack {
    /// Behaves honestly.
    Honest,
    /// Sends nothing.
    Silent,
    /// Sends bytes that do not decode, on gossip and as pushes.
    Garbage,
    /// Sends a validly signed gradient of dimension d + 1.
    WrongDimension,
    /// Sends a validly signed gradient holding NaN.
    NonFinite,
    /// Re-sends the last payload it sent honestly (an older round) instead of
    /// this round's; nothing if it never sent one.
    Replay,
    /// Signs two different payloads for the round: one to the roster peers
    /// at even positions (and on gossip), the other to the odd ones.
    Equivocate,
    /// Sends its honest header and payload `ms` milliseconds after computing
    /// them (within or beyond the round timeout).
    Delay {
        /// The delay in milliseconds.
        ms: u64,
    },
    /// Sends its gradient under another roster member's name (the next one
    /// in PeerId order): the header names that member as the sender but
    /// carries this node's signature.
    Impersonate,
    /// Gossips its validly signed header but pushes payload bytes changed
    /// after signing, so that they no longer match the header's hash.
    Tamper,
    /// Sends a validly signed gradient for a round [`FUTURE_ROUNDS`] ahead
    /// of the current one.
    FutureRound,
    /// Sends a validly signed gradient of another job (its job id with one
    /// bit flipped).
    WrongJob,
    /// Pushes a frame [`ENVELOPE_LIMIT`](crate::ENVELOPE_LIMIT) + 1 bytes
    /// longer than its honest push, over the peers' default frame limit.
    /// The node's own limit must allow it
    /// ([`NodeConfigBuilder::max_frame`](crate::NodeConfigBuilder::max_frame)),
    /// or the frame never leaves.
    Oversize,
}

/// How far ahead [`Attack::FutureRound`] dates its gradient.
pub const FUTURE_ROUNDS: u64 = 1000;

/// A value attack played from the honest inputs that reach the node
/// ([`crate::NodeConfigBuilder::value_attack`]).
///
/// In each round the node computes its own gradient as usual (so its
/// trainer's state advances like an honest one's) but sends nothing; it
/// collects the round's inputs of the other members that are not
/// `colluders` and not excluded ("the honest inputs"), and once it holds
/// `ceil(wait_fraction · expected)` of them, or at `margin` before its round
/// timeout, it forges its vector with `rampart-attack` from those it holds
/// (in sender PeerId order, the order of aggregation) and sends it like any
/// input. With no honest input at the deadline it forges from its own
/// gradient. Colluders each forge from what reached them.
///
/// ```
/// use rampart_node::ValueAttack;
/// let a = ValueAttack::new(rampart_attack::Attack::Ipm { tau: 2.0 });
/// assert_eq!(a.wait_fraction, 1.0);
/// assert!(a.colluders.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ValueAttack {
    /// The formula.
    pub attack: rampart_attack::Attack,
    /// The other Byzantine members: their inputs are neither waited for
    /// nor used.
    pub colluders: Vec<PeerId>,
    /// Fraction of the expected honest inputs to wait for, in (0, 1].
    pub wait_fraction: f64,
    /// Send at the latest this long before the round timeout (`None`: a
    /// quarter of the timeout).
    pub margin: Option<Duration>,
    /// The declared f given to the formula (ALIE's z_max); `None`: the
    /// rule's f.
    pub f: Option<usize>,
    /// Seed of randomised attacks (Gaussian), mixed with the round.
    pub seed: u64,
}

impl ValueAttack {
    /// `attack`, waiting for every honest input, no colluders, seed 0.
    pub fn new(attack: rampart_attack::Attack) -> Self {
        Self {
            attack,
            colluders: Vec::new(),
            wait_fraction: 1.0,
            margin: None,
            f: None,
            seed: 0,
        }
    }

    /// The seed of round `round`'s randomised attack.
    pub fn round_seed(&self, round: u64) -> u64 {
        self.seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The frames a node sends for its round: a gossip message and one push per
/// parity of the target's roster position.
pub(crate) struct Plan {
    pub(crate) gossip: Option<Vec<u8>>,
    pub(crate) push: [Option<Bytes>; 2],
}

fn frames(p: &SignedPayload) -> (Option<Vec<u8>>, Option<Bytes>) {
    (
        Message::Header(p.header.clone()).encode().ok(),
        Message::Push(p.clone()).encode().ok().map(Bytes::from),
    )
}

/// The honest plan for `payload`.
pub(crate) fn honest(payload: &SignedPayload) -> Plan {
    let (gossip, push) = frames(payload);
    Plan {
        gossip,
        push: [push.clone(), push],
    }
}

/// The honest plan for `payload` whose push frame is already built.
pub(crate) fn honest_framed(payload: &SignedPayload, push: &Bytes) -> Plan {
    Plan {
        gossip: Message::Header(payload.header.clone()).encode().ok(),
        push: [Some(push.clone()), Some(push.clone())],
    }
}

/// The plan of `attack` for a round whose honest payload is `honest_payload`
/// (values `grad`, push frame `honest_push`); `previous` is the last payload
/// the node sent honestly, `victim` the Ed25519 key of the member an
/// impersonator names as the sender.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forge(
    attack: Attack,
    keypair: &Keypair,
    job: JobId,
    honest_payload: &SignedPayload,
    honest_push: &Bytes,
    grad: &[f32],
    previous: Option<&SignedPayload>,
    victim: Option<[u8; 32]>,
) -> Result<Plan, SignError> {
    let round = honest_payload.header.header.round;
    let sign =
        |values: &[f32]| SignedPayload::new_f32(keypair, job, round, PayloadKind::Gradient, values);
    Ok(match attack {
        Attack::Honest | Attack::Delay { .. } => honest_framed(honest_payload, honest_push),
        Attack::Silent => Plan {
            gossip: None,
            push: [None, None],
        },
        Attack::Garbage => {
            let mut junk = vec![WIRE_VERSION];
            junk.extend((0..63u8).map(|i| i.wrapping_mul(37) ^ 0xa5));
            let push = Bytes::from(junk.clone());
            Plan {
                gossip: Some(junk),
                push: [Some(push.clone()), Some(push)],
            }
        }
        Attack::WrongDimension => {
            let mut v = grad.to_vec();
            v.push(0.0);
            honest(&sign(&v)?)
        }
        Attack::NonFinite => {
            let mut v = grad.to_vec();
            if let Some(x) = v.first_mut() {
                *x = f32::NAN;
            }
            honest(&sign(&v)?)
        }
        Attack::Replay => match previous {
            Some(p) => honest(p),
            None => Plan {
                gossip: None,
                push: [None, None],
            },
        },
        Attack::Impersonate => match victim {
            Some(victim) => {
                let mut header = honest_payload.header.clone();
                header.header.sender = victim;
                honest(&SignedPayload {
                    header,
                    payload: honest_payload.payload.clone(),
                })
            }
            None => Plan {
                gossip: None,
                push: [None, None],
            },
        },
        Attack::Tamper => {
            let mut bytes = honest_payload.payload.to_vec();
            if let Some(b) = bytes.first_mut() {
                *b ^= 0x40;
            }
            let (_, push) = frames(&SignedPayload {
                header: honest_payload.header.clone(),
                payload: Bytes::from(bytes),
            });
            Plan {
                gossip: Message::Header(honest_payload.header.clone()).encode().ok(),
                push: [push.clone(), push],
            }
        }
        Attack::WrongJob => {
            let mut other = job;
            other.0[0] ^= 1;
            honest(&SignedPayload::new_f32(
                keypair,
                other,
                round,
                PayloadKind::Gradient,
                grad,
            )?)
        }
        Attack::Oversize => {
            let mut frame = honest_push.to_vec();
            frame.resize(frame.len() + crate::wire::ENVELOPE_LIMIT + 1, 0);
            let push = Bytes::from(frame);
            Plan {
                gossip: None,
                push: [Some(push.clone()), Some(push)],
            }
        }
        Attack::FutureRound => honest(&SignedPayload::new_f32(
            keypair,
            job,
            round.saturating_add(FUTURE_ROUNDS),
            PayloadKind::Gradient,
            grad,
        )?),
        Attack::Equivocate => {
            let other: Vec<f32> = grad.iter().map(|x| x * 2.0 + 1.0).collect();
            let b = sign(&other)?;
            let (_, push_b) = frames(&b);
            Plan {
                gossip: Message::Header(honest_payload.header.clone()).encode().ok(),
                push: [Some(honest_push.clone()), push_b],
            }
        }
    })
}
