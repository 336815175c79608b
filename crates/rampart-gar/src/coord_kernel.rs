//! The coordinate phase's reductions for finite `f32` tiles with each
//! coordinate's values held in registers (x86-64: AVX2, and AVX-512F where
//! the CPU has it).
//!
//! For eight coordinates at a time (sixteen with AVX-512F) the kernel loads the `R` values of a tile
//! column, sorts them with the Batcher network of [`crate::coord`] unrolled
//! at compile time, and reduces them, without storing anything back to the
//! tile. The tile path sorts the tile in memory, comparator by comparator,
//! and reads it again to reduce; this kernel does the same operations in the
//! same order (same comparators, `vminps`/`vmaxps` on finite values, the
//! same window search, sums in ascending position), so it gives the same
//! bits — `coord::tests::f32_kernel_matches_the_tile_path` compares each
//! kernel the CPU can run with the tile path for every size and reduction, and the test at the end of this file the
//! networks. Sizes beyond the unrolled ones (more than 16 values, β above 8)
//! stay on the tile path.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::coord::{CoordOp, TILE};

/// Sorts `v` with a listed network, comparator by comparator.
macro_rules! networks {
    ($($r:literal => [$(($a:literal, $b:literal)),*],)*) => {
        /// The networks unrolled below, for the test that compares them
        /// with [`crate::coord::sorting_network`].
        #[cfg(test)]
        const LISTED: &[(usize, &[(usize, usize)])] = &[$(($r, &[$(($a, $b)),*])),*];

        /// Sorts `R` registers lane-wise (finite values).
        #[inline(always)]
        fn sort<V: MinMax, const R: usize>(v: &mut [V; R]) {
            let v: &mut [V] = v;
            match R {
                $($r => { $(cmpx(v, $a, $b);)* })*
                _ => unreachable!("no network listed for {R} values"),
            }
        }
    };
}

networks! {
    1 => [],
    2 => [(0, 1)],
    3 => [(0, 1), (0, 2), (1, 2)],
    4 => [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)],
    5 => [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2), (0, 4), (2, 4), (1, 2), (3, 4)],
    6 => [(0, 1), (2, 3), (4, 5), (0, 2), (1, 3), (1, 2), (0, 4), (1, 5), (2, 4), (3, 5), (1, 2), (3, 4)],
    7 => [(0, 1), (2, 3), (4, 5), (0, 2), (1, 3), (4, 6), (1, 2), (5, 6), (0, 4), (1, 5), (2, 6), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6)],
    8 => [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (1, 2), (5, 6), (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6)],
    9 => [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (1, 2), (5, 6), (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6), (0, 8), (4, 8), (2, 4), (3, 5), (6, 8), (1, 2), (3, 4), (5, 6), (7, 8)],
    10 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (0, 2), (1, 3), (4, 6), (5, 7), (1, 2), (5, 6), (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6), (0, 8), (1, 9), (4, 8), (5, 9), (2, 4), (3, 5), (6, 8), (7, 9), (1, 2), (3, 4), (5, 6), (7, 8)],
    11 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (1, 2), (5, 6), (9, 10), (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6), (9, 10), (0, 8), (1, 9), (2, 10), (4, 8), (5, 9), (6, 10), (2, 4), (3, 5), (6, 8), (7, 9), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10)],
    12 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (1, 2), (5, 6), (9, 10), (0, 4), (1, 5), (2, 6), (3, 7), (2, 4), (3, 5), (1, 2), (3, 4), (5, 6), (9, 10), (0, 8), (1, 9), (2, 10), (3, 11), (4, 8), (5, 9), (6, 10), (7, 11), (2, 4), (3, 5), (6, 8), (7, 9), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10)],
    13 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (1, 2), (5, 6), (9, 10), (0, 4), (1, 5), (2, 6), (3, 7), (8, 12), (2, 4), (3, 5), (10, 12), (1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (4, 8), (5, 9), (6, 10), (7, 11), (2, 4), (3, 5), (6, 8), (7, 9), (10, 12), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)],
    14 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (1, 2), (5, 6), (9, 10), (0, 4), (1, 5), (2, 6), (3, 7), (8, 12), (9, 13), (2, 4), (3, 5), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 13), (4, 8), (5, 9), (6, 10), (7, 11), (2, 4), (3, 5), (6, 8), (7, 9), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)],
    15 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (12, 14), (1, 2), (5, 6), (9, 10), (13, 14), (0, 4), (1, 5), (2, 6), (3, 7), (8, 12), (9, 13), (10, 14), (2, 4), (3, 5), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (13, 14), (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 13), (6, 14), (4, 8), (5, 9), (6, 10), (7, 11), (2, 4), (3, 5), (6, 8), (7, 9), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)],
    16 => [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (12, 14), (13, 15), (1, 2), (5, 6), (9, 10), (13, 14), (0, 4), (1, 5), (2, 6), (3, 7), (8, 12), (9, 13), (10, 14), (11, 15), (2, 4), (3, 5), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (13, 14), (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 13), (6, 14), (7, 15), (4, 8), (5, 9), (6, 10), (7, 11), (2, 4), (3, 5), (6, 8), (7, 9), (10, 12), (11, 13), (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)],
}

/// Lane-wise minimum and maximum of a register of `f32` lanes.
trait MinMax: Copy {
    fn min(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
}

impl MinMax for __m256 {
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        // SAFETY: plain AVX arithmetic; every caller runs with AVX2 enabled.
        unsafe { _mm256_min_ps(self, other) }
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        // SAFETY: as above.
        unsafe { _mm256_max_ps(self, other) }
    }
}

impl MinMax for __m512 {
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        // SAFETY: plain AVX-512F arithmetic; every caller runs with AVX-512F
        // enabled.
        unsafe { _mm512_min_ps(self, other) }
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        // SAFETY: as above.
        unsafe { _mm512_max_ps(self, other) }
    }
}

/// One comparator: the smaller value to `a`, the larger to `b`.
#[inline(always)]
fn cmpx<V: MinMax>(v: &mut [V], a: usize, b: usize) {
    let (x, y) = (v[a], v[b]);
    v[a] = x.min(y);
    v[b] = x.max(y);
}

/// What the kernel computes from a sorted column.
const MEDIAN: u8 = 0;
const TRIMMED: u8 = 1;
const CLOSEST_MEDIAN: u8 = 2;
const CLOSEST_UPPER: u8 = 3;

/// Reduces one `rows × TILE` tile (row r at `buf[r * TILE..]`) into `out`
/// (`TILE` values): `Some(true)`
/// when done, `Some(false)` (nothing written) when the tile holds a
/// non-finite value, `None` when this size is not unrolled here.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn reduce_tile(
    buf: &[f32],
    rows: usize,
    out: &mut [f32],
    op: CoordOp,
) -> Option<bool> {
    if buf.len() < rows * TILE || out.len() != TILE {
        return None;
    }
    macro_rules! by_rows {
        ($($r:literal)*) => {
            match rows {
                $($r => by_op::<$r>(buf, out, op),)*
                _ => None,
            }
        };
    }
    by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

#[target_feature(enable = "avx2,fma")]
fn by_op<const R: usize>(buf: &[f32], out: &mut [f32], op: CoordOp) -> Option<bool> {
    macro_rules! by_beta {
        ($kind:ident, $beta:expr, $($b:literal)*) => {
            match $beta {
                $($b if $b <= R => run::<R, $kind, $b>(buf, out, 0),)*
                _ => return None,
            }
        };
    }
    let done = match op {
        CoordOp::Median => run::<R, MEDIAN, 0>(buf, out, 0),
        CoordOp::TrimmedMean { f } if 2 * f < R => run::<R, TRIMMED, 0>(buf, out, f),
        CoordOp::TrimmedMean { .. } => return None,
        CoordOp::ClosestToMedian { beta } => by_beta!(CLOSEST_MEDIAN, beta, 1 2 3 4 5 6 7 8),
        CoordOp::ClosestToUpperMedian { beta } => by_beta!(CLOSEST_UPPER, beta, 1 2 3 4 5 6 7 8),
    };
    Some(done)
}

/// The reduction `KIND` over a tile, eight coordinates at a time; false as
/// soon as a block of eight holds a non-finite value. `f` is the trimmed
/// mean's trim, `B` the closest-to-centre count.
#[target_feature(enable = "avx2,fma")]
fn run<const R: usize, const KIND: u8, const B: usize>(
    buf: &[f32],
    out: &mut [f32],
    f: usize,
) -> bool {
    let zero = _mm256_setzero_ps();
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for (l, o) in out.chunks_exact_mut(8).enumerate() {
        let mut v = [zero; R];
        for (r, x) in v.iter_mut().enumerate() {
            let at = r * TILE + 8 * l;
            let c = &buf[at..at + 8];
            // SAFETY: `c` holds 8 values.
            *x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        }
        // v − v is +0 for finite v and NaN otherwise; a NaN sticks.
        let mut chk = zero;
        for x in &v {
            chk = _mm256_add_ps(chk, _mm256_sub_ps(*x, *x));
        }
        if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(chk, zero)) != 0 {
            return false;
        }
        sort::<__m256, R>(&mut v);
        let res = match KIND {
            MEDIAN => median(&v),
            TRIMMED => {
                let mut acc = zero;
                for (r, x) in v.iter().enumerate() {
                    if r >= f && r < R - f {
                        acc = _mm256_add_ps(acc, *x);
                    }
                }
                _mm256_div_ps(acc, _mm256_set1_ps((R - 2 * f) as f32))
            }
            _ => {
                let centre = if KIND == CLOSEST_MEDIAN {
                    median(&v)
                } else {
                    v[R / 2]
                };
                // The window search of the tile path: the window of the B
                // values closest to the centre starts one past the last
                // slide s → s + 1 that brings a strictly closer value in.
                // Going up, each such slide moves the window (a blend per
                // value), so the last one decides.
                let mut w: [__m256; B] = std::array::from_fn(|k| v[k]);
                for s in 0..R - B {
                    let dl = _mm256_and_ps(_mm256_sub_ps(v[s], centre), abs_mask);
                    let dr = _mm256_and_ps(_mm256_sub_ps(v[s + B], centre), abs_mask);
                    let closer = _mm256_cmp_ps::<_CMP_LT_OQ>(dr, dl);
                    for (k, x) in w.iter_mut().enumerate() {
                        *x = _mm256_blendv_ps(*x, v[s + 1 + k], closer);
                    }
                }
                // The window's values in ascending position from +0, as the
                // tile path adds them (its +0 for the positions outside the
                // window change nothing: a sum that starts at +0 is never
                // −0).
                let mut acc = zero;
                for x in &w {
                    acc = _mm256_add_ps(acc, *x);
                }
                _mm256_div_ps(acc, _mm256_set1_ps(B as f32))
            }
        };
        // SAFETY: `o` holds 8 values.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), res) };
    }
    true
}

/// The median of sorted registers; for an even count the midpoint is formed
/// in f64 and rounded once, as the tile path does.
#[inline(always)]
fn median<const R: usize>(v: &[__m256; R]) -> __m256 {
    if R % 2 == 1 {
        return v[R / 2];
    }
    let (a, b) = (v[R / 2 - 1], v[R / 2]);
    // SAFETY: plain AVX arithmetic; every caller runs with AVX2 enabled.
    unsafe {
        let half = _mm256_set1_pd(0.5);
        let mid = |x: __m128, y: __m128| {
            _mm256_cvtpd_ps(_mm256_mul_pd(
                _mm256_add_pd(_mm256_cvtps_pd(x), _mm256_cvtps_pd(y)),
                half,
            ))
        };
        let lo = mid(_mm256_castps256_ps128(a), _mm256_castps256_ps128(b));
        let hi = mid(_mm256_extractf128_ps::<1>(a), _mm256_extractf128_ps::<1>(b));
        _mm256_set_m128(hi, lo)
    }
}

/// [`reduce_tile`] sixteen coordinates at a time with AVX-512F: the same
/// comparators, the same window search and the same sums per lane, so the
/// same bits.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn reduce_tile_avx512(
    buf: &[f32],
    rows: usize,
    out: &mut [f32],
    op: CoordOp,
) -> Option<bool> {
    if buf.len() < rows * TILE || out.len() != TILE {
        return None;
    }
    macro_rules! by_rows {
        ($($r:literal)*) => {
            match rows {
                $($r => by_op512::<$r>(buf, out, op),)*
                _ => None,
            }
        };
    }
    by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn by_op512<const R: usize>(buf: &[f32], out: &mut [f32], op: CoordOp) -> Option<bool> {
    macro_rules! by_beta {
        ($kind:ident, $beta:expr, $($b:literal)*) => {
            match $beta {
                $($b if $b <= R => run512::<R, $kind, $b>(buf, out, 0),)*
                _ => return None,
            }
        };
    }
    let done = match op {
        CoordOp::Median => run512::<R, MEDIAN, 0>(buf, out, 0),
        CoordOp::TrimmedMean { f } if 2 * f < R => run512::<R, TRIMMED, 0>(buf, out, f),
        CoordOp::TrimmedMean { .. } => return None,
        CoordOp::ClosestToMedian { beta } => by_beta!(CLOSEST_MEDIAN, beta, 1 2 3 4 5 6 7 8),
        CoordOp::ClosestToUpperMedian { beta } => by_beta!(CLOSEST_UPPER, beta, 1 2 3 4 5 6 7 8),
    };
    Some(done)
}

/// [`run`] with 16 lanes per register.
#[target_feature(enable = "avx512f,avx2,fma")]
fn run512<const R: usize, const KIND: u8, const B: usize>(
    buf: &[f32],
    out: &mut [f32],
    f: usize,
) -> bool {
    let zero = _mm512_setzero_ps();
    for (l, o) in out.chunks_exact_mut(16).enumerate() {
        let mut v = [zero; R];
        for (r, x) in v.iter_mut().enumerate() {
            let at = r * TILE + 16 * l;
            let c = &buf[at..at + 16];
            // SAFETY: `c` holds 16 values.
            *x = unsafe { _mm512_loadu_ps(c.as_ptr()) };
        }
        // v − v is +0 for finite v and NaN otherwise; a NaN sticks.
        let mut chk = zero;
        for x in &v {
            chk = _mm512_add_ps(chk, _mm512_sub_ps(*x, *x));
        }
        if _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(chk, zero) != 0 {
            return false;
        }
        sort::<__m512, R>(&mut v);
        let res = match KIND {
            MEDIAN => median512(&v),
            TRIMMED => {
                let mut acc = zero;
                for (r, x) in v.iter().enumerate() {
                    if r >= f && r < R - f {
                        acc = _mm512_add_ps(acc, *x);
                    }
                }
                _mm512_div_ps(acc, _mm512_set1_ps((R - 2 * f) as f32))
            }
            _ => {
                let centre = if KIND == CLOSEST_MEDIAN {
                    median512(&v)
                } else {
                    v[R / 2]
                };
                // The window search of the AVX2 kernel with mask registers.
                let mut w: [__m512; B] = std::array::from_fn(|k| v[k]);
                for s in 0..R - B {
                    let dl = _mm512_abs_ps(_mm512_sub_ps(v[s], centre));
                    let dr = _mm512_abs_ps(_mm512_sub_ps(v[s + B], centre));
                    let closer = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(dr, dl);
                    for (k, x) in w.iter_mut().enumerate() {
                        *x = _mm512_mask_mov_ps(*x, closer, v[s + 1 + k]);
                    }
                }
                let mut acc = zero;
                for x in &w {
                    acc = _mm512_add_ps(acc, *x);
                }
                _mm512_div_ps(acc, _mm512_set1_ps(B as f32))
            }
        };
        // SAFETY: `o` holds 16 values.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), res) };
    }
    true
}

/// [`median`] with 16 lanes per register.
#[inline(always)]
fn median512<const R: usize>(v: &[__m512; R]) -> __m512 {
    if R % 2 == 1 {
        return v[R / 2];
    }
    let (a, b) = (v[R / 2 - 1], v[R / 2]);
    // SAFETY: plain AVX-512F arithmetic; every caller runs with AVX-512F
    // enabled.
    unsafe {
        let half = _mm512_set1_pd(0.5);
        let mid = |x: __m256, y: __m256| {
            _mm512_cvtpd_ps(_mm512_mul_pd(
                _mm512_add_pd(_mm512_cvtps_pd(x), _mm512_cvtps_pd(y)),
                half,
            ))
        };
        let upper = |x: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
        let lo = mid(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b));
        let hi = mid(upper(a), upper(b));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
            _mm256_castps_pd(hi),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::sorting_network;

    #[test]
    fn listed_networks_are_the_tile_paths() {
        for r in 1..=16 {
            let listed = LISTED
                .iter()
                .find(|(n, _)| *n == r)
                .map(|(_, l)| l.to_vec());
            assert_eq!(listed, Some(sorting_network(r)), "{r} values");
        }
    }
}
