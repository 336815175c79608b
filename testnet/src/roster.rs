//! The roster file (TOML) of a training job, and node key files.
//!
//! ```toml
//! n = 7
//!
//! [job]
//! name = "quickstart"
//! seed = 1
//! rounds = 150
//! rule = "multi-bulyan"
//! f = 1
//! model = "mlp"
//! hidden = [64]
//! data = "synthetic"
//! partition = "iid"
//! lr = 0.05
//! momentum = 0.9
//! batch = 32
//! round_timeout_ms = 5000
//! start_timeout_ms = 30000
//!
//! [[members]]
//! peer = "12D3KooW..."
//! addrs = ["/ip4/10.0.0.1/tcp/4001"]
//! ```
//!
//! `rampart roster new` and `rampart roster add` write such files.
//!
//! # Canonical form and job id
//!
//! The **roster tag** ([`Roster::tag`]) is the SHA-256 of the canonical
//! roster: a domain string, then the `[job]` section as JSON with its
//! fields in declaration order and defaults filled in (a key left out
//! equals its default written out; numbers in shortest round-trip form),
//! then the members' PeerIds sorted by their bytes. Comments, formatting,
//! key order, member order and addresses (only dialling hints) do not
//! enter it. The node mixes the tag into its **job id** (with the sorted
//! PeerIds, the rule and the model dimension), which `rampart roster id`
//! prints, the node logs at start and the protocol names carry.
//!
//! A member's node index (its data shard and sampling seed) is the rank of
//! its PeerId among the sorted PeerIds, so it does not depend on the file
//! order either.

use std::path::Path;

use anyhow::{Context, Result, bail};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spec::JobSpec;

/// One member of the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's PeerId (from its Ed25519 key; `rampart keygen` prints it).
    #[serde(with = "peer_string")]
    pub peer: PeerId,
    /// Addresses where the member listens, if known (dialled at start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<Multiaddr>,
}

/// A job's roster: the members and the job they train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Number of members (must equal the `members` listed).
    pub n: usize,
    /// The job.
    pub job: JobSpec,
    /// The members, in node-index order.
    pub members: Vec<Member>,
}

mod peer_string {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_base58())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid PeerId {s:?}: {e}")))
    }
}

impl Roster {
    /// Reads and checks a roster file.
    pub fn load(path: &Path) -> Result<Self> {
        let r = Self::load_unchecked(path)?;
        r.validate()
            .with_context(|| format!("roster {}", path.display()))?;
        Ok(r)
    }

    /// Reads a roster file that may still be incomplete (fewer members than
    /// the rule needs, as while `rampart roster add` fills it): the syntax,
    /// the job section and the member list are checked, not the rule's
    /// precondition.
    pub fn load_unchecked(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = missing_hint(&e, "create one with `rampart roster new` (see its --help)");
            anyhow::anyhow!("cannot read roster {}: {e}{hint}", path.display())
        })?;
        let r: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.message().trim()))
            .with_context(|| format!("roster {}", path.display()))?;
        r.validate_members()
            .and_then(|()| r.job.validate())
            .with_context(|| format!("roster {}", path.display()))?;
        Ok(r)
    }

    /// Writes the roster as TOML.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self).context("cannot encode the roster")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Checks the invariants: n, distinct members, the rule's precondition.
    pub fn validate(&self) -> Result<()> {
        self.validate_members()?;
        self.job.validate()?;
        let rule = self.job.rule()?;
        rule.check(self.n)
            .map_err(|e| anyhow::anyhow!("rule {} with n = {}: {e}", rule.id(), self.n))?;
        Ok(())
    }

    /// Checks n against the member list and that no member is listed twice.
    fn validate_members(&self) -> Result<()> {
        if self.n != self.members.len() {
            bail!(
                "n = {} but {} members are listed",
                self.n,
                self.members.len()
            );
        }
        let mut peers: Vec<PeerId> = self.members.iter().map(|m| m.peer).collect();
        peers.sort();
        peers.dedup();
        if peers.len() != self.members.len() {
            bail!("a member is listed twice");
        }
        Ok(())
    }

    /// The members' PeerIds, sorted (the canonical order).
    pub fn sorted_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.members.iter().map(|m| m.peer).collect();
        peers.sort();
        peers
    }

    /// The node index of `peer`: its rank among the sorted PeerIds (see the
    /// module docs), or `None` for a non-member.
    pub fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.sorted_peers().iter().position(|p| p == peer)
    }

    /// SHA-256 of the canonical roster (see the module docs).
    pub fn tag(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"rampart/roster/v1\0");
        // serde_json writes struct fields in declaration order: canonical.
        let job = serde_json::to_vec(&self.job).unwrap_or_default();
        h.update((job.len() as u64).to_le_bytes());
        h.update(&job);
        let peers = self.sorted_peers();
        h.update((peers.len() as u64).to_le_bytes());
        for p in &peers {
            let b = p.to_bytes();
            h.update((b.len() as u64).to_le_bytes());
            h.update(&b);
        }
        h.finalize().into()
    }
}

/// "; `what to do`" when `e` says the file does not exist, else nothing.
fn missing_hint(e: &std::io::Error, what_to_do: &str) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("; {what_to_do}")
    } else {
        String::new()
    }
}

/// Reads a key file written by [`write_key`].
pub fn read_key(path: &Path) -> Result<Keypair> {
    let bytes = std::fs::read(path).map_err(|e| {
        let make = format!("create one with `rampart keygen --out {}`", path.display());
        anyhow::anyhow!(
            "cannot read key file {}: {e}{}",
            path.display(),
            missing_hint(&e, &make)
        )
    })?;
    let key = Keypair::from_protobuf_encoding(&bytes)
        .with_context(|| format!("{} is not a rampart key file", path.display()))?;
    if key.clone().try_into_ed25519().is_err() {
        bail!("{} does not hold an Ed25519 key", path.display());
    }
    Ok(key)
}

/// Writes `key` (libp2p protobuf encoding) to `path` with mode 0600,
/// refusing to overwrite an existing file.
pub fn write_key(path: &Path, key: &Keypair) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the key")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))
}

/// The deterministic key of node `index` of a testnet with `seed`.
pub fn testnet_key(seed: u64, index: usize) -> Keypair {
    let mut h = Sha256::new();
    h.update(b"rampart/testnet-key/v1\0");
    h.update(seed.to_le_bytes());
    h.update((index as u64).to_le_bytes());
    let bytes: [u8; 32] = h.finalize().into();
    // Any 32 bytes are a valid Ed25519 secret key.
    Keypair::ed25519_from_bytes(bytes).unwrap_or_else(|_| Keypair::generate_ed25519())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    #[test]
    fn roster_round_trips_and_tag_ignores_addresses() {
        let s = Scenario::quickstart();
        let mut r = s.roster(1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roster.toml");
        r.save(&p).unwrap();
        let back = Roster::load(&p).unwrap();
        assert_eq!(back, r);
        let tag = r.tag();
        r.members[0]
            .addrs
            .push("/ip4/127.0.0.1/tcp/1".parse().unwrap());
        assert_eq!(r.tag(), tag);
        // Member order does not matter either, and indices follow PeerIds.
        let peer = r.members[0].peer;
        let index = r.index_of(&peer);
        r.members.reverse();
        assert_eq!(r.tag(), tag);
        assert_eq!(r.index_of(&peer), index);
        r.job.lr = 0.5;
        assert_ne!(r.tag(), tag);
    }

    #[test]
    fn dampening_is_optional_and_part_of_the_job() {
        let s = Scenario::quickstart();
        let mut r = s.roster(1);
        // Left out at its default, so rosters written before the key existed
        // read back the same and keep their tag.
        let text = toml::to_string_pretty(&r).unwrap();
        assert!(!text.contains("dampening"), "{text}");
        let tag = r.tag();
        r.job.dampening = 0.9;
        assert_ne!(r.tag(), tag);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roster.toml");
        r.save(&p).unwrap();
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("dampening = 0.9")
        );
        assert_eq!(Roster::load(&p).unwrap(), r);
        r.job.dampening = 1.5;
        let e = format!("{:#}", r.job.validate().unwrap_err());
        assert!(e.contains("dampening"), "{e}");
    }

    #[test]
    fn encoding_is_optional_and_part_of_the_job() {
        let s = Scenario::quickstart();
        let mut r = s.roster(1);
        let text = toml::to_string_pretty(&r).unwrap();
        assert!(!text.contains("encoding"), "{text}");
        let tag = r.tag();
        r.job.encoding = crate::spec::GradientEncoding::Bf16;
        assert_ne!(r.tag(), tag);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roster.toml");
        r.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("encoding = \"bf16\""), "{text}");
        assert_eq!(Roster::load(&p).unwrap(), r);
        std::fs::write(&p, text.replace("\"bf16\"", "\"f16\"")).unwrap();
        let e = format!("{:#}", Roster::load(&p).unwrap_err());
        assert!(e.contains("f16"), "{e}");
    }

    #[test]
    fn bad_rosters_are_refused() {
        let s = Scenario::quickstart();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roster.toml");
        let text = toml::to_string_pretty(&s.roster(1)).unwrap();
        std::fs::write(&p, text.replace("n = 7", "n = 7\nextra = 1")).unwrap();
        let e = format!("{:#}", Roster::load(&p).unwrap_err());
        assert!(e.contains("unknown field"), "{e}");
        std::fs::write(&p, text.replace("n = 7", "n = 6")).unwrap();
        assert!(Roster::load(&p).is_err());
    }

    #[test]
    fn keys_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let k = testnet_key(1, 0);
        write_key(&p, &k).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&p).unwrap().public(), k.public());
        assert!(write_key(&p, &k).is_err());
    }
}
