//! Splitting a training set across the nodes of a job.

use serde::{Deserialize, Serialize};

use crate::error::PartitionError;
use crate::rng::Rng;

/// How the training set is split across `n` nodes. Every split is a
/// deterministic function of the labels, `n` and the seed, and uses every
/// sample at most once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Partition {
    /// A seeded shuffle cut into `n` parts whose sizes differ by at most
    /// one; every sample is used.
    Iid,
    /// Label skew (Hsu et al., 2019): for each class, node shares are drawn
    /// from a symmetric Dirichlet(`alpha`) and that class's (shuffled)
    /// samples are cut accordingly. Small `alpha` (0.1) gives nodes few
    /// classes; large `alpha` (100) approaches IID. Every sample is used;
    /// a node may get none.
    Dirichlet {
        /// Concentration, positive.
        alpha: f64,
    },
}

impl Partition {
    /// Sample indices for each of `n` nodes (each list ascending).
    pub fn split(
        &self,
        labels: &[u32],
        n: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, PartitionError> {
        partition(*self, labels, n, seed)
    }

    /// Sample indices of node `node` of `n` (ascending).
    pub fn shard(
        &self,
        labels: &[u32],
        n: usize,
        node: usize,
        seed: u64,
    ) -> Result<Vec<usize>, PartitionError> {
        if node >= n {
            return Err(PartitionError::NodeOutOfRange { node, nodes: n });
        }
        let mut parts = self.split(labels, n, seed)?;
        Ok(parts.swap_remove(node))
    }
}

/// Splits the samples with `labels` across `n` nodes; see [`Partition`].
///
/// ```
/// use rampart_learn::{partition, Partition};
/// let labels: Vec<u32> = (0..100).map(|i| i % 10).collect();
/// let parts = partition(Partition::Iid, &labels, 3, 42)?;
/// assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [34, 33, 33]);
/// # Ok::<(), rampart_learn::PartitionError>(())
/// ```
pub fn partition(
    how: Partition,
    labels: &[u32],
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, PartitionError> {
    if n == 0 {
        return Err(PartitionError::ZeroNodes);
    }
    let mut parts = vec![Vec::new(); n];
    match how {
        Partition::Iid => {
            let mut idx: Vec<usize> = (0..labels.len()).collect();
            Rng::derived(seed, b"partition/iid").shuffle(&mut idx);
            let (q, r) = (labels.len() / n, labels.len() % n);
            let mut start = 0;
            for (i, part) in parts.iter_mut().enumerate() {
                let len = q + usize::from(i < r);
                part.extend_from_slice(&idx[start..start + len]);
                start += len;
            }
        }
        Partition::Dirichlet { alpha } => {
            if !(alpha.is_finite() && alpha > 0.0) {
                return Err(PartitionError::BadAlpha { alpha });
            }
            let mut rng = Rng::derived(seed, b"partition/dirichlet");
            let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
            let mut by_class = vec![Vec::new(); classes];
            for (i, &l) in labels.iter().enumerate() {
                by_class[l as usize].push(i);
            }
            for mut members in by_class {
                rng.shuffle(&mut members);
                let g: Vec<f64> = (0..n).map(|_| rng.gamma(alpha)).collect();
                let total: f64 = g.iter().sum();
                let m = members.len();
                // Cut points from the cumulative shares; when every draw
                // underflowed to zero, fall back to even shares.
                let mut cum = 0.0;
                let mut start = 0;
                for (node, &gi) in g.iter().enumerate() {
                    cum += if total > 0.0 {
                        gi / total
                    } else {
                        1.0 / n as f64
                    };
                    let end = if node + 1 == n {
                        m
                    } else {
                        ((cum * m as f64) as usize).clamp(start, m)
                    };
                    parts[node].extend_from_slice(&members[start..end]);
                    start = end;
                }
            }
        }
    }
    for p in &mut parts {
        p.sort_unstable();
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_disjoint_cover(parts: &[Vec<usize>], len: usize) {
        let mut seen = vec![false; len];
        for p in parts {
            for &i in p {
                assert!(!seen[i], "sample {i} used twice");
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "a sample was dropped");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn iid_is_a_balanced_partition(len in 0usize..500, n in 1usize..20, seed: u64) {
            let labels: Vec<u32> = (0..len as u32).map(|i| i % 7).collect();
            let parts = partition(Partition::Iid, &labels, n, seed).unwrap();
            prop_assert_eq!(parts.len(), n);
            check_disjoint_cover(&parts, len);
            let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            prop_assert_eq!(&parts, &partition(Partition::Iid, &labels, n, seed).unwrap());
        }

        #[test]
        fn dirichlet_is_a_partition(
            labels in proptest::collection::vec(0u32..10, 0..400),
            n in 1usize..12,
            alpha in 0.01f64..100.0,
            seed: u64,
        ) {
            let how = Partition::Dirichlet { alpha };
            let parts = partition(how, &labels, n, seed).unwrap();
            prop_assert_eq!(parts.len(), n);
            check_disjoint_cover(&parts, labels.len());
            prop_assert_eq!(&parts, &partition(how, &labels, n, seed).unwrap());
        }
    }

    #[test]
    fn small_alpha_skews_labels() {
        let labels: Vec<u32> = (0..10_000).map(|i| i % 10).collect();
        let classes_per_node = |alpha: f64| {
            let parts = partition(Partition::Dirichlet { alpha }, &labels, 10, 1).unwrap();
            let mut total = 0;
            for p in &parts {
                let mut counts = [0usize; 10];
                for &i in p {
                    counts[labels[i] as usize] += 1;
                }
                // Classes making up at least 5% of the node's data.
                total += counts.iter().filter(|&&c| c * 20 >= p.len().max(1)).count();
            }
            total as f64 / 10.0
        };
        let skewed = classes_per_node(0.1);
        let flat = classes_per_node(100.0);
        assert!(skewed < 5.0, "{skewed}");
        assert!(flat > 9.0, "{flat}");
    }

    #[test]
    fn errors() {
        assert_eq!(
            partition(Partition::Iid, &[0], 0, 0),
            Err(PartitionError::ZeroNodes)
        );
        assert_eq!(
            partition(Partition::Dirichlet { alpha: 0.0 }, &[0], 2, 0),
            Err(PartitionError::BadAlpha { alpha: 0.0 })
        );
        assert_eq!(
            Partition::Iid.shard(&[0, 1], 2, 2, 0),
            Err(PartitionError::NodeOutOfRange { node: 2, nodes: 2 })
        );
        let all = Partition::Iid.split(&[0, 1, 2, 3], 2, 9).unwrap();
        assert_eq!(
            Partition::Iid.shard(&[0, 1, 2, 3], 2, 1, 9).unwrap(),
            all[1]
        );
    }
}
