//! The record of the last gradient this node signed, kept next to its
//! checkpoint so that a restarted node never signs a different gradient for
//! a round it already signed.
//!
//! A node killed after signing round t restarts from the checkpoint of
//! round t − 1 and computes round t's gradient again. A trainer whose
//! gradient is a function of its checkpointed state (rampart-learn's
//! `Learner` is: parameters, momentum and the batch sampler are all in the
//! checkpoint) gets the same bits, hence the same hash. Any other trainer
//! may not, and a second, different signed header for round t would be an
//! equivocation proof against an honest node. The node therefore records
//! `(job, round, payload hash)` before sending each gradient, and on
//! restart compares a recomputed gradient of that round with the record.
//!
//! The record is written with a rename over the previous one, without
//! fsync: it must survive the process being killed, which the kernel's
//! page cache guarantees; a machine that loses power also loses the
//! round's connections, and peers that received the header keep it either
//! way.

use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::wire::JobId;

/// File name of the record inside the checkpoint directory.
pub(crate) const SIGNED_FILE: &str = "rampart-node.signed";

const MAGIC: &[u8; 16] = b"rampart-signed1\n";
const LEN: usize = MAGIC.len() + 32 + 8 + 32;

/// The last gradient signed: its round and payload hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signed {
    pub(crate) round: u64,
    pub(crate) hash: [u8; 32],
}

/// Where the record lives, next to the checkpoint file `checkpoint`.
pub(crate) fn record_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_file_name(SIGNED_FILE)
}

/// Replaces the record at `path` with `signed` for `job`.
pub(crate) fn write(path: &Path, job: &JobId, signed: Signed) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&job.0);
    bytes.extend_from_slice(&signed.round.to_le_bytes());
    bytes.extend_from_slice(&signed.hash);
    let tmp = path.with_extension("signed.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
}

/// Before a node sends its gradient of `round` with payload hash `hash`:
/// whether it may, given the record `before` found at start. It may not
/// when it signed a gradient with another hash for this round before a
/// restart (its trainer did not recompute the same bits) and the rule
/// tolerates a missing input (`f` ≥ 1); with f = 0 the round cannot close
/// without it, so the node sends it anyway and says so. When it may, the
/// signature is recorded at `path` first.
pub(crate) fn keep_word(
    path: &Path,
    job: &JobId,
    before: Option<Signed>,
    round: u64,
    hash: [u8; 32],
    f: usize,
) -> bool {
    if let Some(before) = before.filter(|s| s.round == round)
        && before.hash != hash
    {
        if f >= 1 {
            warn!(
                round,
                "this node signed another gradient for this round before it restarted \
                 (its trainer's gradient is not a function of its checkpoint): sending \
                 nothing this round rather than a second, conflicting input"
            );
            return false;
        }
        warn!(
            round,
            "this node signed another gradient for this round before it restarted and the \
             rule tolerates no missing input (f = 0): sending the new one; peers that hold \
             the first will exclude this node as an equivocator"
        );
    }
    if let Err(e) = write(path, job, Signed { round, hash }) {
        warn!(error = %e, path = %path.display(), "cannot record the signed gradient");
    }
    true
}

/// The record at `path` for `job`: `Ok(None)` when there is none, or when it
/// belongs to another job; an error when it cannot be read or is not a
/// record.
pub(crate) fn read(path: &Path, job: &JobId) -> io::Result<Option<Signed>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (magic, rest) = bytes.split_at(bytes.len().min(MAGIC.len()));
    if bytes.len() != LEN || magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a signed-gradient record ({} bytes)",
                path.display(),
                bytes.len()
            ),
        ));
    }
    let (record_job, rest) = rest.split_at(32);
    if record_job != job.0 {
        return Ok(None);
    }
    let (round, hash) = rest.split_at(8);
    let mut r = [0u8; 8];
    r.copy_from_slice(round);
    let mut h = [0u8; 32];
    h.copy_from_slice(hash);
    Ok(Some(Signed {
        round: u64::from_le_bytes(r),
        hash: h,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_other_job_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(&dir.path().join(crate::CHECKPOINT_FILE));
        let job = JobId([7; 32]);
        assert_eq!(read(&path, &job).unwrap(), None);
        let s = Signed {
            round: 41,
            hash: [3; 32],
        };
        write(&path, &job, s).unwrap();
        assert_eq!(read(&path, &job).unwrap(), Some(s));
        let later = Signed {
            round: 42,
            hash: [4; 32],
        };
        write(&path, &job, later).unwrap();
        assert_eq!(read(&path, &job).unwrap(), Some(later));
        // Another job's record says nothing about this job.
        assert_eq!(read(&path, &JobId([8; 32])).unwrap(), None);
        // Truncated or foreign bytes are an error, not a record.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..LEN - 1]).unwrap();
        assert!(read(&path, &job).is_err());
        std::fs::write(&path, b"something else").unwrap();
        assert!(read(&path, &job).is_err());
        let mut wrong = bytes.clone();
        wrong[0] ^= 1;
        std::fs::write(&path, &wrong).unwrap();
        assert!(read(&path, &job).is_err());
    }

    #[test]
    fn keep_word_withholds_only_a_changed_gradient_of_the_recorded_round() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(&dir.path().join(crate::CHECKPOINT_FILE));
        let job = JobId([7; 32]);
        let before = Some(Signed {
            round: 5,
            hash: [1; 32],
        });
        // Another hash for the recorded round, with f = 1: withheld, and
        // the record is not replaced.
        assert!(!keep_word(&path, &job, before, 5, [2; 32], 1));
        assert_eq!(read(&path, &job).unwrap(), None);
        // With f = 0 the round needs it: sent, and recorded.
        assert!(keep_word(&path, &job, before, 5, [2; 32], 0));
        let expect = |round, hash| Some(Signed { round, hash });
        assert_eq!(read(&path, &job).unwrap(), expect(5, [2; 32]));
        // The same hash, or another round: sent and recorded.
        assert!(keep_word(&path, &job, before, 5, [1; 32], 1));
        assert_eq!(read(&path, &job).unwrap(), expect(5, [1; 32]));
        assert!(keep_word(&path, &job, before, 6, [3; 32], 1));
        assert_eq!(read(&path, &job).unwrap(), expect(6, [3; 32]));
        assert!(keep_word(&path, &job, None, 7, [4; 32], 1));
        assert_eq!(read(&path, &job).unwrap(), expect(7, [4; 32]));
    }
}
