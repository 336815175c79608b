//! Wire format: signed headers, payloads, equivocation proofs and the frames
//! that carry them.
//!
//! Every frame starts with one version byte ([`WIRE_VERSION`]), then a small
//! bincode-2 envelope (fixed-width little-endian integers, decoded with a
//! hard limit of [`ENVELOPE_LIMIT`] bytes), then — for the variants that
//! carry one — the raw payload bytes up to the end of the frame. The payload
//! is therefore never length-prefixed: its size is the frame's size, which the
//! caller has already bounded, and nothing is allocated from a length read off
//! the network before it is checked.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bytes::Bytes;
use libp2p::PeerId;
use libp2p::identity::{self, Keypair};
use serde::{Deserialize, Serialize};

/// Version of the protocol (frame layout and gossip envelopes); the first
/// byte of every frame, and part of the topic and protocol names.
pub const WIRE_VERSION: u8 = 4;

/// A payload starts at a multiple of this many bytes from the start of its
/// frame (zero bytes pad the envelope), so that a receiver can read the f32
/// values in place in the frame instead of copying them out.
pub const PAYLOAD_ALIGN: usize = 4;

/// Hard cap on the bincode envelope of a frame (headers, proofs, requests):
/// everything but the payload. Real envelopes are a few hundred bytes.
pub const ENVELOPE_LIMIT: usize = 4096;

/// Domain separator prepended to a header's bytes before signing, so a header
/// signature can never be replayed as any other libp2p signature.
const SIGNING_DOMAIN: &[u8] = b"rampart/header/v1\0";

type EnvelopeConfig = Configuration<LittleEndian, Fixint, Limit<ENVELOPE_LIMIT>>;

fn envelope_config() -> EnvelopeConfig {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<ENVELOPE_LIMIT>()
}

/// Why bytes could not be decoded into a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is longer than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    Oversize {
        /// Length of the frame.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The frame is empty (no version byte).
    #[error("empty frame")]
    Empty,
    /// The version byte is not [`WIRE_VERSION`].
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// The envelope is not valid bincode for a [`Message`], or exceeds
    /// [`ENVELOPE_LIMIT`].
    #[error("undecodable envelope: {0}")]
    Undecodable(String),
    /// The padding between an envelope and its payload (see
    /// [`PAYLOAD_ALIGN`]) is cut short or not zero.
    #[error("missing or non-zero padding before the payload")]
    BadPadding,
    /// Bytes follow an envelope that carries no payload.
    #[error("{0} trailing bytes after a message without payload")]
    Trailing(usize),
    /// Encoding failed (only for envelopes over [`ENVELOPE_LIMIT`]).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Identifier of a training job: the SHA-256 of its canonical roster. Topic
/// and protocol names carry it, and every signed header names it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub [u8; 32]);

impl JobId {
    /// Lower-case hex of the id.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::fmt::Debug for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobId({})", &self.to_hex()[..16])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// BLAKE3 of a payload; headers sign it, payloads are addressed by it.
/// (BLAKE3 rather than SHA-256: 1.1 ms against 2.7 ms per 4 MB payload on
/// the 2-core test machine, whose CPU has SHA extensions; every node hashes
/// every payload it receives.)
pub fn payload_hash(payload: &[u8]) -> [u8; 32] {
    blake3::hash(payload).into()
}

/// Bytes per piece of [`hash_and_decode_f32`]: small enough that a piece
/// is still in L1/L2 when it is converted after being hashed.
const PIECE: usize = 16 * 1024;

/// The f32 values of a payload. Where the payload's bytes sit at an address
/// aligned for f32 on a little-endian machine (always, for a frame read by
/// the codec: see [`PAYLOAD_ALIGN`]), they are read in place in the frame;
/// otherwise they are a decoded copy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Values(Repr);

#[derive(Clone, Debug)]
enum Repr {
    /// Little-endian f32 bytes at an f32-aligned address, whole values.
    Frame(Bytes),
    Owned(Vec<f32>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Owned(Vec::new())
    }
}

impl Values {
    /// The payload's values read in place, if its bytes allow it.
    fn in_place(payload: &Bytes) -> Option<Self> {
        (cfg!(target_endian = "little") && bytemuck::try_cast_slice::<u8, f32>(payload).is_ok())
            .then(|| Self(Repr::Frame(payload.clone())))
    }

    /// The values as an owned vector (a copy when they live in a frame).
    pub(crate) fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Frame(_) => self.to_vec(),
        }
    }

    /// Whether the values are read in place in a received frame.
    #[cfg(test)]
    pub(crate) fn in_frame(&self) -> bool {
        matches!(self.0, Repr::Frame(_))
    }
}

impl std::ops::Deref for Values {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            // `in_place` checked the alignment and the length, and the
            // bytes of a `Bytes` never move.
            Repr::Frame(b) => bytemuck::cast_slice(b),
            Repr::Owned(v) => v,
        }
    }
}

impl AsRef<[f32]> for Values {
    fn as_ref(&self) -> &[f32] {
        self
    }
}

impl From<Vec<f32>> for Values {
    fn from(v: Vec<f32>) -> Self {
        Self(Repr::Owned(v))
    }
}

impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A payload checked and decoded in one pass: its hash and, when its length
/// is a multiple of 4, its values as little-endian f32 with whether all of
/// them are finite.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// [`payload_hash`] of the bytes.
    pub(crate) hash: [u8; 32],
    /// The values and whether every one is finite.
    pub(crate) values: Option<(Values, bool)>,
}

/// Hashes `payload` and checks its values (in `encoding`) piece by piece,
/// so that each piece is read from memory once for the hash and the
/// finiteness check. f32 values stay in the payload's buffer where it is
/// aligned for f32 (see [`Values`]); otherwise, and for bf16, each piece is
/// also converted into a copy.
pub(crate) fn hash_and_decode(payload: &Bytes, encoding: Encoding) -> Decoded {
    match encoding {
        Encoding::F32Le => hash_and_decode_f32(payload),
        Encoding::Bf16Le => {
            hash_and_copy(payload, 2, |c| bf16_value(u16::from_le_bytes([c[0], c[1]])))
        }
    }
}

/// [`hash_and_decode`] of an f32 payload.
pub(crate) fn hash_and_decode_f32(payload: &Bytes) -> Decoded {
    if payload.len().is_multiple_of(4)
        && let Some(values) = Values::in_place(payload)
    {
        let mut hasher = blake3::Hasher::new();
        let mut finite = true;
        for (piece, vals) in payload.chunks(PIECE).zip(values.chunks(PIECE / 4)) {
            hasher.update(piece);
            finite &= all_finite(vals);
        }
        return Decoded {
            hash: hasher.finalize().into(),
            values: Some((values, finite)),
        };
    }
    hash_and_copy(payload, 4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Hashes `payload` and decodes it into a copy, `width` bytes a value
/// (`value` reads one); no values when the length is not a multiple of
/// `width`.
fn hash_and_copy(payload: &Bytes, width: usize, value: impl Fn(&[u8]) -> f32) -> Decoded {
    let mut hasher = blake3::Hasher::new();
    if !payload.len().is_multiple_of(width) {
        hasher.update(payload);
        return Decoded {
            hash: hasher.finalize().into(),
            values: None,
        };
    }
    let mut values = Vec::with_capacity(payload.len() / width);
    let mut finite = true;
    // PIECE is a multiple of every width, so no value straddles two pieces.
    for piece in payload.chunks(PIECE) {
        hasher.update(piece);
        let start = values.len();
        values.extend(piece.chunks_exact(width).map(&value));
        finite &= all_finite(&values[start..]);
    }
    Decoded {
        hash: hasher.finalize().into(),
        values: Some((values.into(), finite)),
    }
}

/// `true` when every value is finite. It reads every value (no early exit)
/// so that it compiles to vector code: about 4× faster than
/// `iter().all(|v| v.is_finite())` on a 4 MB gradient.
pub(crate) fn all_finite(values: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    // An all-ones exponent is an infinity or a NaN.
    !values
        .iter()
        .fold(false, |bad, v| bad | (v.to_bits() & EXPONENT == EXPONENT))
}

/// How the payload's numbers are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Encoding {
    /// `dim` IEEE-754 binary32 values, little-endian.
    F32Le,
    /// `dim` bfloat16 values (the upper 16 bits of a binary32: its sign,
    /// its 8-bit exponent and 7 bits of its significand), little-endian:
    /// half the bytes of [`Encoding::F32Le`], the same range, about 3
    /// significant decimal digits. Used for gradients only.
    Bf16Le,
}

impl Encoding {
    /// Bytes per coordinate.
    pub fn width(self) -> usize {
        match self {
            Encoding::F32Le => 4,
            Encoding::Bf16Le => 2,
        }
    }

    /// The encoding's name in configuration files: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::F32Le => "f32",
            Encoding::Bf16Le => "bf16",
        }
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits. A
/// NaN stays a NaN; values beyond the largest bfloat16 round to ±∞, as
/// they do in IEEE arithmetic.
///
/// ```
/// use rampart_node::{bf16_bits, bf16_value};
/// assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
/// assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0); // a tie: to even
/// assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.015625);
/// assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
/// ```
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Keep the sign, force a quiet NaN whatever the dropped bits were.
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bfloat16 bits (exact).
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The values as they arrive after a round trip through `encoding`: a
/// copy for [`Encoding::F32Le`], each value rounded to bfloat16 for
/// [`Encoding::Bf16Le`]. A sender aggregates its own input in this form, so
/// that it uses the same values as every receiver.
pub fn quantize(values: &[f32], encoding: Encoding) -> Vec<f32> {
    match encoding {
        Encoding::F32Le => values.to_vec(),
        Encoding::Bf16Le => values.iter().map(|&v| bf16_value(bf16_bits(v))).collect(),
    }
}

/// What a payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PayloadKind {
    /// The sender's gradient for the round.
    Gradient,
    /// The sender's model parameters after its last completed round
    /// (answers to state requests, for catch-up); the header's round is the
    /// number of rounds done.
    Parameters,
    /// The sender's model parameters after aggregating the header's round,
    /// sent in the drift-control step that follows that round.
    Drift,
}

/// The signed description of one payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    /// The job the payload belongs to.
    pub job: JobId,
    /// The round.
    pub round: u64,
    /// The sender's Ed25519 public key (its PeerId derives from it).
    pub sender: [u8; 32],
    /// What the payload is.
    pub kind: PayloadKind,
    /// Number of coordinates.
    pub dim: u32,
    /// Layout of the coordinates.
    pub encoding: Encoding,
    /// BLAKE3 of the payload bytes ([`payload_hash`]).
    pub payload_hash: [u8; 32],
}

impl Header {
    /// The PeerId of the sender, or `None` when the key bytes are not a valid
    /// Ed25519 public key.
    pub fn sender_peer(&self) -> Option<PeerId> {
        public_key(&self.sender).map(|k| k.to_peer_id())
    }

    /// Bytes of the payload the header announces.
    pub fn payload_len(&self) -> usize {
        (self.dim as usize).saturating_mul(self.encoding.width())
    }

    fn signing_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = SIGNING_DOMAIN.to_vec();
        let body = bincode::serde::encode_to_vec(self, envelope_config())
            .map_err(|e| WireError::Encode(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Signs the header with the sender's key. Fails when the keypair is not
    /// Ed25519 or does not match `sender`.
    pub fn sign(self, keypair: &Keypair) -> Result<SignedHeader, SignError> {
        let ed = keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| SignError::NotEd25519)?;
        if ed.public().to_bytes() != self.sender {
            return Err(SignError::WrongKey);
        }
        let bytes = self.signing_bytes().map_err(SignError::Encode)?;
        let sig = ed.sign(&bytes);
        let mut signature = [0u8; 64];
        if sig.len() != 64 {
            return Err(SignError::NotEd25519);
        }
        signature.copy_from_slice(&sig);
        Ok(SignedHeader {
            header: self,
            signature: Signature(signature),
        })
    }
}

/// Why a header could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// Rampart signs with Ed25519 keys only.
    #[error("the keypair is not Ed25519")]
    NotEd25519,
    /// The header's sender is not the keypair's public key.
    #[error("the header's sender is not this keypair")]
    WrongKey,
    /// The header could not be encoded.
    #[error(transparent)]
    Encode(WireError),
}

pub(crate) fn public_key(bytes: &[u8; 32]) -> Option<identity::PublicKey> {
    identity::ed25519::PublicKey::try_from_bytes(bytes)
        .ok()
        .map(identity::PublicKey::from)
}

/// The Ed25519 public-key bytes of a keypair, if it is Ed25519.
pub fn ed25519_public(keypair: &Keypair) -> Option<[u8; 32]> {
    keypair
        .clone()
        .try_into_ed25519()
        .ok()
        .map(|k| k.public().to_bytes())
}

/// The Ed25519 public-key bytes a PeerId embeds (Ed25519 PeerIds carry
/// their key inline), if it is one.
pub fn ed25519_public_of(peer: &PeerId) -> Option<[u8; 32]> {
    identity::PublicKey::try_decode_protobuf(peer.to_bytes().get(2..)?)
        .ok()?
        .try_into_ed25519()
        .ok()
        .map(|k| k.to_bytes())
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({}…)", hex(&self.0[..8]))
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Signature, E> {
                <[u8; 64]>::try_from(v)
                    .map(Signature)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Signature, E> {
                self.visit_bytes(&v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A header with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedHeader {
    /// The header.
    pub header: Header,
    /// Ed25519 signature of the domain-separated header bytes by `header.sender`.
    pub signature: Signature,
}

impl SignedHeader {
    /// Whether the signature is valid for the header's sender key.
    pub fn verify(&self) -> bool {
        public_key(&self.header.sender).is_some_and(|key| self.verify_with(&key))
    }

    /// Whether the signature is valid for `key`, the sender's key already
    /// decoded (decoding a key costs about a third of a verification).
    pub(crate) fn verify_with(&self, key: &identity::PublicKey) -> bool {
        self.header
            .signing_bytes()
            .is_ok_and(|bytes| key.verify(&bytes, &self.signature.0))
    }
}

/// A payload with its signed header (a push, a pull answer, a model state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayload {
    /// The signed header announcing the payload.
    pub header: SignedHeader,
    /// The payload bytes (`header.dim` values in `header.encoding`). Shared,
    /// not copied: a decoded push keeps a view into its frame, and a payload
    /// pushed to many peers is one buffer.
    pub payload: Bytes,
}

impl SignedPayload {
    /// Builds and signs a payload of f32 values.
    pub fn new_f32(
        keypair: &Keypair,
        job: JobId,
        round: u64,
        kind: PayloadKind,
        values: &[f32],
    ) -> Result<Self, SignError> {
        Self::push_f32(keypair, job, round, kind, values).map(|(p, _)| p)
    }

    /// [`SignedPayload::new_f32`], together with the frame of
    /// `Message::Push` of it. The values are copied once, into the frame, and
    /// the payload is a view into that frame, so a sender builds its push
    /// with one pass over the values besides the hash.
    ///
    /// ```
    /// use libp2p::identity::Keypair;
    /// use rampart_node::{JobId, Message, PayloadKind, SignedPayload};
    ///
    /// let key = Keypair::generate_ed25519();
    /// let (p, frame) =
    ///     SignedPayload::push_f32(&key, JobId([7; 32]), 3, PayloadKind::Gradient, &[1.5, -2.0])
    ///         .unwrap();
    /// assert_eq!(frame, Message::Push(p.clone()).encode().unwrap());
    /// assert_eq!(&p.payload[..], &frame[frame.len() - 8..]);
    /// assert!(p.header.verify());
    /// ```
    pub fn push_f32(
        keypair: &Keypair,
        job: JobId,
        round: u64,
        kind: PayloadKind,
        values: &[f32],
    ) -> Result<(Self, Bytes), SignError> {
        Self::push(keypair, job, round, kind, values, Encoding::F32Le)
    }

    /// [`SignedPayload::push_f32`] with the values in `encoding`
    /// ([`quantize`] gives the values a receiver decodes).
    pub fn push(
        keypair: &Keypair,
        job: JobId,
        round: u64,
        kind: PayloadKind,
        values: &[f32],
        encoding: Encoding,
    ) -> Result<(Self, Bytes), SignError> {
        let sender = ed25519_public(keypair).ok_or(SignError::NotEd25519)?;
        let bytes = match encoding {
            Encoding::F32Le => le_bytes(values),
            Encoding::Bf16Le => std::borrow::Cow::Owned(
                values
                    .iter()
                    .flat_map(|&v| bf16_bits(v).to_le_bytes())
                    .collect(),
            ),
        };
        let dim = u32::try_from(values.len())
            .map_err(|_| SignError::Encode(WireError::Encode("dimension over u32".into())))?;
        let header = Header {
            job,
            round,
            sender,
            kind,
            dim,
            encoding,
            payload_hash: payload_hash(&bytes),
        }
        .sign(keypair)?;
        let frame = Bytes::from(
            Message::frame(Envelope::Push(header.clone()), &bytes).map_err(SignError::Encode)?,
        );
        let payload = frame.slice(frame.len() - bytes.len()..);
        Ok((Self { header, payload }, frame))
    }
}

/// Two validly signed headers of one sender for one round and payload kind
/// with different payload hashes: a proof that the sender equivocated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EquivocationProof {
    /// One header.
    pub a: SignedHeader,
    /// The other header.
    pub b: SignedHeader,
}

impl EquivocationProof {
    /// Whether this is a proof: same job, sender, round and kind, different
    /// hashes, both signatures valid.
    pub fn verify(&self) -> bool {
        let (a, b) = (&self.a.header, &self.b.header);
        a.job == b.job
            && a.sender == b.sender
            && a.round == b.round
            && a.kind == b.kind
            && a.payload_hash != b.payload_hash
            && self.a.verify()
            && self.b.verify()
    }

    /// The equivocating sender.
    pub fn sender(&self) -> Option<PeerId> {
        self.a.header.sender_peer()
    }
}

/// A request for a payload the requester saw announced but did not receive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The round.
    pub round: u64,
    /// The sender's public key.
    pub sender: [u8; 32],
    /// What is asked for.
    pub kind: PayloadKind,
    /// The announced hash (payloads are content-addressed); `None` asks for
    /// whatever signed payload the peer holds for (round, sender, kind) —
    /// used when no header was seen, e.g. after a restart. The answer is
    /// validated like any payload, so this needs no trust in the peer.
    pub payload_hash: Option<[u8; 32]>,
}

/// Everything that travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Gossip: a signed header announcing a payload.
    Header(SignedHeader),
    /// Gossip: an equivocation proof.
    Equivocation(EquivocationProof),
    /// Request: a payload pushed to a roster peer.
    Push(SignedPayload),
    /// Request: ask for a payload by hash.
    Pull(PullRequest),
    /// Request: ask for the peer's latest model state (catch-up).
    StateRequest,
    /// Response: received.
    Ack,
    /// Response to `Pull` / `StateRequest`: the payload, if held.
    Payload(Option<SignedPayload>),
    /// Request: a liveness probe, answered with `Ack` (see
    /// docs/protocol.md, "Dead connections").
    Ping,
}

/// The bincode envelope: a [`Message`] without its payload bytes.
#[derive(Serialize, Deserialize)]
enum Envelope {
    Header(SignedHeader),
    Equivocation(EquivocationProof),
    Push(SignedHeader),
    Pull(PullRequest),
    StateRequest,
    Ack,
    Payload(Option<SignedHeader>),
    Ping,
}

impl Message {
    /// Encodes the message as one frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let (env, payload): (Envelope, &[u8]) = match self {
            Message::Header(h) => (Envelope::Header(h.clone()), &[]),
            Message::Equivocation(p) => (Envelope::Equivocation(p.clone()), &[]),
            Message::Push(p) => (Envelope::Push(p.header.clone()), &p.payload),
            Message::Pull(r) => (Envelope::Pull(r.clone()), &[]),
            Message::StateRequest => (Envelope::StateRequest, &[]),
            Message::Ack => (Envelope::Ack, &[]),
            Message::Ping => (Envelope::Ping, &[]),
            Message::Payload(None) => (Envelope::Payload(None), &[]),
            Message::Payload(Some(p)) => (Envelope::Payload(Some(p.header.clone())), &p.payload),
        };
        Self::frame(env, payload)
    }

    /// The frame of `env` followed by `payload`: the version byte, the
    /// envelope, for a message that carries a payload the zero padding to
    /// [`PAYLOAD_ALIGN`], then the payload.
    fn frame(env: Envelope, payload: &[u8]) -> Result<Vec<u8>, WireError> {
        let body = bincode::serde::encode_to_vec(&env, envelope_config())
            .map_err(|e| WireError::Encode(e.to_string()))?;
        let carries = matches!(env, Envelope::Push(_) | Envelope::Payload(Some(_)));
        let pad = if carries { padding(1 + body.len()) } else { 0 };
        let mut out = Vec::with_capacity(1 + body.len() + pad + payload.len());
        out.push(WIRE_VERSION);
        out.extend_from_slice(&body);
        out.resize(out.len() + pad, 0);
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// Decodes one frame of at most `limit` bytes. Never panics, and allocates
    /// at most the frame's size plus [`ENVELOPE_LIMIT`]. A payload is copied
    /// out of `bytes`; [`Message::decode_frame`] shares it instead.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, WireError> {
        let (env, start) = Self::envelope(bytes, limit)?;
        Self::assemble(env, start, &bytes[start..], |at| {
            Bytes::copy_from_slice(&bytes[start + at..])
        })
    }

    /// [`Message::decode`] of an owned frame: a payload is a view into
    /// `frame`, with no copy.
    pub fn decode_frame(frame: Bytes, limit: usize) -> Result<Self, WireError> {
        let (env, start) = Self::envelope(&frame, limit)?;
        Self::assemble(env, start, &frame[start..], |at| frame.slice(start + at..))
    }

    /// The envelope of a frame and where it ends.
    fn envelope(bytes: &[u8], limit: usize) -> Result<(Envelope, usize), WireError> {
        if bytes.len() > limit {
            return Err(WireError::Oversize {
                len: bytes.len(),
                limit,
            });
        }
        let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        if version != WIRE_VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        let (env, used): (Envelope, usize) =
            bincode::serde::decode_from_slice(rest, envelope_config())
                .map_err(|e| WireError::Undecodable(e.to_string()))?;
        // `used <= rest.len()`: bincode consumed that much of `rest`.
        Ok((env, 1 + used.min(rest.len())))
    }

    /// The message of `env`, whose envelope ends at offset `start` of the
    /// frame and is followed by `after`; `payload(at)` yields the frame's
    /// bytes from `start + at` on, for the kinds that carry a payload
    /// (`at` skips the zero padding to [`PAYLOAD_ALIGN`]).
    fn assemble(
        env: Envelope,
        start: usize,
        after: &[u8],
        payload: impl FnOnce(usize) -> Bytes,
    ) -> Result<Self, WireError> {
        let no_payload = |m: Message| {
            if after.is_empty() {
                Ok(m)
            } else {
                Err(WireError::Trailing(after.len()))
            }
        };
        let with_payload = || {
            let pad = padding(start);
            match after.get(..pad) {
                Some(zeros) if zeros.iter().all(|&b| b == 0) => Ok(payload(pad)),
                _ => Err(WireError::BadPadding),
            }
        };
        match env {
            Envelope::Header(h) => no_payload(Message::Header(h)),
            Envelope::Equivocation(p) => no_payload(Message::Equivocation(p)),
            Envelope::Pull(r) => no_payload(Message::Pull(r)),
            Envelope::StateRequest => no_payload(Message::StateRequest),
            Envelope::Ack => no_payload(Message::Ack),
            Envelope::Ping => no_payload(Message::Ping),
            Envelope::Payload(None) => no_payload(Message::Payload(None)),
            Envelope::Push(header) => Ok(Message::Push(SignedPayload {
                header,
                payload: with_payload()?,
            })),
            Envelope::Payload(Some(header)) => Ok(Message::Payload(Some(SignedPayload {
                header,
                payload: with_payload()?,
            }))),
        }
    }
}

/// Zero bytes after an envelope ending at `end` so that the payload starts
/// at a multiple of [`PAYLOAD_ALIGN`].
fn padding(end: usize) -> usize {
    (PAYLOAD_ALIGN - end % PAYLOAD_ALIGN) % PAYLOAD_ALIGN
}

/// Little-endian bytes of f32 values.
pub fn f32_to_le(values: &[f32]) -> Vec<u8> {
    le_bytes(values).into_owned()
}

/// The little-endian bytes of `values`: on a little-endian machine the
/// values' own memory, with no copy.
fn le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// f32 values from little-endian bytes; `None` when the length is not a
/// multiple of 4.
pub fn f32_from_le(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_pass_decode_matches_the_separate_passes() {
        // The same bytes at an aligned address (read in place) and one byte
        // off (decoded into a copy) give the same hash, values and verdict.
        let both = |bytes: &[u8]| {
            let placed = |shift: usize| {
                let mut buf = vec![0u8; bytes.len() + 8];
                let at = buf.as_ptr().align_offset(4) + shift;
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                Bytes::from(buf).slice(at..at + bytes.len())
            };
            (
                hash_and_decode_f32(&placed(0)),
                hash_and_decode_f32(&placed(1)),
            )
        };
        let mut values: Vec<f32> = (0..(3 * PIECE / 4 + 37))
            .map(|i| i as f32 * 0.25 - 9.0)
            .collect();
        for n in [0, 1, PIECE / 4, values.len()] {
            let bytes = f32_to_le(&values[..n]);
            let (a, b) = both(&bytes);
            for d in [&a, &b] {
                assert_eq!(d.hash, payload_hash(&bytes));
                assert_eq!(d.values, Some((values[..n].to_vec().into(), true)));
            }
            if n > 0 {
                assert!(a.values.as_ref().unwrap().0.in_frame());
                assert!(!b.values.as_ref().unwrap().0.in_frame());
            }
        }
        let last = values.len() - 1;
        values[last] = f32::NAN;
        for d in <[Decoded; 2]>::from(both(&f32_to_le(&values))) {
            let (back, finite) = d.values.unwrap();
            assert!(!finite);
            assert!(back[last].is_nan());
        }
        values[last] = f32::NEG_INFINITY;
        let (a, b) = both(&f32_to_le(&values));
        assert!(!a.values.unwrap().1);
        assert!(!b.values.unwrap().1);
        let odd = Bytes::from(vec![7u8; PIECE + 3]);
        let d = hash_and_decode_f32(&odd);
        assert_eq!(d.hash, payload_hash(&odd));
        assert!(d.values.is_none());
    }

    #[test]
    fn all_finite_agrees_with_is_finite() {
        let specials = [
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_0000),
        ];
        for len in [0usize, 1, 255, 256, 257, 1000] {
            for at in [0, len / 2, len.saturating_sub(1)] {
                for s in specials {
                    let mut v = vec![1.5f32; len];
                    if let Some(x) = v.get_mut(at) {
                        *x = s;
                    }
                    assert_eq!(
                        all_finite(&v),
                        v.iter().all(|x| x.is_finite()),
                        "len {len}, {s:?} at {at}"
                    );
                }
            }
        }
    }

    fn key(seed: u8) -> Keypair {
        Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    fn payload(seed: u8, round: u64, values: &[f32]) -> SignedPayload {
        SignedPayload::new_f32(
            &key(seed),
            JobId([7; 32]),
            round,
            PayloadKind::Gradient,
            values,
        )
        .unwrap()
    }

    /// Fixed envelope sizes: 1 version byte, 4-byte variant tags, fixed ints.
    const HEADER_LEN: usize = 32 + 8 + 32 + 4 + 4 + 4 + 32;
    const SIGNED_LEN: usize = HEADER_LEN + 8 + 64;

    #[test]
    fn round_trip_and_lengths() {
        let p = payload(1, 3, &[1.0, -2.5, f32::MIN_POSITIVE]);
        assert!(p.header.verify());
        let msgs = [
            (Message::Header(p.header.clone()), 1 + 4 + SIGNED_LEN),
            (
                Message::Equivocation(EquivocationProof {
                    a: p.header.clone(),
                    b: payload(1, 3, &[0.0, 0.0, 0.0]).header,
                }),
                1 + 4 + 2 * SIGNED_LEN,
            ),
            // 193 bytes of envelope, 3 of padding.
            (Message::Push(p.clone()), 1 + 4 + SIGNED_LEN + 3 + 12),
            (
                Message::Pull(PullRequest {
                    round: 3,
                    sender: p.header.header.sender,
                    kind: PayloadKind::Gradient,
                    payload_hash: Some([0; 32]),
                }),
                1 + 4 + 8 + 32 + 4 + 1 + 32,
            ),
            (Message::StateRequest, 1 + 4),
            (Message::Ack, 1 + 4),
            (Message::Ping, 1 + 4),
            (Message::Payload(None), 1 + 4 + 1),
            (
                Message::Payload(Some(p.clone())),
                1 + 4 + 1 + SIGNED_LEN + 2 + 12,
            ),
        ];
        for (m, len) in msgs {
            let bytes = m.encode().unwrap();
            assert_eq!(bytes.len(), len, "{m:?}");
            assert_eq!(Message::decode(&bytes, 1 << 20).unwrap(), m);
            if let Message::Push(p) | Message::Payload(Some(p)) = &m {
                let start = bytes.len() - p.payload.len();
                assert_eq!(start % PAYLOAD_ALIGN, 0, "{m:?}");
                // The padding must be zero bytes, and must be there.
                let mut bad = bytes.clone();
                bad[start - 1] = 1;
                assert_eq!(Message::decode(&bad, 1 << 20), Err(WireError::BadPadding));
                // Without one padding byte the payload is not the one sent
                // (an error, or other bytes, which the hash check refuses).
                let mut short = bytes[..start - 1].to_vec();
                short.extend_from_slice(&p.payload);
                assert_ne!(Message::decode(&short, 1 << 20).ok().as_ref(), Some(&m));
            }
        }
    }

    #[test]
    fn signatures_bind_every_field() {
        let p = payload(2, 5, &[1.0, 2.0]);
        let mut h = p.header.clone();
        h.header.round = 6;
        assert!(!h.verify());
        let mut h = p.header.clone();
        h.header.dim = 3;
        assert!(!h.verify());
        let mut h = p.header.clone();
        h.header.payload_hash[0] ^= 1;
        assert!(!h.verify());
        let mut h = p.header.clone();
        h.header.sender = ed25519_public(&key(3)).unwrap();
        assert!(!h.verify());
        let mut h = p.header.clone();
        h.signature.0[10] ^= 1;
        assert!(!h.verify());
        // A header cannot be signed for another sender.
        assert_eq!(
            p.header.header.clone().sign(&key(3)),
            Err(SignError::WrongKey)
        );
        assert_eq!(
            p.header.header.sender_peer(),
            Some(key(2).public().to_peer_id())
        );
    }

    #[test]
    fn equivocation_proof_checks() {
        let a = payload(4, 9, &[1.0]).header;
        let b = payload(4, 9, &[2.0]).header;
        assert!(
            EquivocationProof {
                a: a.clone(),
                b: b.clone()
            }
            .verify()
        );
        assert!(
            !EquivocationProof {
                a: a.clone(),
                b: a.clone()
            }
            .verify()
        );
        let other_round = payload(4, 10, &[2.0]).header;
        assert!(
            !EquivocationProof {
                a: a.clone(),
                b: other_round
            }
            .verify()
        );
        let other_sender = payload(5, 9, &[2.0]).header;
        assert!(!EquivocationProof { a, b: other_sender }.verify());
    }

    #[test]
    fn rejects_oversize_version_trailing() {
        let bytes = Message::Header(payload(1, 0, &[1.0]).header)
            .encode()
            .unwrap();
        assert!(matches!(
            Message::decode(&bytes, bytes.len() - 1),
            Err(WireError::Oversize { .. })
        ));
        assert_eq!(Message::decode(&[], 10), Err(WireError::Empty));
        for other in [1, WIRE_VERSION + 1] {
            let mut v = bytes.clone();
            v[0] = other;
            assert_eq!(
                Message::decode(&v, 1 << 20),
                Err(WireError::UnknownVersion(other))
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            Message::decode(&extra, 1 << 20),
            Err(WireError::Trailing(1))
        );
        assert!(matches!(
            Message::decode(&bytes[..bytes.len() - 1], 1 << 20),
            Err(WireError::Undecodable(_))
        ));
    }

    #[test]
    fn huge_claimed_lengths_do_not_allocate() {
        // Version, variant tag of `Push`, then a header whose signature claims
        // u64::MAX bytes: bincode's limit refuses it before allocating.
        let bytes = Message::Push(payload(1, 0, &[1.0])).encode().unwrap();
        let mut evil = bytes[..1 + 4 + HEADER_LEN].to_vec();
        evil.extend_from_slice(&u64::MAX.to_le_bytes());
        evil.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Message::decode(&evil, 1 << 20),
            Err(WireError::Undecodable(_))
        ));
    }

    #[test]
    fn f32_le_round_trip() {
        let v = [0.0f32, -0.0, 1.5, f32::NAN, f32::INFINITY];
        let back = f32_from_le(&f32_to_le(&v)).unwrap();
        for (a, b) in v.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(f32_from_le(&[0; 5]), None);
    }

    #[test]
    fn bf16_push_carries_two_bytes_a_value() {
        let key = Keypair::ed25519_from_bytes([9; 32]).unwrap();
        let values = [0.1f32, -2.75, 1e-30, 3.0e38, f32::INFINITY, 65_504.0];
        let (p, frame) = SignedPayload::push(
            &key,
            JobId([1; 32]),
            5,
            PayloadKind::Gradient,
            &values,
            Encoding::Bf16Le,
        )
        .unwrap();
        assert_eq!(p.payload.len(), 2 * values.len());
        assert_eq!(p.header.header.payload_len(), p.payload.len());
        assert_eq!(frame, Message::Push(p.clone()).encode().unwrap());
        let Ok(Message::Push(back)) = Message::decode_frame(frame, 1 << 16) else {
            panic!("not a push");
        };
        let d = hash_and_decode(&back.payload, Encoding::Bf16Le);
        assert_eq!(d.hash, p.header.header.payload_hash);
        let (got, finite) = d.values.unwrap();
        assert!(!finite);
        assert_eq!(&got[..], &quantize(&values, Encoding::Bf16Le)[..]);
        assert_eq!(got[0].to_bits(), 0x3dcd_0000); // 0.1 rounded up: 0.10009765625
        assert_eq!(got[1], -2.75);
        // An odd number of bytes is no bf16 payload.
        assert!(
            hash_and_decode(&Bytes::from_static(&[1, 2, 3]), Encoding::Bf16Le)
                .values
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn bf16_rounds_to_the_nearest_ties_to_even(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            let q = bf16_value(bf16_bits(x));
            if x.is_nan() {
                prop_assert!(q.is_nan());
            } else {
                let down = f32::from_bits(bits & 0xffff_0000);
                let up = f32::from_bits((bits & 0xffff_0000).wrapping_add(0x1_0000));
                prop_assert!(q.to_bits() == down.to_bits() || q.to_bits() == up.to_bits());
                let (dq, dother) = if q.to_bits() == down.to_bits() {
                    ((x as f64 - down as f64).abs(), (up as f64 - x as f64).abs())
                } else {
                    ((up as f64 - x as f64).abs(), (x as f64 - down as f64).abs())
                };
                if up.is_finite() {
                    prop_assert!(dq <= dother, "{x} -> {q}");
                    if dq == dother {
                        prop_assert_eq!(bf16_bits(q) & 1, 0, "tie not to even: {} -> {}", x, q);
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::decode(&bytes, 1024);
        }

        #[test]
        fn versioned_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let mut framed = vec![WIRE_VERSION];
            framed.extend_from_slice(&bytes);
            let _ = Message::decode(&framed, 1 << 20);
        }

        /// Mutation fuzzing of valid frames of every message type (random
        /// bytes rarely get past the version byte and the envelope's
        /// tags): flipped bytes and truncation never panic, never decode
        /// beyond the limit, and whatever still decodes re-encodes to a
        /// frame that decodes to the same message.
        #[test]
        fn mutated_valid_frames_never_panic(
            which in 0usize..9,
            values in proptest::collection::vec(any::<f32>(), 0..32),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
            cut in any::<usize>(),
            truncate in any::<bool>(),
        ) {
            let drift = SignedPayload::new_f32(
                &key(3), JobId([7; 32]), 5, PayloadKind::Drift, &values,
            ).unwrap();
            let grad = payload(9, 5, &values);
            let m = match which {
                0 => Message::Push(grad),
                1 => Message::Push(drift),
                2 => Message::Header(grad.header.clone()),
                3 => Message::Payload(Some(drift)),
                4 => Message::Pull(PullRequest {
                    round: 5,
                    sender: grad.header.header.sender,
                    kind: PayloadKind::Drift,
                    payload_hash: Some([1; 32]),
                }),
                5 => Message::Equivocation(EquivocationProof {
                    a: grad.header.clone(),
                    b: drift.header.clone(),
                }),
                6 => Message::StateRequest,
                7 => Message::Ping,
                _ => Message::Payload(None),
            };
            let mut bytes = m.encode().unwrap();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            if truncate {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            let limit = 1 << 12;
            // The owned-frame decoder agrees with the borrowing one on
            // every frame, valid or not.
            prop_assert_eq!(
                Message::decode_frame(Bytes::from(bytes.clone()), limit),
                Message::decode(&bytes, limit)
            );
            if let Ok(back) = Message::decode(&bytes, limit) {
                prop_assert!(bytes.len() <= limit);
                let again = back.encode().unwrap();
                prop_assert_eq!(Message::decode(&again, limit).unwrap(), back);
            }
        }

        #[test]
        fn push_round_trips(values in proptest::collection::vec(any::<f32>(), 0..64), round in any::<u64>()) {
            let m = Message::Push(payload(9, round, &values));
            let bytes = m.encode().unwrap();
            prop_assert_eq!(bytes.len(), 1 + 4 + SIGNED_LEN + 3 + 4 * values.len());
            prop_assert_eq!(&Message::decode(&bytes, 1 << 20).unwrap(), &m);
            let shared = Bytes::from(bytes);
            let Message::Push(p) = Message::decode_frame(shared.clone(), 1 << 20).unwrap() else {
                panic!("a push decodes as a push");
            };
            // The payload is a view into the frame, not a copy.
            if !values.is_empty() {
                prop_assert_eq!(p.payload.as_ptr(), shared[shared.len() - 4 * values.len()..].as_ptr());
            }
            prop_assert_eq!(Message::Push(p), m);
        }
    }
}
