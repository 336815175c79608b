//! Validation of everything that arrives from the network, in one place.
//!
//! Every check produces a [`Verdict`]: `Accept`, `Ignore` (harmless, e.g. a
//! late round: no penalty) or `Reject` (proof of a faulty or malicious peer:
//! penalised). Each refusal names a [`Reason`] and bumps that reason's
//! counter in [`Counters`]. Cheap checks run first; the signature is checked
//! before anything is stored, and the only state kept per input is bounded
//! by the round window times the roster size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use libp2p::{PeerId, identity};
use serde::{Deserialize, Serialize};

use crate::wire::{
    Encoding, EquivocationProof, JobId, Message, PayloadKind, SignedHeader, SignedPayload, Values,
    WireError, ed25519_public_of, public_key,
};

/// Why an input was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// The frame exceeds the configured size limit. Reject.
    Oversize,
    /// The bytes do not decode to a message (or carry an unknown version).
    /// Reject.
    Undecodable,
    /// A well-formed message on the wrong channel (e.g. a push on gossip).
    /// Reject.
    UnexpectedMessage,
    /// The header names another job. Reject.
    WrongJob,
    /// The signer is not a roster member. Reject.
    NotInRoster,
    /// The signature does not verify. Reject.
    BadSignature,
    /// The payload's hash is not the signed hash. Reject.
    HashMismatch,
    /// The signed dimension (or the payload length) is not the model's. Reject.
    WrongDimension,
    /// The payload holds NaN or ±∞ and the node is configured to refuse them.
    /// Reject.
    NonFinite,
    /// Two validly signed headers of one sender for one round with different
    /// hashes. Reject, and the sender is excluded.
    Equivocation,
    /// An equivocation proof that does not prove anything. Reject.
    BadProof,
    /// The round is already closed here. Ignore.
    RoundTooOld,
    /// The round is further ahead than the buffer allows. Ignore.
    RoundTooFarAhead,
    /// Already received (same header, same hash). Ignore.
    Duplicate,
    /// The sender was excluded after equivocating. Ignore.
    Excluded,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 15] = [
        Reason::Oversize,
        Reason::Undecodable,
        Reason::UnexpectedMessage,
        Reason::WrongJob,
        Reason::NotInRoster,
        Reason::BadSignature,
        Reason::HashMismatch,
        Reason::WrongDimension,
        Reason::NonFinite,
        Reason::Equivocation,
        Reason::BadProof,
        Reason::RoundTooOld,
        Reason::RoundTooFarAhead,
        Reason::Duplicate,
        Reason::Excluded,
    ];

    /// The verdict this reason carries.
    pub fn verdict(self) -> Verdict {
        match self {
            Reason::RoundTooOld
            | Reason::RoundTooFarAhead
            | Reason::Duplicate
            | Reason::Excluded => Verdict::Ignore(self),
            _ => Verdict::Reject(self),
        }
    }

    /// Whether the reason penalises the peer.
    pub fn is_reject(self) -> bool {
        matches!(self.verdict(), Verdict::Reject(_))
    }
}

impl From<&WireError> for Reason {
    fn from(e: &WireError) -> Self {
        match e {
            WireError::Oversize { .. } => Reason::Oversize,
            _ => Reason::Undecodable,
        }
    }
}

/// The outcome of validating one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Verdict {
    /// Valid: used and (for gossip) propagated.
    Accept,
    /// Dropped without penalty.
    Ignore(Reason),
    /// Dropped, and the peer that sent it is penalised.
    Reject(Reason),
}

/// How payloads with NaN or ±∞ are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NonFinitePolicy {
    /// Refuse them with [`Reason::NonFinite`] (default).
    #[default]
    Reject,
    /// Hand them to the aggregation rule, which must cope (every rule of
    /// `rampart-gar` does).
    PassToRule,
}

/// One counter per [`Reason`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(BTreeMap<Reason, u64>);

impl Counters {
    /// How many inputs were refused for `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0.get(&reason).copied().unwrap_or(0)
    }

    /// Non-zero counters.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        self.0.iter().map(|(r, c)| (*r, *c))
    }

    /// Total of the rejecting reasons.
    pub fn rejected(&self) -> u64 {
        self.iter()
            .filter(|(r, _)| r.is_reject())
            .map(|(_, c)| c)
            .sum()
    }

    pub(crate) fn bump(&mut self, reason: Reason) {
        *self.0.entry(reason).or_default() += 1;
    }
}

/// A refusal: the reason, and for [`Reason::Equivocation`] the proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) proof: Option<Box<EquivocationProof>>,
}

impl From<Reason> for Refusal {
    fn from(reason: Reason) -> Self {
        Self {
            reason,
            proof: None,
        }
    }
}

/// Whether a header was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// First time this header is seen.
    New,
    /// The same header (same hash) was seen before.
    Known,
}

/// Static parameters of validation.
#[derive(Clone, Debug)]
pub(crate) struct ValidatorConfig {
    pub(crate) job: JobId,
    pub(crate) roster: Vec<PeerId>,
    pub(crate) dim: usize,
    /// The job's encoding of gradients (models always travel as f32).
    pub(crate) gradient_encoding: Encoding,
    pub(crate) max_frame: usize,
    pub(crate) non_finite: NonFinitePolicy,
    /// Rounds ahead of the current one that are buffered.
    pub(crate) max_ahead: u64,
}

/// The validator of one node.
#[derive(Debug)]
pub(crate) struct Validator {
    cfg: ValidatorConfig,
    roster: BTreeSet<PeerId>,
    /// The roster members' Ed25519 keys (as headers name senders), decoded
    /// once, with their PeerIds.
    members: HashMap<[u8; 32], (PeerId, identity::PublicKey)>,
    round: u64,
    /// First header seen per (round, kind, sender key), for equivocation
    /// detection; pruned when the round advances.
    seen: HashMap<(u64, PayloadKind, [u8; 32]), SignedHeader>,
    excluded: BTreeMap<PeerId, EquivocationProof>,
    counters: Counters,
}

impl Validator {
    pub(crate) fn new(cfg: ValidatorConfig) -> Self {
        let members = cfg
            .roster
            .iter()
            .filter_map(|peer| {
                let bytes = ed25519_public_of(peer)?;
                Some((bytes, (*peer, public_key(&bytes)?)))
            })
            .collect();
        Self {
            roster: cfg.roster.iter().copied().collect(),
            members,
            cfg,
            round: 0,
            seen: HashMap::new(),
            excluded: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The roster member whose Ed25519 key is `sender`, if any.
    pub(crate) fn member(&self, sender: &[u8; 32]) -> Option<PeerId> {
        self.members.get(sender).map(|(peer, _)| *peer)
    }

    pub(crate) fn is_excluded(&self, peer: &PeerId) -> bool {
        self.excluded.contains_key(peer)
    }

    pub(crate) fn excluded(&self) -> impl Iterator<Item = &PeerId> {
        self.excluded.keys()
    }

    fn refuse<T>(&mut self, r: impl Into<Refusal>) -> Result<T, Refusal> {
        let r = r.into();
        self.counters.bump(r.reason);
        Err(r)
    }

    /// Moves the window to `round`: older rounds are now too old.
    pub(crate) fn advance(&mut self, round: u64) {
        self.round = round;
        self.seen.retain(|(r, _, _), _| *r >= round);
    }

    /// Counts a frame the transport refused for its announced length.
    pub(crate) fn oversize(&mut self) -> Refusal {
        self.counters.bump(Reason::Oversize);
        Reason::Oversize.into()
    }

    /// Decodes a frame with the configured limit.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> Result<Message, Refusal> {
        let decoded = Message::decode(bytes, self.cfg.max_frame);
        self.decoded(decoded)
    }

    /// [`Validator::decode`] of an owned frame: a payload stays a view into
    /// the frame, with no copy.
    pub(crate) fn decode_frame(&mut self, frame: Bytes) -> Result<Message, Refusal> {
        let decoded = Message::decode_frame(frame, self.cfg.max_frame);
        self.decoded(decoded)
    }

    /// Counts a frame that did not decode under its reason.
    fn decoded(&mut self, r: Result<Message, WireError>) -> Result<Message, Refusal> {
        r.or_else(|e| self.refuse(Reason::from(&e)))
    }

    /// Checks a signed header: job, roster, exclusion, round window (for
    /// gradients), dimension, signature, then equivocation.
    pub(crate) fn header(&mut self, sh: &SignedHeader) -> Result<Freshness, Refusal> {
        let h = &sh.header;
        if h.job != self.cfg.job {
            return self.refuse(Reason::WrongJob);
        }
        let Some(peer) = self.member(&h.sender) else {
            return self.refuse(Reason::NotInRoster);
        };
        if self.excluded.contains_key(&peer) {
            return self.refuse(Reason::Excluded);
        }
        // Gradients and drift models belong to a round; state answers
        // (parameters) may report any round.
        if h.kind != PayloadKind::Parameters {
            if h.round < self.round {
                return self.refuse(Reason::RoundTooOld);
            }
            if h.round > self.round.saturating_add(self.cfg.max_ahead) {
                return self.refuse(Reason::RoundTooFarAhead);
            }
        }
        if h.dim as usize != self.cfg.dim {
            return self.refuse(Reason::WrongDimension);
        }
        let key = (h.round, h.kind, h.sender);
        // The same signed header again (a push after its gossip, a pull
        // answer): its signature was checked when it was first seen.
        if self.seen.get(&key) == Some(sh) {
            return Ok(Freshness::Known);
        }
        let signed = self
            .members
            .get(&h.sender)
            .is_some_and(|(_, signer)| sh.verify_with(signer));
        if !signed {
            return self.refuse(Reason::BadSignature);
        }
        match self.seen.get(&key) {
            None => {
                self.seen.insert(key, sh.clone());
                Ok(Freshness::New)
            }
            Some(first) if first.header.payload_hash == h.payload_hash => Ok(Freshness::Known),
            Some(first) => {
                let proof = EquivocationProof {
                    a: first.clone(),
                    b: sh.clone(),
                };
                self.excluded.insert(peer, proof.clone());
                self.refuse(Refusal {
                    reason: Reason::Equivocation,
                    proof: Some(Box::new(proof)),
                })
            }
        }
    }

    /// Checks a payload with its header; returns the values.
    pub(crate) fn payload(&mut self, sp: &SignedPayload) -> Result<(Freshness, Values), Refusal> {
        let fresh = self.header(&sp.header)?;
        let h = &sp.header.header;
        // A payload in another encoding than the job's has the wrong shape.
        let encoding = match h.kind {
            PayloadKind::Gradient => self.cfg.gradient_encoding,
            _ => Encoding::F32Le,
        };
        if h.encoding != encoding {
            return self.refuse(Reason::WrongDimension);
        }
        // One pass over the bytes: hash, decode, finiteness.
        let decoded = crate::wire::hash_and_decode(&sp.payload, encoding);
        if decoded.hash != h.payload_hash {
            return self.refuse(Reason::HashMismatch);
        }
        if sp.payload.len() != h.payload_len() {
            return self.refuse(Reason::WrongDimension);
        }
        let Some((values, finite)) = decoded.values else {
            return self.refuse(Reason::WrongDimension);
        };
        if self.cfg.non_finite == NonFinitePolicy::Reject && !finite {
            return self.refuse(Reason::NonFinite);
        }
        Ok((fresh, values))
    }

    /// Checks an equivocation proof; returns the equivocating peer, now
    /// excluded.
    pub(crate) fn proof(&mut self, p: &EquivocationProof) -> Result<PeerId, Refusal> {
        if p.a.header.job != self.cfg.job {
            return self.refuse(Reason::WrongJob);
        }
        let Some(peer) = p.sender().filter(|s| self.roster.contains(s)) else {
            return self.refuse(Reason::NotInRoster);
        };
        if !p.verify() {
            return self.refuse(Reason::BadProof);
        }
        if self.excluded.contains_key(&peer) {
            return self.refuse(Reason::Duplicate);
        }
        self.excluded.insert(peer, p.clone());
        Ok(peer)
    }

    /// The proof that excluded `peer`.
    #[cfg(test)]
    pub(crate) fn evidence(&self, peer: &PeerId) -> Option<&EquivocationProof> {
        self.excluded.get(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Encoding, Header, payload_hash};
    use libp2p::identity::Keypair;

    const DIM: usize = 3;

    fn key(i: u8) -> Keypair {
        Keypair::ed25519_from_bytes([i + 1; 32]).unwrap()
    }

    fn job() -> JobId {
        JobId([42; 32])
    }

    fn validator(policy: NonFinitePolicy) -> Validator {
        Validator::new(ValidatorConfig {
            job: job(),
            roster: (0..4).map(|i| key(i).public().to_peer_id()).collect(),
            dim: DIM,
            gradient_encoding: Encoding::F32Le,
            max_frame: 1 << 16,
            non_finite: policy,
            max_ahead: 2,
        })
    }

    fn grad(i: u8, round: u64, values: &[f32]) -> SignedPayload {
        SignedPayload::new_f32(&key(i), job(), round, PayloadKind::Gradient, values).unwrap()
    }

    fn refused<T: std::fmt::Debug>(r: Result<T, Refusal>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn gradients_must_use_the_jobs_encoding() {
        let values = [1.0f32, 1.0 + 1.0 / 128.0 + 1.0 / 1024.0, -3.5];
        let push = |i: u8, kind, encoding| {
            SignedPayload::push(&key(i), job(), 0, kind, &values, encoding)
                .unwrap()
                .0
        };
        let mut v = validator(NonFinitePolicy::Reject);
        v.cfg.gradient_encoding = Encoding::Bf16Le;
        // bf16 gradients: accepted, decoded as their sender rounded them.
        let (_, got) = v
            .payload(&push(0, PayloadKind::Gradient, Encoding::Bf16Le))
            .unwrap();
        assert_eq!(
            &got[..],
            &crate::wire::quantize(&values, Encoding::Bf16Le)[..]
        );
        assert_ne!(&got[..], &values[..]);
        // An f32 gradient in a bf16 job, a bf16 model: the wrong shape.
        let r = v.payload(&push(1, PayloadKind::Gradient, Encoding::F32Le));
        assert_eq!(refused(r), Reason::WrongDimension);
        let r = v.payload(&push(2, PayloadKind::Drift, Encoding::Bf16Le));
        assert_eq!(refused(r), Reason::WrongDimension);
        // Models stay f32 in a bf16 job (another sender: node 2 has already
        // announced a drift payload for this round).
        assert!(
            v.payload(&push(3, PayloadKind::Drift, Encoding::F32Le))
                .is_ok()
        );
        // And a bf16 gradient in an f32 job.
        let mut v = validator(NonFinitePolicy::Reject);
        let r = v.payload(&push(3, PayloadKind::Gradient, Encoding::Bf16Le));
        assert_eq!(refused(r), Reason::WrongDimension);
    }

    #[test]
    fn accepts_valid_and_flags_duplicates() {
        let mut v = validator(NonFinitePolicy::Reject);
        let p = grad(0, 0, &[1.0, 2.0, 3.0]);
        assert_eq!(
            v.payload(&p).unwrap(),
            (Freshness::New, vec![1.0, 2.0, 3.0].into())
        );
        assert_eq!(v.header(&p.header).unwrap(), Freshness::Known);
        assert_eq!(v.counters().rejected(), 0);
        // Only the identical signed header skips the signature check: the
        // same header with other signature bytes is still refused.
        for at in [0, 31, 63] {
            let mut forged = p.header.clone();
            forged.signature.0[at] ^= 0x10;
            assert_eq!(refused(v.header(&forged)), Reason::BadSignature);
        }
    }

    #[test]
    fn undecodable_and_oversize_bytes() {
        let mut v = validator(NonFinitePolicy::Reject);
        assert_eq!(refused(v.decode(&[1, 0xff, 0xff])), Reason::Undecodable);
        assert_eq!(refused(v.decode(&[9])), Reason::Undecodable);
        assert_eq!(refused(v.decode(&vec![1; (1 << 16) + 1])), Reason::Oversize);
        assert_eq!(v.counters().get(Reason::Undecodable), 2);
        assert_eq!(v.counters().get(Reason::Oversize), 1);
        let ok = Message::Push(grad(1, 0, &[0.0; DIM])).encode().unwrap();
        assert!(v.decode(&ok).is_ok());
    }

    #[test]
    fn wrong_job() {
        let mut v = validator(NonFinitePolicy::Reject);
        let p =
            SignedPayload::new_f32(&key(0), JobId([1; 32]), 0, PayloadKind::Gradient, &[0.0; 3])
                .unwrap();
        assert_eq!(refused(v.payload(&p)), Reason::WrongJob);
        assert_eq!(v.counters().get(Reason::WrongJob), 1);
    }

    #[test]
    fn sender_not_in_roster() {
        let mut v = validator(NonFinitePolicy::Reject);
        // A valid key and signature, but not a member.
        assert_eq!(
            refused(v.payload(&grad(9, 0, &[0.0; 3]))),
            Reason::NotInRoster
        );
        // Bytes that are not an Ed25519 key at all.
        let mut p = grad(0, 0, &[0.0; 3]);
        p.header.header.sender = [0xff; 32];
        assert_eq!(refused(v.payload(&p)), Reason::NotInRoster);
        assert_eq!(v.counters().get(Reason::NotInRoster), 2);
    }

    #[test]
    fn bad_signature() {
        let mut v = validator(NonFinitePolicy::Reject);
        let mut p = grad(0, 0, &[0.0; 3]);
        p.header.signature.0[0] ^= 1;
        assert_eq!(refused(v.payload(&p)), Reason::BadSignature);
        // A header signed by member 1 but claiming member 0 as sender.
        let mut forged = grad(1, 0, &[0.0; 3]);
        forged.header.header.sender = grad(0, 0, &[0.0; 3]).header.header.sender;
        assert_eq!(refused(v.payload(&forged)), Reason::BadSignature);
        assert_eq!(v.counters().get(Reason::BadSignature), 2);
    }

    #[test]
    fn hash_mismatch() {
        let mut v = validator(NonFinitePolicy::Reject);
        let mut p = grad(0, 0, &[1.0, 2.0, 3.0]);
        let mut bytes = p.payload.to_vec();
        bytes[0] ^= 1;
        p.payload = bytes.into();
        assert_eq!(refused(v.payload(&p)), Reason::HashMismatch);
    }

    #[test]
    fn wrong_dimension() {
        let mut v = validator(NonFinitePolicy::Reject);
        assert_eq!(
            refused(v.payload(&grad(0, 0, &[1.0, 2.0]))),
            Reason::WrongDimension
        );
        // The signed dim is right but the signed payload is short.
        let payload = vec![0u8; 8];
        let header = Header {
            job: job(),
            round: 0,
            sender: crate::wire::ed25519_public(&key(1)).unwrap(),
            kind: PayloadKind::Gradient,
            dim: DIM as u32,
            encoding: Encoding::F32Le,
            payload_hash: payload_hash(&payload),
        }
        .sign(&key(1))
        .unwrap();
        let p = SignedPayload {
            header,
            payload: payload.into(),
        };
        assert_eq!(refused(v.payload(&p)), Reason::WrongDimension);
        assert_eq!(v.counters().get(Reason::WrongDimension), 2);
    }

    #[test]
    fn non_finite_policy() {
        let mut v = validator(NonFinitePolicy::Reject);
        assert_eq!(
            refused(v.payload(&grad(0, 0, &[f32::NAN, 0.0, 0.0]))),
            Reason::NonFinite
        );
        assert_eq!(
            refused(v.payload(&grad(1, 0, &[0.0, f32::INFINITY, 0.0]))),
            Reason::NonFinite
        );
        let mut pass = validator(NonFinitePolicy::PassToRule);
        let (_, values) = pass.payload(&grad(0, 0, &[f32::NAN, 0.0, 0.0])).unwrap();
        assert!(values[0].is_nan());
    }

    #[test]
    fn round_window() {
        let mut v = validator(NonFinitePolicy::Reject);
        v.advance(5);
        assert_eq!(
            refused(v.payload(&grad(0, 4, &[0.0; 3]))),
            Reason::RoundTooOld
        );
        assert!(v.payload(&grad(0, 7, &[0.0; 3])).is_ok());
        assert_eq!(
            refused(v.payload(&grad(0, 8, &[0.0; 3]))),
            Reason::RoundTooFarAhead
        );
        assert!(!Reason::RoundTooOld.is_reject());
        assert_eq!(
            Reason::RoundTooFarAhead.verdict(),
            Verdict::Ignore(Reason::RoundTooFarAhead)
        );
        assert_eq!(v.counters().rejected(), 0);
        // Advancing prunes what is now too old.
        v.advance(8);
        assert!(v.seen.is_empty());
    }

    #[test]
    fn equivocation_is_detected_and_excludes() {
        let mut v = validator(NonFinitePolicy::Reject);
        let a = grad(2, 1, &[1.0; 3]);
        let b = grad(2, 1, &[2.0; 3]);
        assert!(v.payload(&a).is_ok());
        let r = v.header(&b.header).unwrap_err();
        assert_eq!(r.reason, Reason::Equivocation);
        let proof = r.proof.unwrap();
        assert!(proof.verify());
        let peer = key(2).public().to_peer_id();
        assert!(v.is_excluded(&peer));
        assert_eq!(v.evidence(&peer), Some(&*proof));
        // Anything later from the sender is ignored.
        assert_eq!(refused(v.payload(&grad(2, 2, &[1.0; 3]))), Reason::Excluded);
        // A second node learns it from the proof alone.
        let mut w = validator(NonFinitePolicy::Reject);
        assert_eq!(w.proof(&proof).unwrap(), peer);
        assert_eq!(refused(w.proof(&proof)), Reason::Duplicate);
        assert!(w.is_excluded(&peer));
    }

    #[test]
    fn bad_proofs() {
        let mut v = validator(NonFinitePolicy::Reject);
        let a = grad(2, 1, &[1.0; 3]).header;
        let same = EquivocationProof {
            a: a.clone(),
            b: a.clone(),
        };
        assert_eq!(refused(v.proof(&same)), Reason::BadProof);
        let mut forged = grad(2, 1, &[2.0; 3]).header;
        forged.signature.0[3] ^= 1;
        assert_eq!(
            refused(v.proof(&EquivocationProof {
                a: a.clone(),
                b: forged
            })),
            Reason::BadProof
        );
        let outsider = EquivocationProof {
            a: grad(9, 1, &[1.0; 3]).header,
            b: grad(9, 1, &[2.0; 3]).header,
        };
        assert_eq!(refused(v.proof(&outsider)), Reason::NotInRoster);
        assert_eq!(v.counters().get(Reason::BadProof), 2);
        assert!(v.excluded().next().is_none());
    }
}
