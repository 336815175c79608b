//! The downloader against a local HTTP server on 127.0.0.1 serving the
//! shared MNIST files, a corrupted copy and a re-compressed altered copy.
//! Nothing here touches a non-loopback address.
#![cfg(feature = "download")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rampart_learn::{
    DataError, DatasetKind, DownloadError, DownloadEvent, download, download_from,
};

const MNIST_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/datasets/mnist"
);

/// Serves `GET /good/<f>` from `dir`, `/flipped/<f>` with one byte of the
/// gzip stream flipped, `/altered/<f>` re-compressed after changing one
/// decompressed byte, `/moved/<f>` as a redirect to `/good/<f>`; 404
/// otherwise. One request per connection, each answer says `Connection:
/// close` (a client that pooled the connection would otherwise send its
/// next request into a closed socket). Runs until `stop` or 60 s.
struct Server {
    base: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Server {
    fn start(dir: PathBuf) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        serve(&dir, stream);
                        served += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            served
        });
        Self {
            base,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn serve(dir: &Path, stream: std::net::TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut out = &stream;
    let (kind, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let file = dir.join(name);
    if name.contains("..") || !file.is_file() {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let mut body = std::fs::read(&file).unwrap();
    match kind {
        "good" => {}
        "flipped" => {
            let mid = body.len() / 2;
            body[mid] ^= 0xFF;
        }
        "altered" => {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut raw)
                .unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 1;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).unwrap();
            body = enc.finish().unwrap();
        }
        "moved" => {
            let _ = write!(
                out,
                "HTTP/1.1 302 Found\r\nLocation: http://{}/good/{name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                stream.local_addr().unwrap()
            );
            return;
        }
        "chunked" => {
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            for chunk in body.chunks(1 << 16) {
                let _ = write!(out, "{:x}\r\n", chunk.len());
                let _ = out.write_all(chunk);
                let _ = out.write_all(b"\r\n");
            }
            let _ = out.write_all(b"0\r\n\r\n");
            return;
        }
        _ => {
            let _ = out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    }
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(&body);
}

#[test]
fn downloads_verify_and_refuse_corruption() {
    let src = Path::new(MNIST_DIR);
    if !src.is_dir() {
        println!("skipping: {} not present", src.display());
        return;
    }
    let server = Server::start(src.to_path_buf());
    let base = server.base.clone();

    // Corrupted gzip stream: refused, nothing written.
    let dest = tempfile::tempdir().unwrap();
    let e = download(
        &DatasetKind::Mnist,
        dest.path(),
        Some(&format!("{base}/flipped")),
    )
    .unwrap_err();
    assert!(
        matches!(e, DownloadError::Data(DataError::Io { .. })),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);

    // Valid gzip of altered data: refused by the hash, nothing written.
    let e = download(
        &DatasetKind::Mnist,
        dest.path(),
        Some(&format!("{base}/altered")),
    )
    .unwrap_err();
    assert!(
        matches!(e, DownloadError::Data(DataError::HashMismatch { .. })),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);

    // Missing files: HTTP status error.
    let e = download(
        &DatasetKind::Mnist,
        dest.path(),
        Some(&format!("{base}/nothing")),
    )
    .unwrap_err();
    assert!(
        matches!(e, DownloadError::Status { status: 404, .. }),
        "{e}"
    );

    // Not downloadable / not http.
    assert!(matches!(
        download(&DatasetKind::Cifar10, dest.path(), Some(&base)),
        Err(DownloadError::Unsupported { .. })
    ));
    assert!(matches!(
        download(&DatasetKind::Mnist, dest.path(), Some("ftp://127.0.0.1/")),
        Err(DownloadError::BadUrl { .. })
    ));
    // Nothing listens on port 9 (discard) of the loopback: a transfer error.
    let e = download(
        &DatasetKind::Mnist,
        dest.path(),
        Some("http://127.0.0.1:9/x"),
    )
    .unwrap_err();
    assert!(matches!(e, DownloadError::Transfer { .. }), "{e}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);

    // The real files (via a redirect, then chunked): accepted and loadable.
    download(
        &DatasetKind::Mnist,
        dest.path(),
        Some(&format!("{base}/moved")),
    )
    .unwrap();
    let names: Vec<_> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let split = DatasetKind::Mnist.load(dest.path()).unwrap();
    assert_eq!(split.train.len(), 60_000);
    let chunked = tempfile::tempdir().unwrap();
    download(
        &DatasetKind::Mnist,
        chunked.path(),
        Some(&format!("{base}/chunked")),
    )
    .unwrap();
    // Mirrors in turn: each file comes from the first URL that serves the
    // published bytes; the refusals before it are reported.
    let mirrored = tempfile::tempdir().unwrap();
    let urls = [
        format!("{base}/nothing"),
        format!("{base}/altered"),
        format!("{base}/good"),
    ];
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let mut log = Vec::new();
    download_from(&DatasetKind::Mnist, mirrored.path(), &urls, &mut |ev| {
        log.push(match ev {
            DownloadEvent::Present { file } => format!("present {file}"),
            DownloadEvent::Fetching { .. } => String::new(),
            DownloadEvent::Fetched { file, url, bytes } => {
                assert!(bytes > 0);
                format!("fetched {file} {}", &url[base.len()..])
            }
            DownloadEvent::Failed { file, error, .. } => match error {
                DownloadError::Status { status: 404, .. } => format!("404 {file}"),
                DownloadError::Data(DataError::HashMismatch { .. }) => format!("hash {file}"),
                other => panic!("{other}"),
            },
            other => panic!("{other:?}"),
        });
    })
    .unwrap();
    log.retain(|l| !l.is_empty());
    assert_eq!(log.len(), 12, "{log:?}");
    assert_eq!(log[0], "404 train-images-idx3-ubyte");
    assert_eq!(log[1], "hash train-images-idx3-ubyte");
    assert_eq!(
        log[2],
        "fetched train-images-idx3-ubyte /good/train-images-idx3-ubyte.gz"
    );
    assert_eq!(
        DatasetKind::Mnist.load(mirrored.path()).unwrap().test.len(),
        10_000
    );
    // Again: every file present, no request.
    let mut again = Vec::new();
    download_from(&DatasetKind::Mnist, mirrored.path(), &urls, &mut |ev| {
        again.push(matches!(ev, DownloadEvent::Present { .. }));
    })
    .unwrap();
    assert_eq!(again, [true; 4]);

    // Present and valid: kept, no request made.
    let served = server.stop();
    download(
        &DatasetKind::Mnist,
        dest.path(),
        Some("http://127.0.0.1:9/unused"),
    )
    .unwrap();
    assert!(served >= 24, "{served}");
}
