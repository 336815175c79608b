//! Protocol-level Byzantine behaviours for tests and testnets (feature
//! `test-utils`): what a faulty roster member sends instead of its honest
//! header and payload. Value attacks (sign flip, ALIE, …) belong to
//! `rampart-attack`; these are the attacks on the protocol itself.

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
}

/// The frames a node sends for its round: a gossip message and one push per
/// parity of the target's roster position.
pub(crate) struct Plan {
    pub(crate) gossip: Option<Vec<u8>>,
    pub(crate) push: [Option<Vec<u8>>; 2],
}

fn frames(p: &SignedPayload) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        Message::Header(p.header.clone()).encode().ok(),
        Message::Push(p.clone()).encode().ok(),
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

/// The plan of `attack` for a round whose honest payload is `honest_payload`
/// (values `grad`); `previous` is the last payload the node sent honestly.
pub(crate) fn forge(
    attack: Attack,
    keypair: &Keypair,
    job: JobId,
    honest_payload: &SignedPayload,
    grad: &[f32],
    previous: Option<&SignedPayload>,
) -> Result<Plan, SignError> {
    let round = honest_payload.header.header.round;
    let sign =
        |values: &[f32]| SignedPayload::new_f32(keypair, job, round, PayloadKind::Gradient, values);
    Ok(match attack {
        Attack::Honest => honest(honest_payload),
        Attack::Silent => Plan {
            gossip: None,
            push: [None, None],
        },
        Attack::Garbage => {
            let mut junk = vec![WIRE_VERSION];
            junk.extend((0..63u8).map(|i| i.wrapping_mul(37) ^ 0xa5));
            Plan {
                gossip: Some(junk.clone()),
                push: [Some(junk.clone()), Some(junk)],
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
        Attack::Equivocate => {
            let other: Vec<f32> = grad.iter().map(|x| x * 2.0 + 1.0).collect();
            let b = sign(&other)?;
            let (gossip, push_a) = frames(honest_payload);
            let (_, push_b) = frames(&b);
            Plan {
                gossip,
                push: [push_a, push_b],
            }
        }
    })
}
