//! Pairwise squared distances (spec C3), blockwise and in parallel.
//!
//! The coordinates are cut into fixed super-blocks of [`SUPER_BLOCK`]
//! coordinates that rayon spreads over the threads; inside a super-block the
//! work goes tile by tile ([`TILE`] coordinates, small enough that the tiles
//! of all n rows stay in L2), so each input is read from memory once. One row
//! is compared with four others at a time, in 16 independent lanes; `f32`
//! lanes are widened into `f64` lanes every [`FLUSH`] coordinates.
//!
//! The summation order is a function of `d` alone — not of the number of
//! threads, nor of the instruction set the kernel was compiled for — so every
//! machine computes the same bits for the same inputs. That is what lets
//! honest nodes on different hardware agree on the aggregate.

use rayon::prelude::*;

use crate::Float;

/// Coordinates per parallel task.
const SUPER_BLOCK: usize = 1 << 16;
/// Coordinates per cache tile inside a task.
const TILE: usize = 2048;
/// Independent accumulation lanes.
const LANES: usize = 16;
/// Coordinates accumulated in `T` before the lane sums go into `f64`.
const FLUSH: usize = 512;

/// Symmetric n×n matrix of squared distances with a zero diagonal.
#[derive(Clone, Debug)]
pub struct DistanceMatrix {
    n: usize,
    d: Vec<f64>,
}

impl DistanceMatrix {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` when there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Squared distance between vectors `i` and `j` (NaN already mapped to +∞).
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.d[i * self.n + j]
    }

    /// Computes every pairwise squared distance of `rows` (all of one length).
    pub fn compute<T: Float>(rows: &[&[T]]) -> Self {
        let n = rows.len();
        let dim = rows.first().map_or(0, |r| r.len());
        let pairs = n * n.saturating_sub(1) / 2;
        let mut d = vec![0.0f64; n * n];
        if pairs == 0 || dim == 0 {
            return Self { n, d };
        }
        let blocks = dim.div_ceil(SUPER_BLOCK);
        let partials: Vec<Vec<f64>> = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let lo = b * SUPER_BLOCK;
                let hi = (lo + SUPER_BLOCK).min(dim);
                let mut acc = vec![0.0f64; pairs];
                super_block(rows, lo, hi, &mut acc);
                acc
            })
            .collect();
        let mut total = vec![0.0f64; pairs];
        for p in &partials {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        let mut k = 0;
        for i in 0..n {
            for j in i + 1..n {
                let v = if total[k].is_nan() {
                    f64::INFINITY
                } else {
                    total[k]
                };
                d[i * n + j] = v;
                d[j * n + i] = v;
                k += 1;
            }
        }
        Self { n, d }
    }
}

/// Index of pair (i, j), i < j, in the packed upper triangle.
#[inline(always)]
fn pair_index(n: usize, i: usize, j: usize) -> usize {
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

fn super_block<T: Float>(rows: &[&[T]], lo: usize, hi: usize, acc: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                super_block_avx2(rows, lo, hi, acc)
            };
            return;
        }
    }
    super_block_generic(rows, lo, hi, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn super_block_avx2<T: Float>(rows: &[&[T]], lo: usize, hi: usize, acc: &mut [f64]) {
    super_block_generic(rows, lo, hi, acc);
}

#[inline(always)]
fn super_block_generic<T: Float>(rows: &[&[T]], lo: usize, hi: usize, acc: &mut [f64]) {
    let n = rows.len();
    let mut t0 = lo;
    while t0 < hi {
        let t1 = (t0 + TILE).min(hi);
        for i in 0..n {
            let xi = &rows[i][t0..t1];
            let mut j = i + 1;
            while j + 4 <= n {
                let xs = [
                    &rows[j][t0..t1],
                    &rows[j + 1][t0..t1],
                    &rows[j + 2][t0..t1],
                    &rows[j + 3][t0..t1],
                ];
                let s = dist_k(xi, xs);
                for (q, v) in s.iter().enumerate() {
                    acc[pair_index(n, i, j + q)] += v;
                }
                j += 4;
            }
            let rest: &mut [f64] = &mut [0.0; 3][..n - j];
            match n - j {
                3 => rest.copy_from_slice(&dist_k(
                    xi,
                    [&rows[j][t0..t1], &rows[j + 1][t0..t1], &rows[j + 2][t0..t1]],
                )),
                2 => rest.copy_from_slice(&dist_k(xi, [&rows[j][t0..t1], &rows[j + 1][t0..t1]])),
                1 => rest.copy_from_slice(&dist_k(xi, [&rows[j][t0..t1]])),
                _ => {}
            }
            for (q, v) in rest.iter().enumerate() {
                acc[pair_index(n, i, j + q)] += v;
            }
        }
        t0 = t1;
    }
}

/// Sum of the `f64` lanes in a fixed pairwise order.
#[inline(always)]
fn reduce_lanes(mut w: [f64; LANES]) -> f64 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            w[l] += w[l + width];
        }
        width /= 2;
    }
    w[0]
}

/// Squared distances from `xi` to each of `xs` over one tile.
///
/// Lane l of accumulator q collects coordinates ≡ l (mod 16); the `T` lanes
/// are widened into `f64` lanes every [`FLUSH`] coordinates, and the `f64`
/// lanes are summed pairwise at the end of the tile.
#[inline(always)]
fn dist_k<T: Float, const K: usize>(xi: &[T], xs: [&[T]; K]) -> [f64; K] {
    let len = xi.len();
    let mut tot = [[0.0f64; LANES]; K];
    let mut c0 = 0;
    while c0 < len {
        let c1 = (c0 + FLUSH).min(len);
        let mut a = [[T::ZERO; LANES]; K];
        let full = c0 + (c1 - c0) / LANES * LANES;
        let mut c = c0;
        while c < full {
            let x = &xi[c..c + LANES];
            for (q, y) in xs.iter().enumerate() {
                let y = &y[c..c + LANES];
                for l in 0..LANES {
                    a[q][l] = T::sq_acc(a[q][l], x[l] - y[l]);
                }
            }
            c += LANES;
        }
        for cc in full..c1 {
            for (q, y) in xs.iter().enumerate() {
                a[q][cc - full] = T::sq_acc(a[q][cc - full], xi[cc] - y[cc]);
            }
        }
        for q in 0..K {
            for l in 0..LANES {
                tot[q][l] += a[q][l].to_f64();
            }
        }
        c0 = c1;
    }
    let mut out = [0.0f64; K];
    for q in 0..K {
        out[q] = reduce_lanes(tot[q]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::sq_dist_exact;

    #[test]
    fn matches_exact_distances_on_awkward_lengths() {
        for &d in &[1usize, 3, 15, 16, 17, 255, 257, 2049, 70_001] {
            let rows: Vec<Vec<f64>> = (0..7)
                .map(|i| {
                    (0..d)
                        .map(|c| ((i * 31 + c * 7) % 13) as f64 - 6.0)
                        .collect()
                })
                .collect();
            let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
            let m = DistanceMatrix::compute(&refs);
            for i in 0..7 {
                assert_eq!(m.get(i, i), 0.0);
                for j in 0..7 {
                    if i != j {
                        // small integers: every order is exact
                        assert_eq!(m.get(i, j), sq_dist_exact(refs[i], refs[j]), "d={d}");
                    }
                }
            }
        }
    }

    #[test]
    fn nan_distance_is_infinite() {
        let a = [1.0f32, f32::NAN];
        let b = [1.0f32, 2.0];
        let m = DistanceMatrix::compute(&[&a[..], &b[..]]);
        assert_eq!(m.get(0, 1), f64::INFINITY);
    }

    #[test]
    fn pair_index_is_dense() {
        let n = 9;
        let mut k = 0;
        for i in 0..n {
            for j in i + 1..n {
                assert_eq!(pair_index(n, i, j), k);
                k += 1;
            }
        }
    }
}
