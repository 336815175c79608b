//! Coordinate-wise phases (median, trimmed mean, Bulyan's β-closest-to-the-
//! median), tile by tile.
//!
//! A tile is `rows × TILE` values for [`TILE`] consecutive coordinates, laid
//! out row-major in a small buffer that stays in L1/L2. A [`TileSource`] fills
//! it: with a copy of input rows, or — for multi-Bulyan — with the averages
//! that make up the selection set, computed on the fly so the set is never
//! written to memory. A finite tile is sorted column-wise by a Batcher
//! odd–even merge network whose comparators run across all coordinates of the
//! tile at once, then reduced lane-wise. A tile holding any non-finite value
//! takes the exact scalar path of the specification (stable C5 sort).

use rayon::prelude::*;

use crate::Float;
use crate::order::{closest_to_centre_mean, median_of_sorted, naive_sum, sort_c5};

/// Coordinates per tile.
pub(crate) const TILE: usize = 256;
/// Coordinates per parallel task.
const TASK: usize = 8192;
/// Lanes kept in registers by the reductions.
const BLK: usize = 32;

/// What to compute from each coordinate's sorted values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CoordOp {
    /// Median (mean of the two middle values for an even count).
    Median,
    /// Mean of the values left after dropping `f` at each end.
    TrimmedMean { f: usize },
    /// Mean of the `beta` values closest to the standard median.
    ClosestToMedian { beta: usize },
    /// Mean of the `beta` values closest to the upper median `w[k/2]`.
    ClosestToUpperMedian { beta: usize },
}

/// Asks the CPU to start loading `row[from..from + TILE]` into cache (a
/// hint: no effect on results, nothing happens past the end of the row).
#[inline(always)]
fn prefetch_tile<T>(row: &[T], from: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of::<T>();
        let end = (from + TILE).min(row.len());
        let mut c = from;
        while c < end {
            // SAFETY: prefetching is a hint that never faults; the pointer is
            // in bounds of `row` anyway.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(c).cast::<i8>())
            };
            c += 64 / bytes;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (row, from);
    }
}

/// How many tiles ahead the fills prefetch. One: further ahead lands on the
/// same L1 sets as the tile being read (rows are separate allocations that
/// usually share their offset modulo 4 KiB) and measured slower.
const PREFETCH_TILES: usize = 1;

/// Produces the values a coordinate-wise phase works on.
pub(crate) trait TileSource<T: Float>: Sync {
    /// Number of values per coordinate.
    fn rows(&self) -> usize;
    /// Writes rows × `len` values for coordinates `c0..c0 + len` into `buf`
    /// (row r at `buf[r * TILE..r * TILE + len]`). `fma` says the caller runs
    /// with fused multiply–add instructions enabled.
    fn fill(&self, c0: usize, len: usize, buf: &mut [T], fma: bool);
}

/// The input rows themselves.
pub(crate) struct Rows<'a, T>(pub(crate) &'a [&'a [T]]);

impl<T: Float> TileSource<T> for Rows<'_, T> {
    fn rows(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn fill(&self, c0: usize, len: usize, buf: &mut [T], _fma: bool) {
        for row in self.0 {
            prefetch_tile(row, c0 + PREFETCH_TILES * TILE);
        }
        for (r, row) in self.0.iter().enumerate() {
            buf[r * TILE..r * TILE + len].copy_from_slice(&row[c0..c0 + len]);
        }
    }
}

/// Averages of groups of input rows, summed in `T` and divided once.
///
/// Multi-Bulyan's groups are nearly nested (each iteration usually keeps all
/// but one of the previous group), so the sums are built incrementally: the
/// groups are visited from the smallest up, and each one starts from the
/// largest already-summed group it contains, adding only the members that
/// group lacks (in ascending index order). Only additions are involved, so
/// no cancellation; the order of additions depends on the groups alone, so
/// the result is deterministic. For the spec's small exact cases any order
/// gives the same bits; elsewhere the sums agree with the ascending-index
/// sum to a few ulps.
pub(crate) struct Averages<'a, T> {
    rows: &'a [&'a [T]],
    groups: Vec<Vec<usize>>,
    /// Visit order: (group, base group it extends, members to add).
    plan: Vec<(usize, Option<usize>, Vec<usize>)>,
    /// Rows to prefetch before each step of the plan: every used row once,
    /// spread over the steps.
    ahead: Vec<Vec<usize>>,
}

impl<'a, T: Float> Averages<'a, T> {
    /// `groups` are sets of row indices (any order, no duplicates).
    pub(crate) fn new(rows: &'a [&'a [T]], groups: Vec<Vec<usize>>) -> Self {
        let mut groups = groups;
        for g in &mut groups {
            g.sort_unstable();
        }
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&g| (groups[g].len(), g));
        let mut plan: Vec<(usize, Option<usize>, Vec<usize>)> = Vec::with_capacity(groups.len());
        for (pos, &g) in order.iter().enumerate() {
            let base = order[..pos]
                .iter()
                .copied()
                .filter(|&h| is_subset(&groups[h], &groups[g]))
                .max_by_key(|&h| (groups[h].len(), std::cmp::Reverse(h)));
            let extra = match base {
                Some(h) => groups[g]
                    .iter()
                    .copied()
                    .filter(|i| groups[h].binary_search(i).is_err())
                    .collect(),
                None => groups[g].clone(),
            };
            plan.push((g, base, extra));
        }
        let mut used: Vec<usize> = groups.iter().flatten().copied().collect();
        used.sort_unstable();
        used.dedup();
        let steps = plan.len().max(1);
        let mut ahead = vec![Vec::new(); steps];
        for (k, &i) in used.iter().enumerate() {
            ahead[k * steps / used.len()].push(i);
        }
        Self {
            rows,
            groups,
            plan,
            ahead,
        }
    }
}

/// `a ⊆ b` for sorted slices.
fn is_subset(a: &[usize], b: &[usize]) -> bool {
    a.iter().all(|i| b.binary_search(i).is_ok())
}

impl<T: Float> TileSource<T> for Averages<'_, T> {
    fn rows(&self) -> usize {
        self.groups.len()
    }
    #[inline(always)]
    fn fill(&self, c0: usize, len: usize, buf: &mut [T], fma: bool) {
        for ((g, base, extra), ahead) in self.plan.iter().zip(&self.ahead) {
            let (g, base) = (*g, *base);
            for &i in ahead {
                prefetch_tile(self.rows[i], c0 + PREFETCH_TILES * TILE);
            }
            // Members outer, coordinates inner: each member's tile slice is
            // read as one contiguous run, and the sum row stays in L1.
            match base {
                Some(h) => buf.copy_within(h * TILE..h * TILE + len, g * TILE),
                None => buf[g * TILE..g * TILE + len].fill(T::ZERO),
            }
            let out = &mut buf[g * TILE..g * TILE + len];
            // Four members per sweep, added one after another as before
            // (same bits), so each sum value is loaded and stored once per
            // four additions.
            let x = |i: usize| &self.rows[i][c0..c0 + len];
            let mut quads = extra.chunks_exact(4);
            for q in &mut quads {
                let (a, b, c, d) = (x(q[0]), x(q[1]), x(q[2]), x(q[3]));
                for j in 0..len {
                    out[j] = out[j] + a[j] + b[j] + c[j] + d[j];
                }
            }
            let rest = quads.remainder();
            let mut pairs = rest.chunks_exact(2);
            for p in &mut pairs {
                let (a, b) = (x(p[0]), x(p[1]));
                for j in 0..len {
                    out[j] = out[j] + a[j] + b[j];
                }
            }
            for &i in pairs.remainder() {
                let a = x(i);
                for j in 0..len {
                    out[j] = out[j] + a[j];
                }
            }
        }
        // The buffer holds sums until every group that extends them is done.
        for (g, members) in self.groups.iter().enumerate() {
            divide_by_count(&mut buf[g * TILE..g * TILE + len], members.len(), fma);
        }
    }
}

/// Largest count [`divide_by_count`] divides by through its reciprocal.
pub(crate) const RECIPROCAL_COUNTS: usize = 64;

/// Below this magnitude (2⁻¹⁰⁰) a non-zero `f32` sum is divided by a
/// division, not through the reciprocal.
pub(crate) const RECIPROCAL_TINY: f32 = f32::from_bits(27 << 23);

/// A non-zero value below [`RECIPROCAL_TINY`], which the reciprocal path
/// does not take.
#[inline(always)]
fn too_small_for_reciprocal(x: f32) -> bool {
    x != 0.0 && x.abs() < RECIPROCAL_TINY
}

/// `v[i] / count` for every value, with the bits of the division.
///
/// A vector division is the slowest step of the fill (about 8 % of
/// multi-Bulyan's time at n = 20). With FMA, an `f32` sum `s` is divided by a
/// count `c ≤ RECIPROCAL_COUNTS` as `q = s·r` with `r = 1/c` rounded, then
/// corrected once with the exact remainder `e = s − q·c` (one FMA):
/// `q + e·r`. Markstein's theorem makes the corrected quotient the correctly
/// rounded `s / c` when `r` is the correctly rounded reciprocal and `q` is
/// within one ulp, away from underflow. An exact `q` (e = 0, which keeps the
/// sign of a zero) and a non-finite `s` (e is NaN) keep `q`. Near underflow
/// the theorem fails (quotients in the subnormal range by even counts), so a
/// slice holding any non-zero value below [`RECIPROCAL_TINY`] is divided
/// plainly. The ignored test `reciprocal_division_is_exact_for_every_f32`
/// checks every one of the 2³² values of `s` for every count up to
/// [`RECIPROCAL_COUNTS`]. Without FMA, and for `f64`, the division itself.
#[inline(always)]
pub(crate) fn divide_by_count<T: Float>(v: &mut [T], count: usize, fma: bool) {
    if fma
        && count <= RECIPROCAL_COUNTS
        && let Some(v) = T::as_f32_slice_mut(v)
        && !v
            .iter()
            .fold(false, |tiny, &x| tiny | too_small_for_reciprocal(x))
    {
        let c = count as f32;
        let r = 1.0 / c;
        for x in v {
            *x = div_by_reciprocal(*x, c, r);
        }
        return;
    }
    let c = T::from_usize(count);
    for x in v {
        *x = *x / c;
    }
}

/// `s / c` through `r = 1/c` (see [`divide_by_count`]); needs hardware FMA
/// to be fast.
#[inline(always)]
pub(crate) fn div_by_reciprocal(s: f32, c: f32, r: f32) -> f32 {
    let q = s * r;
    let e = (-q).mul_add(c, s);
    if e.is_nan() || e == 0.0 {
        q
    } else {
        e.mul_add(r, q)
    }
}

/// Comparators of Batcher's odd–even merge sort for `n` elements.
pub(crate) fn sorting_network(n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut p = 1;
    while p < n {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < n {
                for i in 0..k.min(n - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        out.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    out
}

/// Runs `op` over every coordinate of `src` (`d` coordinates) in parallel.
pub(crate) fn coordinatewise<T: Float, S: TileSource<T>>(src: &S, d: usize, op: CoordOp) -> Vec<T> {
    let rows = src.rows();
    let network = sorting_network(rows);
    let mut out = vec![T::ZERO; d];
    out.par_chunks_mut(TASK).enumerate().for_each(|(t, chunk)| {
        task(src, rows, t * TASK, chunk, op, &network);
    });
    out
}

/// One parallel task: every tile of `chunk`, whose first coordinate is `base`.
fn task<T: Float, S: TileSource<T>>(
    src: &S,
    rows: usize,
    base: usize,
    chunk: &mut [T],
    op: CoordOp,
    network: &[(usize, usize)],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA, checked just
            // above.
            #[allow(unsafe_code)]
            unsafe {
                task_avx512(src, rows, base, chunk, op, network)
            };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            unsafe {
                task_avx2(src, rows, base, chunk, op, network)
            };
            return;
        }
    }
    task_generic(src, rows, base, chunk, op, network, false);
}

/// The same task compiled for AVX-512F: the fills' element-wise loops run
/// 16 lanes wide (element-wise arithmetic in the same order per value, so
/// the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn task_avx512<T: Float, S: TileSource<T>>(
    src: &S,
    rows: usize,
    base: usize,
    chunk: &mut [T],
    op: CoordOp,
    network: &[(usize, usize)],
) {
    task_generic(src, rows, base, chunk, op, network, true);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn task_avx2<T: Float, S: TileSource<T>>(
    src: &S,
    rows: usize,
    base: usize,
    chunk: &mut [T],
    op: CoordOp,
    network: &[(usize, usize)],
) {
    task_generic(src, rows, base, chunk, op, network, true);
}

#[inline(always)]
fn task_generic<T: Float, S: TileSource<T>>(
    src: &S,
    rows: usize,
    base: usize,
    chunk: &mut [T],
    op: CoordOp,
    network: &[(usize, usize)],
    fma: bool,
) {
    let mut buf = vec![T::ZERO; rows * TILE];
    let mut col = vec![T::ZERO; rows];
    for (k, o) in chunk.chunks_mut(TILE).enumerate() {
        let c0 = base + k * TILE;
        src.fill(c0, o.len(), &mut buf, fma);
        tile(&mut buf, rows, o, op, network, &mut col);
    }
}

#[inline(always)]
fn tile<T: Float>(
    buf: &mut [T],
    rows: usize,
    out: &mut [T],
    op: CoordOp,
    network: &[(usize, usize)],
    col: &mut [T],
) {
    let len = out.len();
    let finite = if len == TILE {
        register_kernel(buf, rows, out, op)
    } else {
        None
    };
    if finite == Some(true) {
        return;
    }
    if len == TILE && finite.unwrap_or_else(|| all_finite(buf, rows)) {
        sort_tile(buf, network);
        reduce_sorted_tile(buf, rows, out, op);
    } else {
        for (l, o) in out.iter_mut().enumerate() {
            for r in 0..rows {
                col[r] = buf[r * TILE + l];
            }
            *o = T::from_f64(exact_op(col, op));
        }
    }
}

/// The register kernel on a full tile where it applies (`f32`, AVX2 and FMA,
/// a size it unrolls): `Some(true)` done, `Some(false)` the tile holds a
/// non-finite value, `None` not applicable.
#[inline(always)]
fn register_kernel<T: Float>(
    buf: &mut [T],
    rows: usize,
    out: &mut [T],
    op: CoordOp,
) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && let (Some(b), Some(o)) = (T::as_f32_slice_mut(buf), T::as_f32_slice_mut(out))
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA, checked just
            // above.
            #[allow(unsafe_code)]
            return unsafe { crate::coord_kernel::reduce_tile_avx512(b, rows, o, op) };
        }
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        #[allow(unsafe_code)]
        return unsafe { crate::coord_kernel::reduce_tile(b, rows, o, op) };
    }
    let _ = (buf, rows, out, op);
    None
}

/// Branch-free finiteness test of a full tile: `v − v` is 0 for finite `v`
/// and NaN otherwise, and NaN sticks in the lane accumulators.
#[inline(always)]
fn all_finite<T: Float>(buf: &[T], rows: usize) -> bool {
    let mut acc = [T::ZERO; TILE];
    for r in 0..rows {
        let w = row(buf, r);
        for l in 0..TILE {
            // Deliberately `w - w`: 0 when finite, NaN for ±∞ and NaN.
            #[allow(clippy::eq_op)]
            let z = w[l] - w[l];
            acc[l] = acc[l] - z;
        }
    }
    acc.iter().all(|a| *a == T::ZERO)
}

#[inline(always)]
fn sort_tile<T: Float>(buf: &mut [T], network: &[(usize, usize)]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b32) = T::as_f32_slice_mut(buf)
        && std::arch::is_x86_feature_detected!("avx")
    {
        // SAFETY: the CPU supports AVX, checked just above.
        #[allow(unsafe_code)]
        unsafe {
            sort_tile_f32_avx(b32, network)
        };
        return;
    }
    for &(a, b) in network {
        let (lo, hi) = buf.split_at_mut(b * TILE);
        let x = &mut lo[a * TILE..a * TILE + TILE];
        let y = &mut hi[..TILE];
        for l in 0..TILE {
            let (u, v) = (x[l], y[l]);
            x[l] = T::min_finite(u, v);
            y[l] = T::max_finite(u, v);
        }
    }
}

/// The sorting network on a finite `f32` tile with plain vector min/max
/// (`vminps`/`vmaxps` equal `min`/`max` on finite values; LLVM otherwise
/// keeps the NaN fix-ups or turns the select into masked stores).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(unsafe_code)]
fn sort_tile_f32_avx(buf: &mut [f32], network: &[(usize, usize)]) {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_max_ps, _mm256_min_ps, _mm256_storeu_ps};
    for &(a, b) in network {
        let (lo, hi) = buf.split_at_mut(b * TILE);
        let x = &mut lo[a * TILE..a * TILE + TILE];
        let y = &mut hi[..TILE];
        let mut l = 0;
        while l + 8 <= TILE {
            // SAFETY: l + 8 <= TILE, the length of both slices.
            unsafe {
                let u = _mm256_loadu_ps(x.as_ptr().add(l));
                let v = _mm256_loadu_ps(y.as_ptr().add(l));
                _mm256_storeu_ps(x.as_mut_ptr().add(l), _mm256_min_ps(u, v));
                _mm256_storeu_ps(y.as_mut_ptr().add(l), _mm256_max_ps(u, v));
            }
            l += 8;
        }
    }
}

#[inline(always)]
fn row<T: Float>(buf: &[T], r: usize) -> &[T] {
    &buf[r * TILE..r * TILE + TILE]
}

#[inline(always)]
fn reduce_sorted_tile<T: Float>(buf: &[T], rows: usize, out: &mut [T], op: CoordOp) {
    match op {
        CoordOp::Median => out.copy_from_slice(&median_lanes(buf, rows)),
        CoordOp::TrimmedMean { f } => {
            let cnt = T::from_usize(rows - 2 * f);
            for lb in (0..TILE).step_by(BLK) {
                let mut acc = [T::ZERO; BLK];
                for r in f..rows - f {
                    let w = &row(buf, r)[lb..lb + BLK];
                    for l in 0..BLK {
                        acc[l] = acc[l] + w[l];
                    }
                }
                for l in 0..BLK {
                    out[lb + l] = acc[l] / cnt;
                }
            }
        }
        CoordOp::ClosestToMedian { beta } | CoordOp::ClosestToUpperMedian { beta } => {
            let centre = if matches!(op, CoordOp::ClosestToMedian { .. }) {
                median_lanes(buf, rows)
            } else {
                let mut c = [T::ZERO; TILE];
                c.copy_from_slice(row(buf, rows / 2));
                c
            };
            // The beta values closest to the centre form a window [k, k+beta)
            // of the sorted column (distances fall, then rise). Sliding the
            // window from s to s+1 swaps w[s] out for w[s+beta]; that is an
            // improvement exactly when w[s+beta] is strictly closer (on equal
            // distance the smaller position wins, as in the spec's key). The
            // answer is one past the last improving slide: earlier
            // non-improving slides can only come from runs of equal values,
            // which leave the chosen multiset unchanged.
            // start = 1 + the last improving s, computed as the number of s
            // with an improving slide at or after s (a suffix OR), so that
            // every update is plain arithmetic (conditional stores compile to
            // slow masked stores).
            let mut start = [0u32; TILE];
            let mut seen = [0u32; TILE];
            for s in (0..rows - beta).rev() {
                let left = row(buf, s);
                let right = row(buf, s + beta);
                for l in 0..TILE {
                    let dl = (left[l] - centre[l]).abs();
                    let dr = (right[l] - centre[l]).abs();
                    seen[l] |= u32::from(dr < dl);
                    start[l] += seen[l];
                }
            }
            let cnt = T::from_usize(beta);
            for lb in (0..TILE).step_by(BLK) {
                let mut acc = [T::ZERO; BLK];
                for r in 0..rows {
                    let w = &row(buf, r)[lb..lb + BLK];
                    let r32 = r as u32;
                    for l in 0..BLK {
                        let s0 = start[lb + l];
                        let inside = r32 >= s0 && r32 < s0 + beta as u32;
                        // Adding +0.0 to a sum that started at +0.0 changes
                        // nothing, so this is the spec's ascending sum.
                        acc[l] = acc[l] + if inside { w[l] } else { T::ZERO };
                    }
                }
                for l in 0..BLK {
                    out[lb + l] = acc[l] / cnt;
                }
            }
        }
    }
}

/// Per-lane median of a sorted tile; the even case's midpoint is formed in
/// `f64` (no overflow for huge `f32` values) and rounded once.
#[inline(always)]
fn median_lanes<T: Float>(buf: &[T], rows: usize) -> [T; TILE] {
    let mut c = [T::ZERO; TILE];
    if rows % 2 == 1 {
        c.copy_from_slice(row(buf, rows / 2));
    } else {
        let a = row(buf, rows / 2 - 1);
        let b = row(buf, rows / 2);
        for l in 0..TILE {
            c[l] = T::from_f64((a[l].to_f64() + b[l].to_f64()) / 2.0);
        }
    }
    c
}

/// The specification's scalar definition of `op` on one coordinate's values.
pub(crate) fn exact_op<T: Float>(col: &mut [T], op: CoordOp) -> f64 {
    sort_c5(col);
    let n = col.len();
    match op {
        CoordOp::Median => median_of_sorted(col),
        CoordOp::TrimmedMean { f } => {
            naive_sum(col[f..n - f].iter().map(|v| v.to_f64())) / (n - 2 * f) as f64
        }
        CoordOp::ClosestToMedian { beta } => {
            let c = median_of_sorted(col);
            closest_to_centre_mean(col, c, beta)
        }
        CoordOp::ClosestToUpperMedian { beta } => {
            let c = col[n / 2].to_f64();
            closest_to_centre_mean(col, c, beta)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `divide_by_count` with FMA against the division, bit for bit.
    fn check_division(values: &[f32], count: usize) {
        let mut fast = values.to_vec();
        divide_by_count(&mut fast, count, true);
        for (&s, q) in values.iter().zip(&fast) {
            let want = s / count as f32;
            assert!(
                q.to_bits() == want.to_bits() || (q.is_nan() && want.is_nan()),
                "{s:e} / {count}: {q:e}, the division gives {want:e}"
            );
        }
    }

    #[test]
    fn reciprocal_division_matches_the_division() {
        // Random bit patterns (every exponent), in slices of one tile.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u32
        };
        for count in 1..=RECIPROCAL_COUNTS + 2 {
            for _ in 0..16 {
                let tile: Vec<f32> = (0..TILE).map(|_| f32::from_bits(next())).collect();
                check_division(&tile, count);
                // The same without the tiny values, so the reciprocal path runs.
                let big: Vec<f32> = tile
                    .iter()
                    .map(|&x| if x.abs() < RECIPROCAL_TINY { 1.0 } else { x })
                    .collect();
                check_division(&big, count);
            }
            // Zeros keep their sign; infinities, NaN, the extremes and the
            // boundary of the reciprocal path.
            let specials = [
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MAX,
                f32::MIN,
                f32::MIN_POSITIVE,
                -f32::MIN_POSITIVE,
                RECIPROCAL_TINY,
                -RECIPROCAL_TINY,
                f32::from_bits(RECIPROCAL_TINY.to_bits() + 1),
                1.0,
                -3.0,
                count as f32,
                1e30,
            ];
            check_division(&specials, count);
            // A slice with one subnormal goes through the division.
            let mut mixed = specials.to_vec();
            mixed.push(f32::from_bits(3));
            check_division(&mixed, count);
        }
    }

    /// All 2³² values of `s` for every count the reciprocal path takes
    /// (16 minutes in release on two cores):
    /// `cargo test --release -p rampart-gar --lib -- --ignored reciprocal_division_is_exact`.
    #[test]
    #[ignore = "exhaustive, minutes in release"]
    fn reciprocal_division_is_exact_for_every_f32() {
        let bad: u64 = (1..=RECIPROCAL_COUNTS)
            .into_par_iter()
            .map(|count| {
                let c = count as f32;
                let r = 1.0 / c;
                let mut bad = 0u64;
                for bits in 0..=u32::MAX {
                    let s = f32::from_bits(bits);
                    if too_small_for_reciprocal(s) {
                        continue; // divided plainly by `divide_by_count`
                    }
                    let (q, want) = (div_by_reciprocal(s, c, r), s / c);
                    if q.to_bits() != want.to_bits() && !(q.is_nan() && want.is_nan()) {
                        bad += 1;
                    }
                }
                bad
            })
            .sum();
        assert_eq!(bad, 0, "quotients that differ from the division");
    }

    #[test]
    fn network_sorts_all_zero_one_inputs() {
        for n in 1..=12usize {
            let net = sorting_network(n);
            for mask in 0u32..(1 << n) {
                let mut v: Vec<u32> = (0..n).map(|i| (mask >> i) & 1).collect();
                for &(a, b) in &net {
                    if v[b] < v[a] {
                        v.swap(a, b);
                    }
                }
                assert!(v.windows(2).all(|w| w[0] <= w[1]), "n={n} mask={mask:b}");
            }
        }
    }

    fn check_against_exact(rows: usize, vals: &[f64], op: CoordOp) {
        let d = vals.len() / rows;
        let m: Vec<&[f64]> = vals.chunks(d).collect();
        let fast = coordinatewise(&Rows(&m), d, op);
        for c in 0..d {
            let mut col: Vec<f64> = m.iter().map(|r| r[c]).collect();
            let want = exact_op(&mut col, op);
            assert_eq!(
                fast[c].to_bits(),
                want.to_bits(),
                "op {op:?} coord {c}: {} vs {want}",
                fast[c]
            );
        }
    }

    #[test]
    fn f32_median_is_exact() {
        // The f32 fast path (AVX sorting network where available) picks the
        // same order statistics as the spec's stable sort.
        for rows in [1usize, 2, 7, 10, 20, 33] {
            let d = 3 * TILE + 7;
            let mut s = rows as u64;
            let vals: Vec<Vec<f32>> = (0..rows)
                .map(|_| {
                    (0..d)
                        .map(|_| {
                            s = s
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            (s >> 40) as f32 / (1u64 << 20) as f32 - 8.0
                        })
                        .collect()
                })
                .collect();
            let m: Vec<&[f32]> = vals.iter().map(Vec::as_slice).collect();
            let fast = coordinatewise(&Rows(&m), d, CoordOp::Median);
            for c in 0..d {
                let mut col: Vec<f32> = m.iter().map(|r| r[c]).collect();
                let want = f32::from_f64(exact_op(&mut col, CoordOp::Median));
                assert_eq!(fast[c].to_bits(), want.to_bits(), "rows {rows} coord {c}");
            }
        }
    }

    /// The register kernel gives the tile path's bits for every size and
    /// reduction it handles, on spread-out values and on values with many
    /// ties and signed zeros, and declines tiles with a non-finite value.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f32_kernel_matches_the_tile_path() {
        #[allow(unsafe_code)]
        type Kernel = unsafe fn(&[f32], usize, &mut [f32], CoordOp) -> Option<bool>;
        // Every register kernel this CPU can run, with the most values per
        // coordinate it unrolls.
        let kernels = || {
            let mut k: Vec<(&str, Kernel, usize)> =
                vec![("avx2", crate::coord_kernel::reduce_tile, 16)];
            if std::arch::is_x86_feature_detected!("avx512f") {
                k.push(("avx512", crate::coord_kernel::reduce_tile_avx512, 32));
            } else {
                eprintln!("no AVX-512F here: its kernel is not checked");
            }
            k
        };
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        let mut s = 0x5EED_u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        for rows in 1..=32usize {
            let mut ops = vec![CoordOp::Median];
            for f in 0..=(rows - 1) / 2 {
                ops.push(CoordOp::TrimmedMean { f });
            }
            for beta in 1..=rows.min(8) {
                ops.push(CoordOp::ClosestToMedian { beta });
                ops.push(CoordOp::ClosestToUpperMedian { beta });
            }
            for kind in 0..3 {
                let buf: Vec<f32> = (0..rows * TILE)
                    .map(|_| {
                        let u = next();
                        match kind {
                            0 => (u as f32 / u32::MAX as f32 - 0.5) * 1e3,
                            1 => (u % 5) as f32 * 0.25 - 0.5,
                            _ => [0.0, -0.0, 1.0, -1.0][(u % 4) as usize],
                        }
                    })
                    .collect();
                for &op in &ops {
                    let mut sorted = buf.clone();
                    let mut want = vec![0f32; TILE];
                    sort_tile(&mut sorted, &sorting_network(rows));
                    reduce_sorted_tile(&sorted, rows, &mut want, op);
                    for (name, kernel, most) in kernels() {
                        let mut fast = vec![0f32; TILE];
                        // SAFETY: `kernels` lists only what the CPU supports.
                        #[allow(unsafe_code)]
                        let done = unsafe { kernel(&buf, rows, &mut fast, op) };
                        if rows > most {
                            assert_eq!(done, None, "{name} rows {rows}: not unrolled");
                            continue;
                        }
                        assert_eq!(done, Some(true), "{name} rows {rows} {op:?}");
                        for l in 0..TILE {
                            assert_eq!(
                                fast[l].to_bits(),
                                want[l].to_bits(),
                                "{name} rows {rows} {op:?} kind {kind} lane {l}"
                            );
                        }
                    }
                }
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut b = buf.clone();
                    b[(next() as usize) % (rows * TILE)] = bad;
                    for (name, kernel, most) in kernels() {
                        let mut out = vec![0f32; TILE];
                        // SAFETY: as above.
                        #[allow(unsafe_code)]
                        let done = unsafe { kernel(&b, rows, &mut out, CoordOp::Median) };
                        let want = (rows <= most).then_some(false);
                        assert_eq!(done, want, "{name} rows {rows} {bad}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
        cases: 128,
        // Fixed seed: the same cases on every run and in CI.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x005E_ED0F_2A11),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
        #[test]
        fn fast_path_equals_spec(rows in 1usize..14, seed in any::<u64>(), small in any::<bool>()) {
            let d = 2 * TILE + 5;
            let mut s = seed;
            let vals: Vec<f64> = (0..rows * d).map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 33) as f64 / (1u64 << 31) as f64;
                if small { ((u * 7.0).floor() - 3.0) * 0.5 } else { u * 2.0 - 1.0 }
            }).collect();
            check_against_exact(rows, &vals, CoordOp::Median);
            for f in 0..=(rows - 1) / 2 {
                check_against_exact(rows, &vals, CoordOp::TrimmedMean { f });
            }
            for beta in 1..=rows {
                check_against_exact(rows, &vals, CoordOp::ClosestToMedian { beta });
                check_against_exact(rows, &vals, CoordOp::ClosestToUpperMedian { beta });
            }
        }
    }
}
