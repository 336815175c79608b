//! An `<f4` input is aggregated in f32: the printed values are the shortest
//! decimals of the f32 results, and `--output` writes `<f4` with the same
//! bits as the library's f32 path.

mod common;

use common::{npy_f32, output_tokens, rampart, read_npy};
use rampart_gar::{Aggregate, Aggregator, CoordinatePhase, Rule};

/// The significant digits of a decimal (`-1.250e+3` → `125`).
fn digits(s: &str) -> String {
    let mantissa = s.split(['e', 'E']).next().unwrap_or_default();
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    all.trim_start_matches('0').trim_end_matches('0').to_owned()
}

#[test]
fn f32_input_computes_and_writes_f32() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Eleven inputs near (0.1, 0.2, ..., 0.8) plus one attacker.
    let mut rows: Vec<Vec<f32>> = (0..11)
        .map(|i| {
            (0..8)
                .map(|c| 0.1 * (c + 1) as f32 + 0.003 * i as f32)
                .collect()
        })
        .collect();
    rows.push(vec![
        1e30,
        -1e30,
        f32::NAN,
        3.0,
        3.0,
        3.0,
        3.0,
        f32::INFINITY,
    ]);
    let input = dir.path().join("x32.npy");
    std::fs::write(&input, npy_f32(&rows)).expect("write input");
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();

    let configs: [(&[&str], Rule); 4] = [
        (&["--rule", "average"], Rule::Average),
        (&["--rule", "median"], Rule::Median),
        (
            &["--rule", "multi-krum", "--f", "2"],
            Rule::MultiKrum { f: 2, m: None },
        ),
        (
            &["--rule", "multi-bulyan", "--f", "2"],
            Rule::MultiBulyan {
                f: 2,
                m: None,
                phase: CoordinatePhase::MedianClosest,
            },
        ),
    ];
    for (k, (flags, rule)) in configs.into_iter().enumerate() {
        let want = Aggregate::<f32>::aggregate(&Aggregator::new(rule), &refs).expect("library");
        let mut args = vec!["aggregate".to_owned()];
        args.extend(flags.iter().map(|s| s.to_string()));
        args.extend(["--input".to_owned(), input.display().to_string()]);

        // Printed: every token parses, as f32, to the library's f32 bits and is
        // the shortest decimal that does (Rust's f32 Display is that decimal).
        let out = rampart(&args);
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        let tokens = output_tokens(&stdout);
        assert_eq!(tokens.len(), want.output.len(), "{flags:?}");
        for (t, w) in tokens.iter().zip(&want.output) {
            if w.is_nan() {
                assert_eq!(t, "\"nan\"", "{flags:?}");
            } else if w.is_infinite() {
                assert_eq!(
                    t,
                    if *w > 0.0 { "\"inf\"" } else { "\"-inf\"" },
                    "{flags:?}"
                );
            } else {
                let got: f32 = t.parse().expect("a number");
                assert_eq!(got.to_bits(), w.to_bits(), "{flags:?}: {t}");
                assert_eq!(
                    digits(t),
                    digits(&format!("{w:e}")),
                    "{flags:?}: {t} is not the shortest f32 decimal of {w:e}"
                );
            }
        }

        // Written: a `<f4` file of shape (d,) with the library's bits.
        let path = dir.path().join(format!("out{k}.npy"));
        args.extend(["--output".to_owned(), path.display().to_string()]);
        let out = rampart(&args);
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("\"output\""));
        let (header, data) = read_npy(&path);
        assert_eq!(
            header,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }"
        );
        let got: Vec<u32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")).to_bits())
            .collect();
        let want_bits: Vec<u32> = want.output.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want_bits, "{flags:?}");
    }
}

#[test]
fn json_output_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("x.json");
    std::fs::write(&input, r#"[[0.1, "inf"], [0.2, 1], [0.4, 2]]"#).expect("write");
    let path = dir.path().join("out.json");
    let out = rampart(&[
        "aggregate",
        "--rule",
        "average",
        "--input",
        input.to_str().expect("path"),
        "--output",
        path.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("read output");
    let mean = (0.1f64 + 0.2 + 0.4) / 3.0;
    assert_eq!(
        text,
        format!("[{},\"inf\"]\n", serde_json::to_string(&mean).expect("f64"))
    );
}
