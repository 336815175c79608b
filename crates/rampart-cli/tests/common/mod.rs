//! Helpers shared by the integration tests: running the binary, and a small
//! `.npy` encoder/decoder written independently of the one in `src/npy.rs`,
//! so that the tests check the format rather than the code against itself.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `rampart` with `args`.
pub(crate) fn rampart<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("spawn the rampart binary")
}

/// A finished `rampart testnet up` run: its report folder (in `_dir`, a
/// temporary directory kept alive with it), output and `summary.json`.
pub(crate) struct TestnetRun {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) report: std::path::PathBuf,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) summary: serde_json::Value,
}

/// Writes `scenario` to a temporary file, runs `rampart testnet up` on it
/// without a progress bar, asserts that it succeeded and reads the
/// report's `summary.json`.
pub(crate) fn testnet_up(scenario: &str) -> TestnetRun {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, scenario).expect("write the scenario");
    let report = dir.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["testnet", "up", "--no-progress", "--out"])
        .arg(&report)
        .arg(&file)
        .output()
        .expect("spawn the rampart binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let summary = serde_json::from_str(
        &std::fs::read_to_string(report.join("summary.json")).expect("read summary.json"),
    )
    .expect("summary.json is JSON");
    TestnetRun {
        _dir: dir,
        report,
        stdout,
        stderr,
        summary,
    }
}

/// Asserts that the command failed the documented way (exit status 2, one
/// `error: ...` line on stderr, no panic, nothing on stdout) and returns
/// that line.
pub(crate) fn expect_failure(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: expected exit status 2, got {:?}; stderr: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "{what}: stderr is not exactly one line: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{what}: {stderr:?}");
    assert!(out.stdout.is_empty(), "{what}: stdout is not empty");
    stderr.trim_end().to_owned()
}

/// Encodes a version 1.0 `.npy` file with the given type string, shape text
/// (Python tuple syntax) and raw data.
pub(crate) fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// A C-order `<f8` matrix file.
pub(crate) fn npy_f64(rows: &[Vec<f64>]) -> Vec<u8> {
    let d = rows.first().map_or(0, Vec::len);
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy_bytes("<f8", false, &format!("({}, {d})", rows.len()), &data)
}

/// A C-order `<f4` matrix file.
pub(crate) fn npy_f32(rows: &[Vec<f32>]) -> Vec<u8> {
    let d = rows.first().map_or(0, Vec::len);
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    npy_bytes("<f4", false, &format!("({}, {d})", rows.len()), &data)
}

/// Reads a `.npy` file the CLI wrote: returns the header dict text and the
/// data bytes, after checking the preamble and the 64-byte alignment.
pub(crate) fn read_npy(path: &Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read output .npy");
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "v1.0 preamble");
    let len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    assert_eq!((10 + len) % 64, 0, "data is 64-byte aligned");
    assert_eq!(bytes[10 + len - 1], b'\n', "header ends with a newline");
    let header = String::from_utf8(bytes[10..10 + len].to_vec()).expect("ASCII header");
    (header.trim_end().to_owned(), bytes[10 + len..].to_vec())
}

/// JSON text of a matrix in the vectors' encoding: shortest round-trip
/// numbers, non-finite values as strings.
pub(crate) fn json_matrix(rows: &[Vec<f64>]) -> String {
    let rows: Vec<String> = rows.iter().map(|r| json_vector(r)).collect();
    format!("[{}]", rows.join(",\n"))
}

/// JSON text of a vector in the vectors' encoding.
pub(crate) fn json_vector(v: &[f64]) -> String {
    let cells: Vec<String> = v
        .iter()
        .map(|&x| {
            if x.is_nan() {
                "\"nan\"".to_owned()
            } else if x.is_infinite() {
                if x > 0.0 { "\"inf\"" } else { "\"-inf\"" }.to_owned()
            } else {
                serde_json::to_string(&x).expect("finite")
            }
        })
        .collect();
    format!("[{}]", cells.join(", "))
}

/// The raw text of each element of the `"output"` array of a report.
pub(crate) fn output_tokens(stdout: &str) -> Vec<String> {
    let start = stdout.find("\"output\":[").expect("an output array") + "\"output\":[".len();
    let end = start + stdout[start..].find(']').expect("closing bracket");
    stdout[start..end]
        .split(',')
        .map(|t| t.trim().to_owned())
        .collect()
}
