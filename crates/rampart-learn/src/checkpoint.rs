//! Checkpoints: one safetensors file holding a node's training state,
//! written atomically and checked on load.
//!
//! Layout: tensors `parameters` (F32 `[d]`), `momentum` (F32 `[d]`, or
//! `[0]` without momentum), `rng` (U64 `[4]`); metadata `format`
//! (`rampart-learn/1`), `round`, `step`, `config` (hex SHA-256 of the
//! configuration) and `digest` (hex SHA-256 over all of the above), so a
//! flipped bit anywhere is caught.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::error::{CheckpointError, CorruptKind};
use crate::learner::hex;

const FORMAT: &str = "rampart-learn";
const VERSION: u32 = 1;
/// Largest checkpoint read (1 GiB: 100M-parameter models with momentum).
const LIMIT: u64 = 1 << 30;

/// A node's training state as stored on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The protocol round the state belongs to.
    pub round: u64,
    /// Updates applied (the schedule's clock).
    pub step: u64,
    /// Batch sampler state.
    pub rng: [u64; 4],
    /// Hash of the configuration the state belongs to.
    pub config_hash: [u8; 32],
    /// Parameters in flat order.
    pub parameters: Vec<f32>,
    /// Momentum buffer in flat order (empty without momentum).
    pub momentum: Vec<f32>,
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn digest(round: u64, step: u64, config: &str, params: &[u8], mom: &[u8], rng: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{FORMAT}/{VERSION}\0{round}\0{step}\0{config}\0").as_bytes());
    for part in [params, mom, rng] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex(&h.finalize())
}

/// Writes `ckpt` to `path` via a temporary file in the same directory,
/// fsynced and renamed over `path`; the directory is fsynced too, so after
/// a crash `path` holds either the old or the new checkpoint.
pub(crate) fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let params = f32_bytes(&ckpt.parameters);
    let mom = f32_bytes(&ckpt.momentum);
    let rng: Vec<u8> = ckpt.rng.iter().flat_map(|x| x.to_le_bytes()).collect();
    let config = hex(&ckpt.config_hash);
    let metadata = HashMap::from([
        ("format".to_owned(), format!("{FORMAT}/{VERSION}")),
        ("round".to_owned(), ckpt.round.to_string()),
        ("step".to_owned(), ckpt.step.to_string()),
        ("config".to_owned(), config.clone()),
        (
            "digest".to_owned(),
            digest(ckpt.round, ckpt.step, &config, &params, &mom, &rng),
        ),
    ]);
    let corrupt = |kind| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        kind,
    };
    let views = [
        (
            "parameters",
            TensorView::new(Dtype::F32, vec![ckpt.parameters.len()], &params)
                .map_err(|_| corrupt(CorruptKind::BadTensor("parameters")))?,
        ),
        (
            "momentum",
            TensorView::new(Dtype::F32, vec![ckpt.momentum.len()], &mom)
                .map_err(|_| corrupt(CorruptKind::BadTensor("momentum")))?,
        ),
        (
            "rng",
            TensorView::new(Dtype::U64, vec![4], &rng)
                .map_err(|_| corrupt(CorruptKind::BadTensor("rng")))?,
        ),
    ];
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|_| corrupt(CorruptKind::Container))?;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "checkpoint path has no file name",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads and checks a checkpoint: container, format version, tensor shapes
/// and the digest. Whether it belongs to the current job is the caller's
/// check (see [`crate::Learner::load_checkpoint`]).
pub(crate) fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |kind| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        kind,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > LIMIT {
        return Err(corrupt(CorruptKind::Container));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|_| corrupt(CorruptKind::Container))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|_| corrupt(CorruptKind::Container))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or(corrupt(CorruptKind::BadMetadata("format")))?;
    let get = |key: &'static str| meta.get(key).ok_or(corrupt(CorruptKind::BadMetadata(key)));
    let format = get("format")?;
    let version = format
        .strip_prefix(FORMAT)
        .and_then(|v| v.strip_prefix('/'))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or(corrupt(CorruptKind::BadMetadata("format")))?;
    if version != VERSION {
        return Err(CheckpointError::Version {
            path: path.to_path_buf(),
            expected: VERSION,
            found: version,
        });
    }
    let num = |key: &'static str| -> Result<u64, CheckpointError> {
        get(key)?
            .parse()
            .map_err(|_| corrupt(CorruptKind::BadMetadata(key)))
    };
    let round = num("round")?;
    let step = num("step")?;
    let config = get("config")?;
    let mut config_hash = [0u8; 32];
    if config.len() != 64 {
        return Err(corrupt(CorruptKind::BadMetadata("config")));
    }
    for (i, byte) in config_hash.iter_mut().enumerate() {
        *byte = config
            .get(2 * i..2 * i + 2)
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .ok_or(corrupt(CorruptKind::BadMetadata("config")))?;
    }
    let tensor = |name: &'static str, dtype: Dtype| -> Result<&[u8], CheckpointError> {
        let t = st
            .tensor(name)
            .map_err(|_| corrupt(CorruptKind::MissingTensor(name)))?;
        if t.dtype() != dtype || t.shape().len() != 1 {
            return Err(corrupt(CorruptKind::BadTensor(name)));
        }
        Ok(t.data())
    };
    let params = tensor("parameters", Dtype::F32)?;
    let mom = tensor("momentum", Dtype::F32)?;
    let rng = tensor("rng", Dtype::U64)?;
    if rng.len() != 32 {
        return Err(corrupt(CorruptKind::BadTensor("rng")));
    }
    if get("digest")? != &digest(round, step, config, params, mom, rng) {
        return Err(corrupt(CorruptKind::DigestMismatch));
    }
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut rng_state = [0u64; 4];
    for (s, c) in rng_state.iter_mut().zip(rng.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *s = u64::from_le_bytes(b);
    }
    Ok(Checkpoint {
        round,
        step,
        rng: rng_state,
        config_hash,
        parameters: floats(params),
        momentum: floats(mom),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            round: 17,
            step: 16,
            rng: [1, 2, 3, u64::MAX],
            config_hash: [7; 32],
            parameters: vec![1.0, -2.5, f32::MIN_POSITIVE],
            momentum: vec![0.5, 0.25, -0.0],
        }
    }

    #[test]
    fn round_trip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.ckpt");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
        let mut next = sample();
        next.round = 18;
        next.momentum.clear();
        save(&path, &next).unwrap();
        assert_eq!(load(&path).unwrap(), next);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ckpt");
        save(&path, &sample()).unwrap();
        let good = std::fs::read(&path).unwrap();

        // A flipped bit in the data.
        let mut bad = good.clone();
        let last = bad.len() - 20;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Corrupt {
                    kind: CorruptKind::DigestMismatch,
                    ..
                }
            ),
            "{e}"
        );
        // Truncated.
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Corrupt {
                    kind: CorruptKind::Container,
                    ..
                }
            ),
            "{e}"
        );
        // Not a checkpoint at all.
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::Corrupt { .. })));
        // Another format version.
        let tag = b"rampart-learn/1";
        let at = good.windows(tag.len()).position(|w| w == tag).unwrap();
        let mut other = good.clone();
        other[at + tag.len() - 1] = b'9';
        std::fs::write(&path, &other).unwrap();
        assert!(matches!(
            load(&path),
            Err(CheckpointError::Version { found: 9, .. })
        ));
        // Missing file.
        assert!(matches!(
            load(&dir.path().join("none")),
            Err(CheckpointError::Io { .. })
        ));
    }
}
