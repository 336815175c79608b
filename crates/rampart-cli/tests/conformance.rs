//! Every rule case of the shared conformance vectors, run through the
//! `rampart aggregate` binary from a `.npy` (f64) file and from a `.json`
//! file, and with `--output x.npy`, and compared bit for bit with what
//! `rampart_gar` returns for the same inputs. Precondition cases must end
//! with exit status 2 and the library's message on one line.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{expect_failure, json_matrix, json_vector, npy_f64, rampart, read_npy};
use rampart_gar::{Aggregate, Aggregation, Aggregator, CoordinatePhase, GeometricInit, Rule};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/vectors")
}

fn bits(v: &Value) -> f64 {
    let s = v.as_str().expect("bits are strings");
    f64::from_bits(u64::from_str_radix(s, 16).expect("16 hex digits"))
}

fn param_usize(p: &Value, k: &str) -> Option<usize> {
    p.get(k).and_then(Value::as_u64).map(|v| v as usize)
}

/// One conformance case, ready to run.
struct Case {
    name: String,
    rows: Vec<Vec<f64>>,
    /// The CLI flags that select the rule and its parameters.
    flags: Vec<String>,
    /// centered clipping's v0, passed with `--v0`.
    v0: Option<Vec<f64>>,
    /// The same configuration for the library.
    aggregator: Aggregator,
    /// The `f` the report must print.
    f: Option<usize>,
    expect_error: bool,
}

fn case_of(stem: &str, case: &Value) -> Case {
    let p = &case["params"];
    let f = param_usize(p, "f").unwrap_or(0);
    let m = param_usize(p, "m");
    let s = |x: &str| x.to_owned();
    let mut flags = Vec::new();
    let mut v0 = None;
    let with_f = |flags: &mut Vec<String>, rule: &str| {
        flags.extend([s("--rule"), s(rule), s("--f"), f.to_string()]);
    };
    let with_m = |flags: &mut Vec<String>| {
        if let Some(m) = m {
            flags.extend([s("--m"), m.to_string()]);
        }
    };
    let rule = match stem {
        "average" => {
            flags.extend([s("--rule"), s("average")]);
            Rule::Average
        }
        "coordinate_median" => {
            flags.extend([s("--rule"), s("median")]);
            Rule::Median
        }
        "nnm" => {
            flags.extend([s("--pre"), s("nnm")]);
            with_f(&mut flags, "average");
            Rule::Average
        }
        "trimmed_mean" => {
            with_f(&mut flags, "trimmed-mean");
            Rule::TrimmedMean { f }
        }
        "krum" => {
            with_f(&mut flags, "krum");
            Rule::Krum { f }
        }
        "multi_krum" => {
            with_f(&mut flags, "multi-krum");
            with_m(&mut flags);
            Rule::MultiKrum { f, m }
        }
        "bulyan" => {
            with_f(&mut flags, "bulyan");
            Rule::Bulyan { f }
        }
        "multi_bulyan" => {
            with_f(&mut flags, "multi-bulyan");
            with_m(&mut flags);
            let phase = match p.get("coordinate_phase").and_then(Value::as_str) {
                Some("trimmed_mean") => {
                    flags.extend([s("--coordinate-phase"), s("trimmed-mean")]);
                    CoordinatePhase::TrimmedMean
                }
                None => CoordinatePhase::MedianClosest,
                Some(other) => panic!("unknown coordinate phase {other}"),
            };
            Rule::MultiBulyan { f, m, phase }
        }
        "multi_bulyan_aggregathor" => {
            with_f(&mut flags, "multi-bulyan-aggregathor");
            with_m(&mut flags);
            Rule::MultiBulyanAggregathor { f, m }
        }
        "mda" => {
            with_f(&mut flags, "mda");
            Rule::Mda { f }
        }
        "geometric_median" => {
            let nu = p["nu"].as_f64().expect("nu");
            let iters = param_usize(p, "T").expect("T");
            let init = p.get("init").and_then(Value::as_str).unwrap_or("mean");
            flags.extend([
                s("--rule"),
                s("geometric-median"),
                s("--nu"),
                nu.to_string(),
                s("--iters"),
                iters.to_string(),
                s("--init"),
                s(init),
            ]);
            Rule::GeometricMedian {
                nu,
                iters,
                init: match init {
                    "zero" => GeometricInit::Zero,
                    _ => GeometricInit::Mean,
                },
            }
        }
        "centered_clipping" => {
            let tau = p["tau"].as_f64().expect("tau");
            let iters = param_usize(p, "L").expect("L");
            flags.extend([
                s("--rule"),
                s("centered-clipping"),
                s("--tau"),
                tau.to_string(),
                s("--iters"),
                iters.to_string(),
            ]);
            v0 = p.get("v0").map(|v| {
                v.as_array()
                    .expect("v0")
                    .iter()
                    .map(|x| x.as_f64().expect("v0 value"))
                    .collect::<Vec<f64>>()
            });
            Rule::CenteredClipping {
                tau,
                iters,
                v0: v0.clone(),
            }
        }
        other => panic!("no rule for {other}"),
    };
    let takes_f = rule.f().is_some() || stem == "nnm";
    let aggregator = if stem == "nnm" {
        Aggregator::new(rule).with_nnm(f)
    } else {
        Aggregator::new(rule)
    };
    Case {
        name: format!("{stem}/{}", case["name"].as_str().expect("name")),
        rows: case["vectors_bits"]
            .as_array()
            .expect("vectors_bits")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(bits).collect())
            .collect(),
        flags,
        v0,
        aggregator,
        f: takes_f.then_some(f),
        expect_error: case.get("expect_error").is_some(),
    }
}

fn all_cases() -> Vec<Case> {
    let dir = vectors_dir();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("index.json")).expect("read vectors/index.json"),
    )
    .expect("index.json");
    let mut cases = Vec::new();
    for file in index["files"].as_array().expect("files") {
        let file = file.as_str().expect("file name");
        let stem = file.trim_end_matches(".json");
        if stem == "attacks" {
            continue;
        }
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).expect("read vectors"))
                .expect("vector JSON");
        let file_cases = doc["cases"].as_array().expect("cases");
        assert_eq!(
            Some(file_cases.len() as u64),
            index["counts"][stem].as_u64(),
            "{file}: case count differs from index.json"
        );
        cases.extend(file_cases.iter().map(|c| case_of(stem, c)));
    }
    cases
}

/// Checks a report's `"output"` (or a decoded file) against the library's
/// bits. JSON cannot carry NaN payloads, so any NaN matches "nan".
fn check_json_output(name: &str, got: &Value, want: &[f64]) -> Result<(), String> {
    let got = got
        .as_array()
        .ok_or_else(|| format!("{name}: output is not an array"))?;
    if got.len() != want.len() {
        return Err(format!(
            "{name}: output has {} values, not {}",
            got.len(),
            want.len()
        ));
    }
    for (c, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = match g {
            Value::String(t) => match t.as_str() {
                "nan" => w.is_nan(),
                "inf" => *w == f64::INFINITY,
                "-inf" => *w == f64::NEG_INFINITY,
                _ => false,
            },
            Value::Number(x) => w.is_finite() && x.as_f64().map(f64::to_bits) == Some(w.to_bits()),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{name}: coordinate {c}: got {g}, want {w:e} ({:016x})",
                w.to_bits()
            ));
        }
    }
    Ok(())
}

fn check_report(
    case: &Case,
    lib: &Aggregation<f64>,
    via: &str,
    stdout: &[u8],
    with_output: bool,
) -> Result<(), String> {
    let name = format!("{} via {via}", case.name);
    let text = std::str::from_utf8(stdout).map_err(|e| format!("{name}: stdout: {e}"))?;
    if !text.ends_with('\n') || text.lines().count() != 1 {
        return Err(format!("{name}: stdout is not one line: {text:?}"));
    }
    let report: Value =
        serde_json::from_str(text).map_err(|e| format!("{name}: stdout is not JSON: {e}"))?;
    let n = case.rows.len();
    let want_m = case.aggregator.rule().effective_m(n).ok().flatten();
    let want_selected: Vec<Value> = lib.selected.iter().map(|&i| Value::from(i)).collect();
    let checks = [
        ("rule", Value::from(case.aggregator.rule().id())),
        ("n", Value::from(n)),
        ("d", Value::from(case.rows[0].len())),
        ("f", case.f.map_or(Value::Null, Value::from)),
        ("m", want_m.map_or(Value::Null, Value::from)),
        ("selected", Value::Array(want_selected)),
    ];
    for (key, want) in checks {
        if report.get(key) != Some(&want) {
            return Err(format!(
                "{name}: {key} is {:?}, want {want}",
                report.get(key)
            ));
        }
    }
    if !report["seconds"].as_f64().is_some_and(|s| s >= 0.0) {
        return Err(format!("{name}: seconds is {}", report["seconds"]));
    }
    match (with_output, report.get("output")) {
        (false, Some(out)) => check_json_output(&name, out, &lib.output),
        (false, None) => Err(format!("{name}: no output in the report")),
        (true, None) => Ok(()),
        (true, Some(_)) => Err(format!(
            "{name}: output printed although --output was given"
        )),
    }
}

fn check_npy_file(name: &str, path: &Path, want: &[f64]) -> Result<(), String> {
    let (header, data) = read_npy(path);
    let want_header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        want.len()
    );
    if header != want_header {
        return Err(format!(
            "{name}: --output header {header:?}, want {want_header:?}"
        ));
    }
    let got: Vec<u64> = data
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")).to_bits())
        .collect();
    let want: Vec<u64> = want.iter().map(|v| v.to_bits()).collect();
    if got != want {
        return Err(format!("{name}: --output bits differ from the library's"));
    }
    Ok(())
}

/// Runs one case three ways; returns whether it was a precondition case.
fn run_case(case: &Case, dir: &Path, k: usize) -> Result<bool, String> {
    let npy = dir.join(format!("case{k}.npy"));
    let json = dir.join(format!("case{k}.json"));
    let out = dir.join(format!("out{k}.npy"));
    std::fs::write(&npy, npy_f64(&case.rows)).map_err(|e| e.to_string())?;
    std::fs::write(&json, json_matrix(&case.rows)).map_err(|e| e.to_string())?;
    let mut flags = vec!["aggregate".to_owned()];
    flags.extend(case.flags.iter().cloned());
    if let Some(v0) = &case.v0 {
        let v0_path = dir.join(format!("v0_{k}.json"));
        std::fs::write(&v0_path, json_vector(v0)).map_err(|e| e.to_string())?;
        flags.extend(["--v0".to_owned(), v0_path.display().to_string()]);
    }
    let refs: Vec<&[f64]> = case.rows.iter().map(Vec::as_slice).collect();
    let lib = Aggregate::<f64>::aggregate(&case.aggregator, &refs);
    let runs: [(&str, &Path, Option<&Path>); 3] = [
        ("npy", &npy, None),
        ("json", &json, None),
        ("npy --output", &npy, Some(&out)),
    ];
    for (via, input, output) in runs {
        let mut args = flags.clone();
        args.extend(["--input".to_owned(), input.display().to_string()]);
        if let Some(o) = output {
            args.extend(["--output".to_owned(), o.display().to_string()]);
        }
        let result = rampart(&args);
        match &lib {
            Err(err) => {
                let line = expect_failure(&result, &format!("{} via {via}", case.name));
                if !line.contains(&err.to_string()) {
                    return Err(format!(
                        "{}: message {line:?} lacks the library's {err}",
                        case.name
                    ));
                }
            }
            Ok(agg) => {
                if !result.status.success() {
                    return Err(format!(
                        "{} via {via}: failed: {}",
                        case.name,
                        String::from_utf8_lossy(&result.stderr)
                    ));
                }
                check_report(case, agg, via, &result.stdout, output.is_some())?;
                if let Some(o) = output {
                    check_npy_file(&case.name, o, &agg.output)?;
                }
            }
        }
    }
    if case.expect_error != lib.is_err() {
        return Err(format!(
            "{}: the vectors expect {}, the library returned {}",
            case.name,
            if case.expect_error {
                "an error"
            } else {
                "a result"
            },
            if lib.is_err() { "an error" } else { "a result" }
        ));
    }
    Ok(lib.is_err())
}

#[test]
fn cli_matches_library_on_every_conformance_case() {
    let cases = all_cases();
    let dir = tempfile::tempdir().expect("tempdir");
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(k) else { break };
                    let r = run_case(case, dir.path(), k);
                    outcomes.lock().expect("lock").push(r);
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("lock");
    let failures: Vec<&String> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
    let errors = outcomes.iter().filter(|r| matches!(r, Ok(true))).count();
    let outputs = outcomes.iter().filter(|r| matches!(r, Ok(false))).count();
    println!(
        "cli conformance: {} cases round-tripped ({outputs} with outputs, {errors} precondition \
         errors), each via .npy, .json and --output .npy ({} runs of the binary)",
        outputs + errors,
        3 * cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        outputs + errors,
        132,
        "every rule case of the spec must run"
    );
}
