//! Pairwise squared distances (spec C3), blockwise and in parallel.
//!
//! The coordinates are cut into fixed super-blocks of [`SUPER_BLOCK`]
//! coordinates that rayon spreads over the threads; inside a super-block the
//! work goes tile by tile ([`TILE`] coordinates, small enough that the tiles
//! of all n rows stay in L2), so each input is read from memory once. Each
//! pair is accumulated in 16 independent lanes; `f32` lanes are widened into
//! `f64` lanes every [`FLUSH`] coordinates. Three kernels compute exactly
//! that, chosen at run time: AVX-512F (four rows against four others, one
//! register per pair, prefetching the next tile while it computes), AVX2
//! with FMA (two rows against three others) and the portable one.
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
pub(crate) const TILE: usize = 4096;
/// Independent accumulation lanes.
pub(crate) const LANES: usize = 16;
/// Coordinates accumulated in `T` before the lane sums go into `f64`.
pub(crate) const FLUSH: usize = 512;

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
pub(crate) fn pair_index(n: usize, i: usize, j: usize) -> usize {
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

fn super_block<T: Float>(rows: &[&[T]], lo: usize, hi: usize, acc: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && let Some(rows32) = T::as_f32_rows(rows)
        {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                avx512::super_block_f32(rows32, lo, hi, acc)
            };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            if let Some(rows32) = T::as_f32_rows(rows) {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                #[allow(unsafe_code)]
                unsafe {
                    avx2::super_block_f32(rows32, lo, hi, acc)
                };
            } else {
                // SAFETY: as above.
                #[allow(unsafe_code)]
                unsafe {
                    super_block_avx2(rows, lo, hi, acc)
                };
            }
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
            // Three pairs at a time (6 accumulator registers with 16 lanes;
            // four would spill). The last group of a row is padded with
            // copies of its last row, whose results are dropped: one kernel,
            // no slow remainder code.
            let mut j = i + 1;
            while j < n {
                let j1 = (j + 1).min(n - 1);
                let j2 = (j + 2).min(n - 1);
                let s = dist_k(xi, [&rows[j][t0..t1], &rows[j1][t0..t1], &rows[j2][t0..t1]]);
                for (q, v) in s.iter().enumerate().take(n - j) {
                    acc[pair_index(n, i, j + q)] += v;
                }
                j += 3;
            }
        }
        t0 = t1;
    }
}

/// Sum of the `f64` lanes in a fixed pairwise order.
#[inline(always)]
pub(crate) fn reduce_lanes(mut w: [f64; LANES]) -> f64 {
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
    let full = len / LANES * LANES;
    let mut tot = [[0.0f64; LANES]; K];
    let mut c0 = 0;
    while c0 < full {
        let c1 = (c0 + FLUSH).min(full);
        // Only constant indices touch `a`, so it lives in registers.
        let mut a = [[T::ZERO; LANES]; K];
        let mut c = c0;
        while c < c1 {
            let x = &xi[c..c + LANES];
            for (q, y) in xs.iter().enumerate() {
                let y = &y[c..c + LANES];
                for l in 0..LANES {
                    a[q][l] = T::sq_acc(a[q][l], x[l] - y[l]);
                }
            }
            c += LANES;
        }
        for q in 0..K {
            for l in 0..LANES {
                tot[q][l] += a[q][l].to_f64();
            }
        }
        c0 = c1;
    }
    // The last len % 16 coordinates go, one per lane, straight into f64.
    for cc in full..len {
        for (q, y) in xs.iter().enumerate() {
            tot[q][cc - full] += T::sq_acc(T::ZERO, xi[cc] - y[cc]).to_f64();
        }
    }
    let mut out = [0.0f64; K];
    for q in 0..K {
        out[q] = reduce_lanes(tot[q]);
    }
    out
}

/// The `f32` distance kernel written with AVX2/FMA intrinsics.
///
/// LLVM does not keep the generic kernel's accumulators in registers, so
/// this one spells them out: six pairs at a time (two rows against three
/// others), two 8-lane registers per pair. It performs exactly the generic kernel's arithmetic — the same
/// lanes, the same fused multiply-adds, the same flushes into `f64` and the
/// same final reduction — so every machine gets the same bits whichever
/// kernel it runs.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{FLUSH, LANES, TILE, pair_index, reduce_lanes};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn super_block_f32(rows: &[&[f32]], lo: usize, hi: usize, acc: &mut [f64]) {
        let n = rows.len();
        let mut t0 = lo;
        while t0 < hi {
            let t1 = (t0 + TILE).min(hi);
            // Rows two at a time against three others: each loaded value of
            // the others serves two pairs, 10 loads per 16 coordinates of 6
            // pairs instead of 10 per 4. The others of rows i and i + 1 are
            // i + 1.. (row i + 1 skips itself), the last group padded with
            // copies of the last row; skipped and padded results are
            // dropped. A last row of odd n has no pair left.
            let mut i = 0;
            while i + 1 < n {
                let xs = [&rows[i][t0..t1], &rows[i + 1][t0..t1]];
                let mut j = i + 1;
                while j < n {
                    let pick = |k: usize| &rows[(j + k).min(n - 1)][t0..t1];
                    let s = dist2x3(xs, [pick(0), pick(1), pick(2)]);
                    for (r, row) in s.iter().enumerate() {
                        for (q, v) in row.iter().enumerate() {
                            let other = j + q;
                            if other < n && other > i + r {
                                acc[pair_index(n, i + r, other)] += v;
                            }
                        }
                    }
                    j += 3;
                }
                i += 2;
            }
            t0 = t1;
        }
    }

    /// Widens 8 `f32` lanes and adds them to two 4-lane `f64` sums.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn widen_add(a: __m256, lo: &mut __m256d, hi: &mut __m256d) {
        *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
        *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(a)));
    }

    /// Squared distances from each of `xs` to each of `ys` over one tile:
    /// `out[r][q]` is |xs[r] − ys[q]|². Each pair gets exactly the generic
    /// kernel's arithmetic (16 lanes, fused multiply-adds in coordinate
    /// order, flushes into `f64` every [`FLUSH`], the same reduction).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    // Constant-bound index loops over the register blocks read best here.
    #[allow(clippy::needless_range_loop)]
    fn dist2x3(xs: [&[f32]; 2], ys: [&[f32]; 3]) -> [[f64; 3]; 2] {
        let len = xs[0].len();
        assert!(
            xs.iter().chain(ys.iter()).all(|y| y.len() == len),
            "rows of one tile have one length"
        );
        let full = len / LANES * LANES;
        // tot[r][q][k] holds f64 lanes 4k..4k+4 of pair (r, q).
        let mut tot = [[[_mm256_setzero_pd(); 4]; 3]; 2];
        let xp = [xs[0].as_ptr(), xs[1].as_ptr()];
        let yp = [ys[0].as_ptr(), ys[1].as_ptr(), ys[2].as_ptr()];
        let mut c0 = 0;
        while c0 < full {
            let c1 = (c0 + FLUSH).min(full);
            // a[r][q][h]: lanes 8h..8h+8 of pair (r, q); 12 registers.
            let mut a = [[[_mm256_setzero_ps(); 2]; 3]; 2];
            let mut c = c0;
            while c < c1 {
                for h in 0..2 {
                    let off = c + 8 * h;
                    // SAFETY: off + 8 <= c + 16 <= full <= len, and every
                    // row of the tile has length len.
                    unsafe {
                        let x0 = _mm256_loadu_ps(xp[0].add(off));
                        let x1 = _mm256_loadu_ps(xp[1].add(off));
                        for q in 0..3 {
                            let y = _mm256_loadu_ps(yp[q].add(off));
                            let d0 = _mm256_sub_ps(x0, y);
                            a[0][q][h] = _mm256_fmadd_ps(d0, d0, a[0][q][h]);
                            let d1 = _mm256_sub_ps(x1, y);
                            a[1][q][h] = _mm256_fmadd_ps(d1, d1, a[1][q][h]);
                        }
                    }
                }
                c += LANES;
            }
            for r in 0..2 {
                for q in 0..3 {
                    let [t0, t1, t2, t3] = &mut tot[r][q];
                    widen_add(a[r][q][0], t0, t1);
                    widen_add(a[r][q][1], t2, t3);
                }
            }
            c0 = c1;
        }
        let mut out = [[0.0f64; 3]; 2];
        for r in 0..2 {
            for q in 0..3 {
                let mut w = [0.0f64; LANES];
                for (k, t) in tot[r][q].iter().enumerate() {
                    // SAFETY: w has 16 lanes; k * 4 + 4 <= 16.
                    unsafe { _mm256_storeu_pd(w.as_mut_ptr().add(4 * k), *t) };
                }
                for cc in full..len {
                    let t = xs[r][cc] - ys[q][cc];
                    w[cc - full] += f64::from(t.mul_add(t, 0.0));
                }
                out[r][q] = reduce_lanes(w);
            }
        }
        out
    }
}

/// The `f32` distance kernel written with AVX-512F intrinsics.
///
/// One 512-bit register holds the 16 lanes of one pair, so with 32
/// registers four rows are compared with four others at a time (16
/// accumulators), and nothing is computed for a pair that is not wanted:
/// the rows of a block are compared with each other by smaller kernels and
/// the last group of others is as wide as it needs to be.
///
/// The tile is walked [`FLUSH`] coordinates at a time across all pairs
/// (each pair's `f64` lanes kept in memory between steps), so that what one
/// step reads — `FLUSH` coordinates of every row, 40 KiB for 20 rows — stays
/// in L1 while every pair is computed from it. Each pair still gets exactly
/// the generic kernel's arithmetic — the same lanes, the same fused
/// multiply-adds in coordinate order, the same flushes into `f64` in the
/// same order and the same final reduction — so it computes the same bits as
/// the AVX2 and portable kernels.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{FLUSH, LANES, TILE, pair_index, reduce_lanes};

    /// Rows per block and others per group.
    const B: usize = 4;

    /// Hands out the cache lines of the next tile to prefetch into L2, one
    /// per kernel iteration, so their loads spread over the current tile's
    /// arithmetic: the tile's arithmetic and its reads from memory take
    /// about as long. Prefetching a step ahead in bursts measured slower;
    /// this spread made the pass about 10 % faster (Krum 5.5 against 6.2 ms
    /// at n = 20, d = 1e6). A hint only: no effect on results.
    struct Ahead {
        /// The first value of each row.
        rows: Vec<*const f32>,
        /// First coordinate of the tile being prefetched.
        from: usize,
        lines: usize,
        row: usize,
        line: usize,
    }

    impl Ahead {
        /// Nothing to prefetch yet; [`start`](Self::start) names a tile.
        fn new(rows: &[&[f32]]) -> Self {
            Self {
                rows: rows.iter().map(|r| r.as_ptr()).collect(),
                from: 0,
                lines: 0,
                row: 0,
                line: 0,
            }
        }
        /// Prefetches coordinates `from..to` (inside every row) from now on.
        fn start(&mut self, from: usize, to: usize) {
            self.from = from;
            self.lines = (to.saturating_sub(from) * 4).div_ceil(64);
            self.row = 0;
            self.line = 0;
        }
        #[inline(always)]
        fn issue(&mut self) {
            if self.line < self.lines {
                // SAFETY: a prefetch never faults; the address is inside the row.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T1>(
                        self.rows[self.row]
                            .wrapping_add(self.from + self.line * 16)
                            .cast::<i8>(),
                    )
                };
                self.row += 1;
                if self.row == self.rows.len() {
                    self.row = 0;
                    self.line += 1;
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn super_block_f32(rows: &[&[f32]], lo: usize, hi: usize, acc: &mut [f64]) {
        let n = rows.len();
        // The f64 lanes of every pair for the tile in progress.
        let mut tot = vec![[0.0f64; LANES]; acc.len()];
        let mut ahead = Ahead::new(rows);
        let mut t0 = lo;
        while t0 < hi {
            let t1 = (t0 + TILE).min(hi);
            let full = (t1 - t0) / LANES * LANES;
            tot.fill([0.0; LANES]);
            ahead.start(t1, (t1 + TILE).min(hi));
            let mut c0 = t0;
            while c0 < t0 + full {
                let c1 = (c0 + FLUSH).min(t0 + full);
                step(rows, c0, c1, &mut tot, &mut ahead);
                c0 = c1;
            }
            // The last len % 16 coordinates go, one per lane, straight into
            // f64; then each pair's lanes are reduced.
            for i in 0..n {
                for j in i + 1..n {
                    let p = pair_index(n, i, j);
                    let w = &mut tot[p];
                    for cc in t0 + full..t1 {
                        let t = rows[i][cc] - rows[j][cc];
                        w[cc - t0 - full] += f64::from(t.mul_add(t, 0.0));
                    }
                    acc[p] += reduce_lanes(*w);
                }
            }
            t0 = t1;
        }
    }

    /// Every pair over coordinates `c0..c1` (at most [`FLUSH`], a multiple
    /// of 16), flushed into the pairs' `f64` lanes.
    #[target_feature(enable = "avx512f")]
    fn step(rows: &[&[f32]], c0: usize, c1: usize, tot: &mut [[f64; LANES]], ahead: &mut Ahead) {
        let n = rows.len();
        assert!(
            rows.iter().all(|r| r.len() >= c1),
            "every row holds the coordinates of the step"
        );
        let part = |from: usize, to: usize| -> [*const f32; B] {
            // SAFETY (of the reads in `dispatch`): c0..c1 lies inside every
            // row, checked above.
            std::array::from_fn(|k| rows[(from + k).min(to - 1)][c0..].as_ptr())
        };
        let len = c1 - c0;
        let mut i = 0;
        while i + 1 < n {
            let r = B.min(n - i);
            // The rows of the block among themselves: row i + a against
            // rows i + a + 1 .. i + r.
            for a in 0..r - 1 {
                let me = i + a;
                let others = i + r - me - 1;
                let first = pair_index(n, me, me + 1);
                // SAFETY: every pointer reads `len` values inside its row.
                unsafe {
                    dispatch(
                        &part(me, me + 1)[..1],
                        &part(me + 1, i + r)[..others],
                        len,
                        |_, b| first + b,
                        tot,
                        ahead,
                    )
                };
            }
            // The block against every later row, B at a time.
            let xs = part(i, i + r);
            let mut j = i + r;
            while j < n {
                let q = B.min(n - j);
                // SAFETY: as above.
                unsafe {
                    dispatch(
                        &xs[..r],
                        &part(j, j + q)[..q],
                        len,
                        |a, b| pair_index(n, i + a, j + b),
                        tot,
                        ahead,
                    )
                };
                j += q;
            }
            i += r;
        }
    }

    /// Runs the `xs.len()`×`ys.len()` kernel (at most [`B`] each) over
    /// `len` values from each pointer and flushes pair (a, b) into
    /// `tot[index(a, b)]`.
    ///
    /// # Safety
    /// Every pointer of `xs` and `ys` must be valid for reading `len` values.
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch(
        xs: &[*const f32],
        ys: &[*const f32],
        len: usize,
        index: impl Fn(usize, usize) -> usize,
        tot: &mut [[f64; LANES]],
        ahead: &mut Ahead,
    ) {
        macro_rules! grid {
            ($(($r:literal, $q:literal)),*) => {
                match (xs.len(), ys.len()) {
                    $(($r, $q) => {
                        let x: [*const f32; $r] = std::array::from_fn(|k| xs[k]);
                        let y: [*const f32; $q] = std::array::from_fn(|k| ys[k]);
                        // SAFETY: the caller's promise.
                        let s = unsafe { chunk::<$r, $q>(x, y, len, ahead) };
                        for (a, row) in s.iter().enumerate() {
                            for (b, v) in row.iter().enumerate() {
                                flush(*v, &mut tot[index(a, b)]);
                            }
                        }
                    })*
                    (r, q) => unreachable!("no {r}×{q} kernel"),
                }
            };
        }
        grid!(
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (2, 1),
            (2, 2),
            (2, 3),
            (2, 4),
            (3, 1),
            (3, 2),
            (3, 3),
            (3, 4),
            (4, 1),
            (4, 2),
            (4, 3),
            (4, 4)
        )
    }

    /// Widens 16 `f32` lanes and adds them to 16 `f64` lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn flush(a: __m512, w: &mut [f64; LANES]) {
        let upper = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
        let p = w.as_mut_ptr();
        // SAFETY: w has 16 lanes: 0..8 and 8..16.
        unsafe {
            let lo = _mm512_add_pd(
                _mm512_loadu_pd(p),
                _mm512_cvtps_pd(_mm512_castps512_ps256(a)),
            );
            let hi = _mm512_add_pd(_mm512_loadu_pd(p.add(8)), _mm512_cvtps_pd(upper));
            _mm512_storeu_pd(p, lo);
            _mm512_storeu_pd(p.add(8), hi);
        }
    }

    /// The `f32` lane sums of (x − y)² for each pair of `xs` × `ys` over
    /// `len` coordinates (a multiple of 16), fused multiply-adds in
    /// coordinate order from zero.
    ///
    /// # Safety
    /// Every pointer must be valid for reading `len` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    // Constant-bound index loops over the register blocks read best here.
    #[allow(clippy::needless_range_loop)]
    unsafe fn chunk<const R: usize, const Q: usize>(
        xp: [*const f32; R],
        yp: [*const f32; Q],
        len: usize,
        ahead: &mut Ahead,
    ) -> [[__m512; Q]; R] {
        let mut a = [[_mm512_setzero_ps(); Q]; R];
        let mut c = 0;
        while c + LANES <= len {
            // SAFETY: c + 16 <= len, the caller's promise.
            ahead.issue();
            unsafe {
                let x: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(xp[r].add(c)));
                for q in 0..Q {
                    let y = _mm512_loadu_ps(yp[q].add(c));
                    for r in 0..R {
                        let d = _mm512_sub_ps(x[r], y);
                        a[r][q] = _mm512_fmadd_ps(d, d, a[r][q]);
                    }
                }
            }
            c += LANES;
        }
        a
    }
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
    fn every_kernel_computes_the_same_bits() {
        // Random f32 rows; the dispatched kernel and every intrinsics kernel
        // this CPU can run (AVX2, AVX-512F) must equal the portable generic
        // kernel bit for bit.
        type Kernel = fn(&[&[f32]], usize, usize, &mut [f64]);
        let mut kernels: Vec<(&str, Kernel)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA checked just above.
                #[allow(unsafe_code)]
                kernels.push(("avx2", |r, lo, hi, acc| unsafe {
                    avx2::super_block_f32(r, lo, hi, acc)
                }));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F checked just above.
                #[allow(unsafe_code)]
                kernels.push(("avx512", |r, lo, hi, acc| unsafe {
                    avx512::super_block_f32(r, lo, hi, acc)
                }));
            }
        }
        eprintln!(
            "intrinsics kernels checked here: {:?}",
            kernels.iter().map(|k| k.0).collect::<Vec<_>>()
        );
        let mut s = 99u64;
        for &(n, d) in &[
            (2usize, 5usize),
            (3, 33),
            (4, 4096 + 16),
            (5, 37),
            (6, 600),
            (7, 4097),
            (8, 8192 + 513),
            (9, 2048 + 17),
            (11, 1023),
            (13, 70_000),
            (20, 131_075),
        ] {
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|_| {
                    (0..d)
                        .map(|_| {
                            s = s
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
                        })
                        .collect()
                })
                .collect();
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
            let m = DistanceMatrix::compute(&refs);
            let pairs = n * (n - 1) / 2;
            let mut generic = vec![0.0f64; pairs];
            let mut lo = 0;
            while lo < d {
                let hi = (lo + SUPER_BLOCK).min(d);
                let mut part = vec![0.0f64; pairs];
                super_block_generic(&refs, lo, hi, &mut part);
                for (g, p) in generic.iter_mut().zip(&part) {
                    *g += p;
                }
                lo = hi;
            }
            for (name, kernel) in &kernels {
                let mut sum = vec![0.0f64; pairs];
                let mut lo = 0;
                while lo < d {
                    let hi = (lo + SUPER_BLOCK).min(d);
                    let mut part = vec![0.0f64; pairs];
                    kernel(&refs, lo, hi, &mut part);
                    for (g, p) in sum.iter_mut().zip(&part) {
                        *g += p;
                    }
                    lo = hi;
                }
                for (k, (a, b)) in sum.iter().zip(&generic).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{name} n={n} d={d} pair {k}");
                }
            }
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(
                        m.get(i, j).to_bits(),
                        generic[pair_index(n, i, j)].to_bits(),
                        "n={n} d={d} ({i},{j})"
                    );
                    let exact = sq_dist_exact(refs[i], refs[j]);
                    assert!((m.get(i, j) - exact).abs() <= 1e-5 * exact, "accuracy");
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
