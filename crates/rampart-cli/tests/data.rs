//! `rampart data`: fetch from a local HTTP server on 127.0.0.1 that serves
//! the shared MNIST files (and an altered copy), verify, and the errors a
//! person gets for an incomplete or altered directory. Nothing here touches
//! a non-loopback address.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;

use common::{expect_failure, rampart};

const MNIST_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/mnist"
);

/// Serves `/good/<file>` from `dir` and `/altered/<file>` re-compressed
/// after changing its last decompressed byte; 404 for anything else. The
/// thread lives as long as the test process.
fn serve(dir: &'static Path) -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer(dir, stream);
        }
    });
    base
}

fn answer(dir: &Path, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (kind, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let file = dir.join(name);
    let mut out = &stream;
    if name.contains("..") || !file.is_file() || !matches!(kind, "good" | "altered") {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut body = std::fs::read(&file).unwrap();
    if kind == "altered" {
        let mut raw = gunzip(&body);
        let last = raw.len() - 1;
        raw[last] ^= 1;
        body = gzip(&raw);
    }
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(&body);
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(raw).unwrap();
    enc.finish().unwrap()
}

#[test]
fn fetch_verify_and_refuse_altered_files() {
    let src = Path::new(MNIST_DIR);
    if !src.is_dir() {
        println!("skipping: {} not present", src.display());
        return;
    }
    let base = serve(Box::leak(src.to_path_buf().into_boxed_path()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    let dir_s = dir.to_str().unwrap();

    // Every URL serves altered bytes: refused, nothing written, exit 2.
    let out = rampart(&[
        "data",
        "fetch",
        "mnist",
        "--dir",
        dir_s,
        "--url",
        &format!("{base}/altered"),
        "--url",
        &format!("{base}/missing"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("does not match the published"), "{stdout}");
    assert!(stdout.contains("HTTP status 404"), "{stdout}");
    assert!(stderr.starts_with("error: cannot fetch mnist"), "{stderr}");
    assert!(stderr.contains("rampart data verify mnist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dir.exists(), "a fetch that got nothing created {dir_s}");

    // Before: verify says what is missing and how to get it.
    let line = expect_failure(
        &rampart(&["data", "verify", "mnist", "--dir", dir_s]),
        "empty dir",
    );
    assert!(line.contains("4 missing"), "{line}");
    assert!(
        line.contains(&format!("rampart data fetch mnist --dir {dir_s}")),
        "{line}"
    );

    // The first mirror fails, the second serves the published files.
    let out = rampart(&[
        "data",
        "fetch",
        "mnist",
        "--dir",
        dir_s,
        "--url",
        &format!("{base}/missing"),
        "--url",
        &format!("{base}/good"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("bytes, verified").count(), 4, "{stdout}");
    assert!(
        stdout.contains(&format!("--data mnist --data-dir {dir_s}")),
        "{stdout}"
    );
    let out = rampart(&["data", "verify", "mnist", "--dir", dir_s]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("60000 training and 10000 test samples"),
        "{stdout}"
    );

    // Again: kept, nothing fetched (the URL would refuse everything).
    let out = rampart(&[
        "data",
        "fetch",
        "mnist",
        "--dir",
        dir_s,
        "--url",
        &format!("{base}/missing"),
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("already present, verified")
            .count(),
        4
    );

    // One altered file: verify names it and the fix.
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    let mut raw = gunzip(&std::fs::read(&labels).unwrap());
    raw[100] = raw[100].wrapping_add(1);
    std::fs::write(&labels, gzip(&raw)).unwrap();
    let line = expect_failure(
        &rampart(&["data", "verify", "mnist", "--dir", dir_s]),
        "altered",
    );
    assert!(line.contains("t10k-labels-idx1-ubyte.gz"), "{line}");
    assert!(line.contains("does not match the published"), "{line}");
    assert!(
        line.contains("delete that file and run `rampart data fetch mnist"),
        "{line}"
    );
    // Fetch replaces exactly that file.
    let out = rampart(&[
        "data",
        "fetch",
        "mnist",
        "--dir",
        dir_s,
        "--url",
        &format!("{base}/good"),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("already present, verified").count(),
        3,
        "{stdout}"
    );
    assert!(
        rampart(&["data", "verify", "mnist", "--dir", dir_s])
            .status
            .success()
    );
}

#[test]
fn errors_people_read() {
    let line = expect_failure(&rampart(&["data", "fetch", "cifar10"]), "cifar10");
    assert!(line.contains("no downloader"), "{line}");
    let line = expect_failure(
        &rampart(&[
            "data",
            "fetch",
            "mnist",
            "--dir",
            "/nonexistent-x",
            "--url",
            "ftp://host/",
        ]),
        "bad url",
    );
    assert!(line.contains("unsupported URL ftp://host/"), "{line}");
    let line = expect_failure(&rampart(&["data", "fetch", "imagenet"]), "unknown set");
    assert!(line.contains("imagenet"), "{line}");
    let out = rampart(&["data", "list"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in [
        "synthetic",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "t10k-images-idx3-ubyte",
    ] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }

    // A testnet on a data directory without the files stops before any
    // process starts, and says how to get them.
    let tmp = tempfile::tempdir().unwrap();
    let line = expect_failure(
        &rampart(&[
            "testnet",
            "up",
            "--no-progress",
            "--data",
            "fashion-mnist",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--out",
            tmp.path().join("report").to_str().unwrap(),
        ]),
        "testnet without data",
    );
    assert!(line.contains("4 missing"), "{line}");
    assert!(
        line.contains("rampart data fetch fashion-mnist --dir"),
        "{line}"
    );
}
