//! Conformance with the shared specification vectors (`../shared/spec/vectors`).
//!
//! Every case of every rule file is run in f64 and checked bit for bit where
//! the case says `exact`, else within its tolerance; selections must match
//! exactly; precondition cases must fail with a precondition error. The same
//! cases then run in f32 (where every input value is representable in f32)
//! and are checked within a stated f32 tolerance with the same selections.

use std::path::PathBuf;

use rampart_gar::{
    Aggregate, Aggregation, CoordinatePhase, Details, GarError, GeometricInit, Rule,
};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/vectors")
}

fn bits(v: &Value) -> f64 {
    let s = v.as_str().expect("bits are strings");
    f64::from_bits(u64::from_str_radix(s, 16).expect("16 hex digits"))
}

fn bits_vec(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(bits).collect()
}

fn bits_mat(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(bits_vec).collect()
}

fn usize_vec(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("index") as usize)
        .collect()
}

fn param_usize(p: &Value, k: &str) -> Option<usize> {
    p.get(k).and_then(Value::as_u64).map(|v| v as usize)
}

fn rule_for(file: &str, p: &Value) -> Rule {
    let f = param_usize(p, "f").unwrap_or(0);
    let m = param_usize(p, "m");
    match file {
        "average" => Rule::Average,
        "coordinate_median" => Rule::Median,
        "trimmed_mean" => Rule::TrimmedMean { f },
        "krum" => Rule::Krum { f },
        "multi_krum" => Rule::MultiKrum { f, m },
        "bulyan" => Rule::Bulyan { f },
        "multi_bulyan" => Rule::MultiBulyan {
            f,
            m,
            phase: match p.get("coordinate_phase").and_then(Value::as_str) {
                Some("trimmed_mean") => CoordinatePhase::TrimmedMean,
                _ => CoordinatePhase::MedianClosest,
            },
        },
        "multi_bulyan_aggregathor" => Rule::MultiBulyanAggregathor { f, m },
        "geometric_median" => Rule::GeometricMedian {
            nu: p["nu"].as_f64().expect("nu"),
            iters: param_usize(p, "T").expect("T"),
            init: match p.get("init").and_then(Value::as_str) {
                Some("zero") => GeometricInit::Zero,
                _ => GeometricInit::Mean,
            },
        },
        "centered_clipping" => Rule::CenteredClipping {
            tau: p["tau"].as_f64().expect("tau"),
            iters: param_usize(p, "L").expect("L"),
            v0: p.get("v0").map(|v| {
                v.as_array()
                    .expect("v0")
                    .iter()
                    .map(|x| x.as_f64().expect("v0 value"))
                    .collect()
            }),
        },
        "mda" => Rule::Mda { f },
        other => panic!("no rule for {other}"),
    }
}

struct Tol {
    exact: bool,
    abs: f64,
    rel: f64,
}

fn tol_of(case: &Value) -> Tol {
    let t = &case["tolerance"];
    Tol {
        exact: t["exact"].as_bool().unwrap_or(false),
        abs: t.get("abs").and_then(Value::as_f64).unwrap_or(0.0),
        rel: t.get("rel").and_then(Value::as_f64).unwrap_or(0.0),
    }
}

fn close(got: f64, want: f64, tol: &Tol) -> bool {
    if tol.exact {
        return got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
    }
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= tol.abs + tol.rel * want.abs()
}

fn check_vec(name: &str, got: &[f64], want: &[f64], tol: &Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{name}: length {} vs {}", got.len(), want.len()));
    }
    for (c, (g, w)) in got.iter().zip(want).enumerate() {
        if !close(*g, *w, tol) {
            return Err(format!(
                "{name}: coordinate {c}: got {g:e} ({:016x}), want {w:e} ({:016x})",
                g.to_bits(),
                w.to_bits()
            ));
        }
    }
    Ok(())
}

/// Selections of a result in the spec's vocabulary.
#[derive(Debug, PartialEq)]
struct Selections {
    selected: Option<Vec<usize>>,
    iterations: Option<Vec<(Vec<usize>, usize)>>,
    kept: Option<Vec<usize>>,
}

fn selections_of<T>(file: &str, agg: &Aggregation<T>) -> Selections {
    let mut s = Selections {
        selected: None,
        iterations: None,
        kept: None,
    };
    match &agg.details {
        Details::Krum { .. } | Details::Mda { .. } => s.selected = Some(agg.selected.clone()),
        Details::Bulyan { steps, .. } => {
            s.selected = Some(agg.selected.clone());
            s.iterations = Some(steps.iter().map(|st| (vec![], st.picked)).collect());
        }
        Details::MultiBulyan { steps, .. } => {
            s.iterations = Some(
                steps
                    .iter()
                    .map(|st| (st.averaged.clone(), st.removed))
                    .collect(),
            );
        }
        Details::GeometricMedian { kept } => s.kept = Some(kept.clone()),
        _ => {}
    }
    let _ = file;
    s
}

fn expected_selections(file: &str, e: &Value) -> Selections {
    let mut s = Selections {
        selected: None,
        iterations: None,
        kept: None,
    };
    if let Some(v) = e.get("selected") {
        s.selected = Some(usize_vec(v));
    }
    if let Some(its) = e.get("iterations").and_then(Value::as_array) {
        s.iterations = Some(
            its.iter()
                .map(|it| {
                    if file == "bulyan" {
                        (vec![], it["picked"].as_u64().expect("picked") as usize)
                    } else {
                        (
                            usize_vec(&it["averaged"]),
                            it["removed"].as_u64().expect("removed") as usize,
                        )
                    }
                })
                .collect(),
        );
    }
    if let Some(v) = e.get("kept") {
        s.kept = Some(usize_vec(v));
    }
    s
}

/// Output rows (as f64), selections, NNM neighbours.
type CaseOutcome = (Vec<Vec<f64>>, Selections, Option<Vec<Vec<usize>>>);

fn run_case<T>(file: &str, case: &Value, rows: &[Vec<T>]) -> Result<CaseOutcome, GarError>
where
    T: rampart_gar::Float,
    Rule: Aggregate<T>,
{
    let refs: Vec<&[T]> = rows.iter().map(Vec::as_slice).collect();
    if file == "nnm" {
        let f = param_usize(&case["params"], "f").unwrap_or(0);
        let mixed = rampart_gar::nnm(&refs, f)?;
        let out = mixed
            .rows
            .iter()
            .map(|r| r.iter().map(|v| v.to_f64()).collect())
            .collect();
        let sel = Selections {
            selected: None,
            iterations: None,
            kept: None,
        };
        return Ok((out, sel, Some(mixed.neighbours)));
    }
    let rule = rule_for(file, &case["params"]);
    let agg = rule.aggregate(&refs)?;
    let sel = selections_of(file, &agg);
    Ok((
        vec![agg.output.iter().map(|v| v.to_f64()).collect()],
        sel,
        None,
    ))
}

fn expected_output(file: &str, e: &Value) -> Vec<Vec<f64>> {
    if file == "nnm" {
        bits_mat(&e["output_bits"])
    } else {
        vec![bits_vec(&e["output_bits"])]
    }
}

#[test]
fn shared_conformance_vectors() {
    let dir = vectors_dir();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("index.json"))
            .expect("read ../shared/spec/vectors/index.json"),
    )
    .expect("index.json");
    let mut passed = 0usize;
    let mut errors_ok = 0usize;
    let mut f32_checked = 0usize;
    let mut f32_skipped = 0usize;
    let mut failures = Vec::new();
    for file in index["files"].as_array().expect("files") {
        let file = file.as_str().expect("name");
        let stem = file.trim_end_matches(".json");
        if stem == "attacks" {
            continue;
        }
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(file)).expect("read vector file"),
        )
        .expect("vector json");
        let cases = doc["cases"].as_array().expect("cases");
        assert_eq!(
            cases.len() as u64,
            index["counts"][stem].as_u64().expect("count"),
            "{file}: case count differs from index.json"
        );
        for case in cases {
            let name = format!("{stem}/{}", case["name"].as_str().expect("name"));
            let rows = bits_mat(&case["vectors_bits"]);
            let result = run_case(stem, case, &rows);
            if case.get("expect_error").is_some() {
                match result {
                    Err(GarError::Precondition { .. } | GarError::InvalidParameter { .. }) => {
                        errors_ok += 1
                    }
                    other => failures.push(format!(
                        "{name}: expected a precondition error, got {other:?}"
                    )),
                }
                continue;
            }
            let e = &case["expected"];
            let tol = tol_of(case);
            let want = expected_output(stem, e);
            let want_sel = expected_selections(stem, e);
            let want_neigh = e.get("neighbours").map(|v| {
                v.as_array()
                    .expect("neighbours")
                    .iter()
                    .map(usize_vec)
                    .collect::<Vec<_>>()
            });
            match result {
                Err(err) => failures.push(format!("{name}: unexpected error {err}")),
                Ok((got, sel, neigh)) => {
                    let mut ok = true;
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        if let Err(msg) = check_vec(&format!("{name} row {k}"), g, w, &tol) {
                            failures.push(msg);
                            ok = false;
                        }
                    }
                    if sel != want_sel {
                        failures.push(format!(
                            "{name}: selections {sel:?} != expected {want_sel:?}"
                        ));
                        ok = false;
                    }
                    if want_neigh.is_some() && neigh != want_neigh {
                        failures.push(format!("{name}: neighbours {neigh:?} != {want_neigh:?}"));
                        ok = false;
                    }
                    if ok {
                        passed += 1;
                    }
                    // The f32 path, where the inputs are representable.
                    let representable = rows.iter().flatten().all(|v| {
                        !v.is_finite() || (v.abs() < 1e30 && (*v == 0.0 || v.abs() > 1e-30))
                    });
                    if !representable {
                        f32_skipped += 1;
                        continue;
                    }
                    let rows32: Vec<Vec<f32>> = rows
                        .iter()
                        .map(|r| r.iter().map(|&v| v as f32).collect())
                        .collect();
                    let scale = rows
                        .iter()
                        .flatten()
                        .filter(|v| v.is_finite())
                        .fold(1.0f64, |m, v| m.max(v.abs()));
                    let tol32 = Tol {
                        exact: false,
                        abs: 1e-5 * scale,
                        rel: 1e-5,
                    };
                    match run_case(stem, case, &rows32) {
                        Err(err) => failures.push(format!("{name} (f32): unexpected error {err}")),
                        Ok((got, sel, neigh)) => {
                            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                                if let Err(msg) =
                                    check_vec(&format!("{name} (f32) row {k}"), g, w, &tol32)
                                {
                                    failures.push(msg);
                                }
                            }
                            if sel != want_sel {
                                failures.push(format!(
                                    "{name} (f32): selections {sel:?} != {want_sel:?}"
                                ));
                            }
                            if want_neigh.is_some() && neigh != want_neigh {
                                failures.push(format!("{name} (f32): neighbours differ"));
                            }
                            f32_checked += 1;
                        }
                    }
                }
            }
        }
    }
    println!(
        "conformance: {passed} output cases and {errors_ok} precondition cases passed in f64 \
         ({} total); f32 path checked on {f32_checked} cases (rel/abs 1e-5), {f32_skipped} skipped \
         (values outside f32 range)",
        passed + errors_ok
    );
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        passed + errors_ok,
        132,
        "every rule case of the spec must run"
    );
}
