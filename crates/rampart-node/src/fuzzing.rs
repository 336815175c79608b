//! Entry points for fuzzing the decoding of network bytes (feature
//! `fuzzing`): the `fuzz/` crate's libFuzzer targets call them, and
//! `tests/fuzz_smoke.rs` runs them on stable Rust over generated inputs.
//!
//! Each one feeds bytes through the path that bytes from a peer take in a
//! node: the request-response frame codec (length prefix checked against
//! the limit before allocating), [`Message::decode`], then the validator
//! (header, payload or equivocation proof) of a node whose roster holds
//! the four keys of [`key`]. Nothing here may panic, hang or allocate more
//! than the frame limit allows; a panic is a bug the fuzzer reports.

use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::identity::Keypair;

use crate::NonFinitePolicy;
use crate::codec::read_frame;
use crate::validate::{Validator, ValidatorConfig};
use crate::wire::{EquivocationProof, JobId, Message, PayloadKind, PullRequest, SignedPayload};

/// Dimension of the payloads the fuzzed validator expects.
pub const DIM: usize = 8;
/// Job id of the fuzzed validator.
pub const JOB: JobId = JobId([7; 32]);
/// Frame limit of the fuzzed codec and validator (one payload of [`DIM`]
/// values plus the envelope limit).
pub const MAX_FRAME: usize = DIM * 4 + crate::wire::ENVELOPE_LIMIT;

/// Roster key `i` (0..4) of the fuzzed validator; any other `i` gives a key
/// outside the roster.
pub fn key(i: u8) -> Keypair {
    // ed25519_from_bytes fails only for a wrong length; 32 bytes are fine.
    Keypair::ed25519_from_bytes([i.wrapping_add(1); 32]).expect("32-byte ed25519 seed")
}

fn validator() -> Validator {
    Validator::new(ValidatorConfig {
        job: JOB,
        roster: (0..4).map(|i| key(i).public().to_peer_id()).collect(),
        dim: DIM,
        gradient_encoding: crate::wire::Encoding::F32Le,
        max_frame: MAX_FRAME,
        non_finite: NonFinitePolicy::Reject,
        max_ahead: 4,
    })
}

/// Runs one decoded message through the validator the way a node does.
fn validate(v: &mut Validator, m: &Message) {
    match m {
        Message::Header(h) => {
            let _ = v.header(h);
        }
        Message::Push(p) | Message::Payload(Some(p)) => {
            let _ = v.payload(p);
        }
        Message::Equivocation(p) => {
            let _ = v.proof(p);
        }
        _ => {}
    }
}

/// Raw bytes as a stream of length-prefixed frames, as a peer's
/// request-response stream would deliver them: each frame is decoded and
/// validated (with one validator, so equivocation across frames is
/// exercised) until the stream ends or a frame is refused by the codec.
pub fn frames(data: &[u8]) {
    let mut v = validator();
    let mut io = Cursor::new(data);
    // Every frame consumes at least its 4-byte prefix, so this ends.
    while let Ok(frame) = block_on(read_frame(&mut io, MAX_FRAME)) {
        if let Ok(m) = v.decode_frame(frame.into()) {
            validate(&mut v, &m);
        }
    }
}

/// A valid message chosen by the first byte, signed by a roster key, then
/// mutated by the rest: pairs of bytes (position, xor) flip bytes, and a
/// final odd byte truncates. This reaches the checks behind the signature,
/// which random bytes almost never pass.
pub fn mutated(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let values: Vec<f32> = (0..DIM).map(|i| i as f32 - 3.5).collect();
    let signed = |k: u8, round: u64, kind: PayloadKind, vals: &[f32]| {
        SignedPayload::new_f32(&key(k), JOB, round, kind, vals)
    };
    let Ok(grad) = signed(
        which % 5,
        u64::from(which >> 4),
        PayloadKind::Gradient,
        &values,
    ) else {
        return;
    };
    let Ok(other) = signed(
        which % 5,
        u64::from(which >> 4),
        PayloadKind::Gradient,
        &[1.0; DIM],
    ) else {
        return;
    };
    let m = match which % 8 {
        0 => Message::Push(grad),
        1 => Message::Header(grad.header),
        2 => Message::Payload(Some(grad)),
        3 => Message::Equivocation(EquivocationProof {
            a: grad.header,
            b: other.header,
        }),
        4 => Message::Pull(PullRequest {
            round: 1,
            sender: grad.header.header.sender,
            kind: PayloadKind::Drift,
            payload_hash: Some([3; 32]),
        }),
        5 => Message::Push(other),
        6 => Message::StateRequest,
        _ => Message::Ping,
    };
    let Ok(mut bytes) = m.encode() else {
        return;
    };
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        if !bytes.is_empty() {
            let at = usize::from(p[0]) * 7 % bytes.len();
            bytes[at] ^= p[1];
        }
    }
    if let [cut] = pairs.remainder() {
        bytes.truncate(usize::from(*cut) * bytes.len() / 255);
    }
    let mut v = validator();
    if let Ok(m) = v.decode(&bytes) {
        validate(&mut v, &m);
        // A decoded message encodes again to something that decodes to
        // the same message.
        if let Ok(again) = m.encode() {
            assert_eq!(Message::decode(&again, MAX_FRAME).ok(), Some(m));
        }
    }
}
