//! The coordinate phase's reductions for finite `f32` tiles with each
//! coordinate's values held in registers (x86-64, AVX2).
//!
//! For eight coordinates at a time the kernel loads the `R` values of a tile
//! column, sorts them with the Batcher network of [`crate::coord`] unrolled
//! at compile time, and reduces them, without storing anything back to the
//! tile. The tile path sorts the tile in memory, comparator by comparator,
//! and reads it again to reduce; this kernel does the same operations in the
//! same order (same comparators, `vminps`/`vmaxps` on finite values, the
//! same window search, sums in ascending position), so it gives the same
//! bits — `coord::tests::f32_kernel_matches_the_tile_path` compares the two
//! for every size and reduction, and the test at the end of this file the
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
        fn sort<const R: usize>(v: &mut [__m256; R]) {
            let v: &mut [__m256] = v;
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

/// One comparator: the smaller value to `a`, the larger to `b`.
#[inline(always)]
fn cmpx(v: &mut [__m256], a: usize, b: usize) {
    let (x, y) = (v[a], v[b]);
    // SAFETY: plain AVX arithmetic; every caller runs with AVX2 enabled.
    unsafe {
        v[a] = _mm256_min_ps(x, y);
        v[b] = _mm256_max_ps(x, y);
    }
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
        sort::<R>(&mut v);
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
                // slide s → s + 1 that brings a strictly closer value in,
                // counted as a suffix OR from the top down.
                let mut start = _mm256_setzero_si256();
                let mut seen = _mm256_setzero_si256();
                for s in (0..R - B).rev() {
                    let dl = _mm256_and_ps(_mm256_sub_ps(v[s], centre), abs_mask);
                    let dr = _mm256_and_ps(_mm256_sub_ps(v[s + B], centre), abs_mask);
                    let closer = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(dr, dl));
                    seen = _mm256_or_si256(seen, closer);
                    // `seen` is −1 or 0 per lane.
                    start = _mm256_sub_epi32(start, seen);
                }
                let end = _mm256_add_epi32(start, _mm256_set1_epi32(B as i32));
                let mut acc = zero;
                for (r, x) in v.iter().enumerate() {
                    let at = _mm256_set1_epi32(r as i32);
                    // start <= r < start + B; outside lanes add +0.
                    let before = _mm256_cmpgt_epi32(start, at);
                    let inside = _mm256_andnot_si256(before, _mm256_cmpgt_epi32(end, at));
                    acc = _mm256_add_ps(acc, _mm256_and_ps(_mm256_castsi256_ps(inside), *x));
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
