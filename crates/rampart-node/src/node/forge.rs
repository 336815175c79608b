//! The node side of the testnet behaviours that need the round's state: a
//! value attacker that forges from the honest inputs it received, late
//! sends, and the bookkeeping of peers that sent an invalid input for a
//! round (so a round does not wait for an input that cannot come).

use std::collections::VecDeque;

use libp2p::PeerId;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Actor, Input, Phase};
use crate::adversary::{self, Plan};
use crate::event::Event;
use crate::wire::{PayloadKind, SignedPayload};

/// An input held back by the delay attack.
pub(super) struct Delayed {
    at: Instant,
    round: u64,
    plan: Plan,
    input: Input,
}

impl Actor {
    /// A value attacker's gradient is ready: hold it and wait for the
    /// honest inputs of the round (see [`crate::ValueAttack`]).
    pub(super) fn start_forging(&mut self, own: Vec<f32>) {
        let margin = self
            .value_attack
            .as_ref()
            .and_then(|v| v.margin)
            .unwrap_or(self.round_timeout / 4);
        self.forging = Some(own);
        self.phase = Phase::Forging;
        self.deadline = Some(Instant::now() + self.round_timeout.saturating_sub(margin));
        self.try_forge(false);
    }

    /// The honest inputs a value attacker waits for: every roster member
    /// but itself, its colluders and the excluded.
    fn honest_peers(&self) -> Vec<PeerId> {
        let colluders = self
            .value_attack
            .as_ref()
            .map(|v| v.colluders.as_slice())
            .unwrap_or_default();
        self.roster
            .iter()
            .filter(|p| {
                **p != self.local && !colluders.contains(p) && !self.validator.is_excluded(p)
            })
            .copied()
            .collect()
    }

    /// Forges and sends once enough honest inputs arrived, or at the
    /// deadline with what arrived.
    pub(super) fn try_forge(&mut self, timed_out: bool) {
        if self.phase != Phase::Forging {
            return;
        }
        let Some(va) = self.value_attack.clone() else {
            return;
        };
        let honest = self.honest_peers();
        let received = self.inputs.get(&self.round);
        let from: Vec<PeerId> = honest
            .iter()
            .filter(|p| received.is_some_and(|m| m.contains_key(p)))
            .copied()
            .collect();
        let fraction = va.wait_fraction.clamp(f64::MIN_POSITIVE, 1.0);
        let need = (fraction * honest.len() as f64).ceil() as usize;
        if from.len() < need.min(honest.len()) && !timed_out {
            return;
        }
        let own = self.forging.take().unwrap_or_default();
        // `from` follows the roster's order, which is the PeerId order of
        // aggregation.
        let rows: Vec<&[f32]> = match received {
            Some(m) if !from.is_empty() => from
                .iter()
                .filter_map(|p| m.get(p).map(|i| &*i.values))
                .collect(),
            _ => vec![own.as_slice()],
        };
        let ctx = rampart_attack::ForgeContext {
            n: self.roster.len(),
            f: va.f.unwrap_or(self.f),
            seed: va.round_seed(self.round),
        };
        let values = match va.attack.forge(&rows, &ctx) {
            Ok(v) => v,
            Err(e) => {
                warn!(round = self.round, error = %e, "cannot forge; sending the own gradient");
                own.clone()
            }
        };
        if from.len() < honest.len() {
            debug!(
                round = self.round,
                received = from.len(),
                expected = honest.len(),
                "forging from part of the honest inputs"
            );
        }
        let (payload, push) = match SignedPayload::push(
            &self.keypair,
            self.job,
            self.round,
            PayloadKind::Gradient,
            &values,
            self.gradient_encoding,
        ) {
            Ok(p) => p,
            Err(e) => return self.fail(e.to_string()),
        };
        let values = crate::wire::quantize(&values, self.gradient_encoding);
        let _ = self.validator.header(&payload.header);
        self.emit(Event::Forged {
            round: self.round,
            from,
            payload_hash: payload.header.header.payload_hash,
        });
        self.send(adversary::honest_framed(&payload, &push));
        self.inputs.entry(self.round).or_default().insert(
            self.local,
            Input {
                payload,
                values: values.into(),
            },
        );
        self.phase = Phase::Collecting;
        self.deadline = Some(Instant::now() + self.round_timeout);
        self.check_complete(false);
    }

    /// Holds the round's `plan` and own `input` back for `ms` milliseconds
    /// (the delay attack): until then the node neither sends it nor
    /// answers pulls for it, and its own round waits for it like for any
    /// other input.
    pub(super) fn delay(&mut self, ms: u64, plan: Plan, input: Input) {
        let at = Instant::now() + std::time::Duration::from_millis(ms);
        let round = self.round;
        self.delayed.push_back(Delayed {
            at,
            round,
            plan,
            input,
        });
    }

    /// Sends the delayed inputs that are due.
    pub(super) fn send_delayed(&mut self) {
        let now = Instant::now();
        while self.delayed.front().is_some_and(|d| d.at <= now) {
            let Some(d) = self.delayed.pop_front() else {
                break;
            };
            self.send(d.plan);
            if d.round >= self.round {
                self.inputs
                    .entry(d.round)
                    .or_default()
                    .entry(self.local)
                    .or_insert(d.input);
                if d.round == self.round {
                    self.check_complete(false);
                }
            }
        }
    }

    /// When the next delayed input is due.
    pub(super) fn next_delayed(delayed: &VecDeque<Delayed>) -> Option<Instant> {
        delayed.front().map(|d| d.at)
    }

    /// Roster peer `peer` sent an input that was refused with a rejecting
    /// reason (undecodable bytes, bad signature, wrong dimension, …) on a
    /// direct push, so it is faulty: it counts as having answered round
    /// `round` (when the round is known), or else the first round from the
    /// current one it has not answered. A round then closes as soon as
    /// every expected peer has sent a valid input or such a refused one,
    /// instead of waiting for the timeout.
    ///
    /// A refused input whose round is unknown only says that the member
    /// spent one of its answers. Pushes of consecutive rounds can cross, so
    /// when the member's own answer for the round such a mark was placed on
    /// turns up later (a valid input, or a refused one that names the
    /// round, even after that round closed), the mark moves on to the
    /// member's next round not answered ([`Self::refloat`]), so that round
    /// does not wait for the timeout.
    pub(super) fn note_faulty(&mut self, peer: PeerId, round: Option<u64>) {
        if peer == self.local || !self.roster.contains(&peer) {
            return;
        }
        let current = self.round;
        self.faulty.retain(|r, _| *r >= current);
        // Marks of closed rounds are kept for as many rounds as a node
        // buffers ahead, the reach of a crossed push.
        let oldest = current.saturating_sub(self.max_ahead);
        self.floating.retain(|(r, _)| *r >= oldest);
        if let Some(r) = round
            && self.floating.remove(&(r, peer))
        {
            // This answer's place was held by an unknown-round refusal,
            // which belongs to a later round. (`faulty` already holds the
            // peer for r if r is still open.)
            self.note_faulty(peer, None);
            return;
        }
        let last = current + self.max_ahead;
        let round = match round {
            Some(r) if r >= current && r <= last => r,
            Some(_) => return,
            None => {
                let free = (current..=last).find(|r| {
                    !self.faulty.get(r).is_some_and(|s| s.contains(&peer))
                        && !self.inputs.get(r).is_some_and(|m| m.contains_key(&peer))
                });
                match free {
                    Some(r) => {
                        self.floating.insert((r, peer));
                        r
                    }
                    None => return,
                }
            }
        };
        self.faulty.entry(round).or_default().insert(peer);
        if round == current {
            self.check_complete(false);
        }
    }

    /// `peer`'s own answer for `round` arrived (a valid input, or a refused
    /// push that is not counted as faulty, such as one for a round already
    /// closed): a mark that an unknown-round refusal had placed on that
    /// round moves to the peer's next round not answered.
    pub(super) fn refloat(&mut self, peer: PeerId, round: u64) {
        if self.floating.remove(&(round, peer)) {
            self.note_faulty(peer, None);
        }
    }

    /// Peers that sent no valid input for the current round but a refused
    /// one, and are not excluded.
    pub(super) fn faulty_in_round(&self) -> usize {
        let have = self.inputs.get(&self.round);
        self.faulty.get(&self.round).map_or(0, |s| {
            s.iter()
                .filter(|p| {
                    !have.is_some_and(|m| m.contains_key(p)) && !self.validator.is_excluded(p)
                })
                .count()
        })
    }

    /// Expected peers of the current round that are not connected (a
    /// crashed member, for instance), sent no input and are not counted by
    /// [`Self::faulty_in_round`]: their input cannot arrive while they are
    /// away (payloads are pushed by their sender).
    pub(super) fn unreachable(&self) -> usize {
        let have = self.inputs.get(&self.round);
        let faulty = self.faulty.get(&self.round);
        self.roster
            .iter()
            .filter(|p| {
                **p != self.local
                    && !self.connected.contains(p)
                    && !self.validator.is_excluded(p)
                    && !have.is_some_and(|m| m.contains_key(p))
                    && !faulty.is_some_and(|s| s.contains(p))
            })
            .count()
    }
}
