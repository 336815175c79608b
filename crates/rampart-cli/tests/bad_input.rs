//! Bad input ends with exit status 2 and one `error: ...` line that says what
//! is wrong, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{expect_failure, npy_bytes, npy_f64, rampart};

/// Scratch files for one test.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("tempdir"))
    }

    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).expect("write scratch file");
        path
    }
}

/// Runs `aggregate` on `input` with `flags`, expects the documented failure
/// and a message containing every one of `needles`.
fn fails_with(flags: &[&str], input: &Path, needles: &[&str]) {
    let mut args = vec!["aggregate".to_owned()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend(["--input".to_owned(), input.display().to_string()]);
    let what = format!("{flags:?} on {}", input.display());
    let line = expect_failure(&rampart(&args), &what);
    for needle in needles {
        assert!(line.contains(needle), "{what}: {line:?} lacks {needle:?}");
    }
}

const MEDIAN: &[&str] = &["--rule", "median"];

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn missing_files() {
    let dir = Scratch::new();
    for name in ["absent.npy", "absent.json", "absent"] {
        fails_with(MEDIAN, &dir.0.path().join(name), &["absent", "cannot"]);
    }
}

#[test]
fn not_npy_bytes() {
    let dir = Scratch::new();
    let path = dir.file("x.npy", "PK\x03\x04 this is a zip, not an array");
    fails_with(MEDIAN, &path, &["not an NPY file"]);
    fails_with(MEDIAN, &dir.file("empty.npy", ""), &["not an NPY file"]);
    let mut v4 = npy_f64(&[vec![1.0]]);
    v4[6] = 4;
    fails_with(MEDIAN, &dir.file("v4.npy", v4), &["version 4.0"]);
}

#[test]
fn truncated_npy_data_and_header() {
    let dir = Scratch::new();
    let mut bytes = npy_f64(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
    bytes.truncate(bytes.len() - 5);
    fails_with(
        MEDIAN,
        &dir.file("t.npy", &bytes),
        &["truncated data", "(2, 3)", "48 bytes", "43"],
    );
    let header_cut = &npy_f64(&[vec![1.0]])[..30];
    fails_with(
        MEDIAN,
        &dir.file("h.npy", header_cut),
        &["truncated NPY header"],
    );
    let mut trailing = npy_f64(&[vec![1.0, 2.0]]);
    trailing.extend_from_slice(&[0; 8]);
    fails_with(MEDIAN, &dir.file("x.npy", trailing), &["trailing bytes"]);
}

#[test]
fn huge_shape_does_not_allocate() {
    let dir = Scratch::new();
    let data = f64_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let start = Instant::now();
    // 2^54 bytes: representable, far beyond the 32 bytes present.
    let huge = npy_bytes(
        "<f8",
        false,
        &format!("({}, {})", 1u64 << 31, 1u64 << 20),
        &data,
    );
    fails_with(
        MEDIAN,
        &dir.file("huge.npy", huge),
        &["truncated data", "18014398509481984 bytes"],
    );
    // n * d * 8 overflows 64 bits.
    let overflow = npy_bytes(
        "<f8",
        false,
        &format!("({}, {})", 1u64 << 40, 1u64 << 40),
        &data,
    );
    fails_with(MEDIAN, &dir.file("overflow.npy", overflow), &["overflows"]);
    let too_big = npy_bytes("<f8", false, "(123456789012345678901234567890, 1)", &data);
    fails_with(MEDIAN, &dir.file("big.npy", too_big), &["too large"]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn unsupported_dtypes_and_layouts() {
    let dir = Scratch::new();
    let data = f64_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let cases: [(&str, bool, &str, &[&str]); 7] = [
        (">f8", false, "(2, 2)", &["'>f8'", "big-endian"]),
        (">f4", false, "(2, 4)", &["'>f4'", "big-endian"]),
        ("<i8", false, "(2, 2)", &["'<i8'", "'<f4'", "'<f8'"]),
        ("|u1", false, "(4, 8)", &["'|u1'"]),
        ("<f8", true, "(2, 2)", &["Fortran"]),
        ("<f8", false, "(4,)", &["2-D", "(4,)", "1-D"]),
        ("<f8", false, "(1, 2, 2)", &["2-D", "(1, 2, 2)", "3-D"]),
    ];
    for (k, (descr, fortran, shape, needles)) in cases.into_iter().enumerate() {
        let path = dir.file(
            &format!("c{k}.npy"),
            npy_bytes(descr, fortran, shape, &data),
        );
        fails_with(MEDIAN, &path, needles);
    }
    let empty = npy_bytes("<f8", false, "(0, 3)", &[]);
    fails_with(MEDIAN, &dir.file("n0.npy", empty), &["no input vectors"]);
    let zero_d = npy_bytes("<f8", false, "(1000000, 0)", &[]);
    fails_with(MEDIAN, &dir.file("d0.npy", zero_d), &["dimension 0"]);
}

#[test]
fn bad_json() {
    let dir = Scratch::new();
    let cases: [(&str, &[&str]); 8] = [
        (
            "[[1, 2], [3, 4], [5]]",
            &["ragged", "row 2 has 1 numbers, but row 0 has 2"],
        ),
        ("[]", &["empty"]),
        ("[[], []]", &["dimension 0"]),
        ("[[1, true]]", &["row 0, column 1", "boolean"]),
        ("[[1, \"one\"]]", &["\"one\"", "\"nan\""]),
        ("[[1, 2], 7]", &["row 1"]),
        ("[[1, 2]", &["EOF"]),
        ("{\"rows\": []}", &["an array of rows"]),
    ];
    for (k, (text, needles)) in cases.into_iter().enumerate() {
        fails_with(MEDIAN, &dir.file(&format!("c{k}.json"), text), needles);
    }
}

#[test]
fn bad_flags() {
    let dir = Scratch::new();
    let path = dir.file("x.json", "[[1, 2], [3, 4], [5, 6]]");
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--rule", "foo"], &["invalid value 'foo'", "multi-bulyan"]),
        (&["--rule", "krum"], &["--rule krum needs --f"]),
        (
            &["--rule", "median", "--pre", "nnm"],
            &["--pre nnm needs --f"],
        ),
        (&["--rule", "median", "--f", "1"], &["median takes no f"]),
        (
            &["--rule", "krum", "--f", "0", "--m", "1"],
            &["--m does not apply to --rule krum"],
        ),
        (
            &["--rule", "median", "--tau", "1"],
            &["--tau does not apply"],
        ),
        (&["--rule", "krum", "--f", "-1"], &["'-1'"]),
        (
            &["--rule", "median", "--output", "out.txt"],
            &["--output", "extension"],
        ),
        (&["--rule", "median", "--bogus"], &["--bogus"]),
    ];
    for (flags, needles) in cases {
        fails_with(flags, &path, needles);
    }
    // No --input at all.
    let line = expect_failure(&rampart(&["aggregate", "--rule", "median"]), "no --input");
    assert!(line.contains("--input"), "{line}");
}

#[test]
fn preconditions_and_parameters() {
    let dir = Scratch::new();
    let rows: Vec<Vec<f64>> = (0..6).map(|i| vec![f64::from(i), 1.0]).collect();
    let path = dir.file("n6.npy", npy_f64(&rows));
    fails_with(
        &["--rule", "multi-bulyan", "--f", "1"],
        &path,
        &["multi-bulyan needs n >= 4f + 3", "n = 6, f = 1"],
    );
    fails_with(
        &["--rule", "multi-krum", "--f", "1", "--m", "0"],
        &path,
        &["multi-krum", "m = 0"],
    );
    fails_with(&["--rule", "geometric-median", "--nu", "0"], &path, &["nu"]);
    fails_with(
        &["--rule", "centered-clipping", "--tau", "-1"],
        &path,
        &["tau"],
    );
    let v0 = dir.file("v0.json", "[1, 2, 3]");
    let v0 = v0.display().to_string();
    fails_with(
        &["--rule", "centered-clipping", "--v0", &v0],
        &path,
        &["v0"],
    );
    let v0_bad = dir.file("v0_bad.json", "[1, \"x\"]").display().to_string();
    fails_with(
        &["--rule", "centered-clipping", "--v0", &v0_bad],
        &path,
        &["--v0", "\"x\""],
    );
    fails_with(
        &["--rule", "average", "--pre", "nnm", "--f", "6"],
        &path,
        &["nnm", "f < n"],
    );
}

#[test]
fn unwritable_output() {
    let dir = Scratch::new();
    let path = dir.file("x.json", "[[1, 2], [3, 4]]");
    let out = dir
        .0
        .path()
        .join("no/such/dir/out.npy")
        .display()
        .to_string();
    fails_with(
        &["--rule", "median", "--output", &out],
        &path,
        &["cannot create", "out.npy"],
    );
}
