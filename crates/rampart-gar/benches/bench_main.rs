//! Aggregation speed on random f32 inputs, against the time it takes just to
//! read the same inputs once, measured in the same run.
//!
//! ```text
//! cargo bench -p rampart-gar --bench bench_main                  # full grid
//! cargo bench -p rampart-gar --bench bench_main -- --quick       # n=20, d=1e6 only
//! cargo bench -p rampart-gar --bench bench_main -- --write-npy DIR   # also save inputs as .npy
//! cargo bench -p rampart-gar --bench bench_main -- --quick --rule multi-bulyan
//! cargo bench -p rampart-gar --bench bench_main -- --n 20 --d 100000   # one shape
//! cargo bench -p rampart-gar --bench bench_main -- --quick --separate-rows
//! ```
//!
//! The inputs are one n×d matrix in a single allocation, rows one after
//! another: the layout of the `.npy` files (and of the numpy array ByzFL is
//! timed on) and of `rampart aggregate`. `--separate-rows` puts each row in
//! its own allocation instead, as a node's received payloads are; large
//! allocations start at one offset within their pages, so all rows then
//! share their L1 cache sets, which costs the two-pass rules some speed
//! (`docs/benchmarks.md`).
//!
//! Each case: one untimed warm-up, then repetitions until ~1 s or 15 runs
//! (at least 3); the median is reported. "read" is the median time of a
//! parallel sum over the same n×d matrix (the memory-bandwidth floor).
//!
//! A rule's "× read time" is the median, over its repetitions, of its time
//! divided by the time of a read run just before it: the machine's memory
//! bandwidth drifts by ±20% over seconds on a shared host, and pairing keeps
//! the rule and its floor under the same conditions.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rampart_gar::{Aggregate, CoordinatePhase, Rule};
use rayon::prelude::*;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Honest-looking rows: a common mean plus noise, f32.
fn make_rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut st = seed;
    let mean_seed = splitmix(&mut st);
    (0..n)
        .map(|i| {
            let row_seed = splitmix(&mut st) ^ (i as u64);
            let mut row = vec![0f32; d];
            row.par_chunks_mut(1 << 16)
                .enumerate()
                .for_each(|(k, chunk)| {
                    let mut s = row_seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
                    let mut m = mean_seed ^ (k as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
                    for v in chunk.iter_mut() {
                        let mu = (splitmix(&mut m) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                        let e = (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                        *v = mu + 0.5 * e;
                    }
                });
            row
        })
        .collect()
}

/// Reads every value once (parallel sum), the floor for any rule.
fn read_once(rows: &[&[f32]]) -> f32 {
    rows.par_iter()
        .map(|r| {
            r.par_chunks(1 << 16)
                .map(|c| {
                    let mut acc = [0f32; 16];
                    let mut it = c.chunks_exact(16);
                    for ch in &mut it {
                        for l in 0..16 {
                            acc[l] += ch[l];
                        }
                    }
                    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
                })
                .sum::<f32>()
        })
        .sum()
}

fn time_median(mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (times.len() < 15 && start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Alternates `floor` and `f` (one warm-up each, then pairs until ~1 s or
/// 15 pairs, at least 3): the median time of `f` and the median of the
/// per-pair ratios time(f) / time(floor).
fn time_paired(mut floor: impl FnMut(), mut f: impl FnMut()) -> (f64, f64) {
    floor();
    f();
    let (mut times, mut ratios) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while times.len() < 3 || (times.len() < 15 && start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        floor();
        let base = t.elapsed().as_secs_f64();
        let t = Instant::now();
        f();
        let secs = t.elapsed().as_secs_f64();
        times.push(secs);
        ratios.push(secs / base);
    }
    times.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    (times[times.len() / 2], ratios[ratios.len() / 2])
}

fn write_npy(path: &PathBuf, rows: &[Vec<f32>]) -> std::io::Result<()> {
    let (n, d) = (rows.len(), rows[0].len());
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for r in rows {
        for v in r {
            f.write_all(&v.to_le_bytes())?;
        }
    }
    f.flush()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--rule")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let separate = args.iter().any(|a| a == "--separate-rows");
    let npy_dir = args
        .iter()
        .position(|a| a == "--write-npy")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let mut shapes: Vec<(usize, usize)> = if quick {
        vec![(20, 4)]
    } else {
        vec![(10, 2), (20, 4), (50, 12)]
    };
    let mut dims: Vec<usize> = if quick {
        vec![1_000_000]
    } else {
        vec![100_000, 1_000_000, 10_000_000]
    };
    if let Some(n) = arg("--n") {
        shapes.retain(|&(m, _)| m == n);
    }
    if let Some(d) = arg("--d") {
        dims = vec![d];
    }
    // Bulyan-family f at the rule's limit n >= 4f + 3.
    let bulyan_f = |n: usize| (n - 3) / 4;
    println!(
        "threads: {}  (rayon global pool); inputs: {}\n",
        rayon::current_num_threads(),
        if separate {
            "one allocation per row"
        } else {
            "one n×d matrix"
        }
    );
    println!("| n | f | d | rule | seconds | input GB/s | × read time |");
    println!("|---|---|---|---|---|---|---|");
    for &(n, f_krum) in &shapes {
        for &d in &dims {
            let rows = make_rows(n, d, 42);
            if let Some(dir) = &npy_dir {
                let p = dir.join(format!("bench_n{n}_d{d}.npy"));
                if let Err(e) = write_npy(&p, &rows) {
                    eprintln!("cannot write {}: {e}", p.display());
                }
            }
            // One layout only, so the other copy does not stay in memory.
            let (rows, matrix) = if separate {
                (rows, Vec::new())
            } else {
                (Vec::new(), rows.concat())
            };
            let refs: Vec<&[f32]> = if separate {
                rows.iter().map(Vec::as_slice).collect()
            } else {
                matrix.chunks_exact(d).collect()
            };
            let bytes = (n * d * 4) as f64;
            let read = time_median(|| {
                std::hint::black_box(read_once(&refs));
            });
            println!(
                "| {n} | – | {d} | read once (floor) | {read:.5} | {:.1} | 1.00 |",
                bytes / read / 1e9
            );
            let fb = bulyan_f(n);
            let rules: Vec<(usize, Rule)> = vec![
                (
                    fb,
                    Rule::MultiBulyan {
                        f: fb,
                        m: None,
                        phase: CoordinatePhase::MedianClosest,
                    },
                ),
                (fb, Rule::Bulyan { f: fb }),
                (f_krum, Rule::MultiKrum { f: f_krum, m: None }),
                (f_krum, Rule::Krum { f: f_krum }),
                (0, Rule::Median),
                (f_krum, Rule::TrimmedMean { f: f_krum }),
                (0, Rule::Average),
            ];
            for (f, rule) in rules {
                if only.as_deref().is_some_and(|o| o != rule.id()) {
                    continue;
                }
                let (secs, ratio) = time_paired(
                    || {
                        std::hint::black_box(read_once(&refs));
                    },
                    || {
                        std::hint::black_box(rule.aggregate(&refs).expect("precondition holds"));
                    },
                );
                println!(
                    "| {n} | {f} | {d} | {} | {secs:.5} | {:.1} | {ratio:.2} |",
                    rule.id(),
                    bytes / secs / 1e9,
                );
            }
        }
    }
}
