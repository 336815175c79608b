//! Fetching MNIST / Fashion-MNIST over plain HTTP/1.1 with checksum
//! verification (feature `download`).
//!
//! Only `http://` URLs are supported (a `std::net::TcpStream`, no TLS
//! dependency); mirror the files on an HTTP server, or fetch them by other
//! means and point [`DatasetKind::load`] at the directory. Every file is
//! decompressed and checked against the published SHA-256 before it is
//! written (atomically) into the directory; a file that fails is refused and
//! nothing is written.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::data::{DatasetKind, FASHION_MNIST, IdxSet, MNIST, read_maybe_gz, verify_sha256};
use crate::error::DataError;

/// The MNIST home page's file location.
pub const MNIST_URL: &str = "http://yann.lecun.com/exdb/mnist/";
/// The Fashion-MNIST release's file location.
pub const FASHION_MNIST_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// Largest compressed file accepted (MNIST's largest is under 10 MB).
const BODY_LIMIT: u64 = 64 << 20;
/// Largest decompressed file accepted.
const RAW_LIMIT: u64 = 128 << 20;
/// Largest response head accepted.
const HEAD_LIMIT: usize = 16 << 10;
const MAX_REDIRECTS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Downloading a data set failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The data set cannot be downloaded (synthetic, CIFAR-10).
    #[error("no downloader for {kind}")]
    Unsupported {
        /// The data set.
        kind: &'static str,
    },
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported URL {url} (only http://host[:port]/path)")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// Connecting, sending or receiving failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The response is not valid HTTP/1.x.
    #[error("{url}: malformed response ({what})")]
    BadResponse {
        /// The URL.
        url: String,
        /// What is malformed.
        what: &'static str,
    },
    /// The body is larger than any valid file.
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The downloaded file is not the published one (or does not parse).
    #[error(transparent)]
    Data(#[from] DataError),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The destination.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Downloads the four IDX files of `kind` (MNIST or Fashion-MNIST) as
/// `<name>.gz` into `dir` from `base_url` (`None`: the canonical location,
/// [`MNIST_URL`] or [`FASHION_MNIST_URL`]). Files already present in `dir`
/// with the right hash are kept. Each download is decompressed and checked
/// against the published SHA-256 before it is written.
pub fn download(
    kind: &DatasetKind,
    dir: &Path,
    base_url: Option<&str>,
) -> Result<(), DownloadError> {
    let (set, default): (&IdxSet, &str) = match kind {
        DatasetKind::Mnist => (&MNIST, MNIST_URL),
        DatasetKind::FashionMnist => (&FASHION_MNIST, FASHION_MNIST_URL),
        DatasetKind::Synthetic(_) => return Err(DownloadError::Unsupported { kind: "synthetic" }),
        DatasetKind::Cifar10 => return Err(DownloadError::Unsupported { kind: "cifar10" }),
    };
    let base = base_url.unwrap_or(default);
    std::fs::create_dir_all(dir).map_err(|source| DownloadError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for file in set.files() {
        let local = dir.join(file.name);
        if let Ok((path, bytes)) = read_maybe_gz(&local, RAW_LIMIT)
            && verify_sha256(&path, &bytes, file.sha256).is_ok()
        {
            continue;
        }
        let url = format!("{}/{}.gz", base.trim_end_matches('/'), file.name);
        let body = http_get(&url)?;
        let gz_path = dir.join(format!("{}.gz", file.name));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .take(RAW_LIMIT + 1)
            .read_to_end(&mut raw)
            .map_err(|source| DataError::Io {
                path: gz_path.clone(),
                source,
            })?;
        if raw.len() as u64 > RAW_LIMIT {
            return Err(DataError::TooLarge {
                path: gz_path,
                limit: RAW_LIMIT,
            }
            .into());
        }
        verify_sha256(&gz_path, &raw, file.sha256)?;
        write_atomic(&gz_path, &body)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DownloadError> {
    let err = |source| DownloadError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".part.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// `http://host[:port]/path` → (host, port, path).
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some((host.to_owned(), port, path.to_owned()))
}

/// GET `url`, following up to three redirects; returns the body.
fn http_get(url: &str) -> Result<Vec<u8>, DownloadError> {
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        match get_once(&url)? {
            Response::Body(b) => return Ok(b),
            Response::Redirect(to) => url = to,
        }
    }
    Err(DownloadError::BadResponse {
        url,
        what: "too many redirects",
    })
}

enum Response {
    Body(Vec<u8>),
    Redirect(String),
}

fn get_once(url: &str) -> Result<Response, DownloadError> {
    let bad = |what| DownloadError::BadResponse {
        url: url.to_owned(),
        what,
    };
    let io = |source| DownloadError::Io {
        url: url.to_owned(),
        source,
    };
    let (host, port, path) = parse_url(url).ok_or_else(|| DownloadError::BadUrl {
        url: url.to_owned(),
    })?;
    let host_name = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((host_name, port)).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let host_header = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    (&stream)
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: rampart-learn\r\n\
                 Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut head_len = 0;
    let mut line = String::new();
    let mut read_line = |reader: &mut BufReader<TcpStream>, line: &mut String| {
        line.clear();
        let n = reader
            .by_ref()
            .take((HEAD_LIMIT - head_len.min(HEAD_LIMIT)) as u64)
            .read_line(line)
            .map_err(io)?;
        head_len += n;
        if n == 0 || !line.ends_with('\n') {
            return Err(bad("response head truncated or too long"));
        }
        Ok(line.trim_end().to_owned())
    };
    let status_line = read_line(&mut reader, &mut line)?;
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status code"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let h = read_line(&mut reader, &mut line)?;
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').ok_or_else(|| bad("header"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse().map_err(|_| bad("content-length"))?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "location" => location = Some(value.to_owned()),
            _ => {}
        }
    }
    if matches!(status, 301 | 302 | 303 | 307 | 308) {
        let to = location.ok_or_else(|| bad("redirect without location"))?;
        return Ok(Response::Redirect(to));
    }
    if status != 200 {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let too_large = || DownloadError::TooLarge {
        url: url.to_owned(),
        limit: BODY_LIMIT,
    };
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(&mut reader, &mut line)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > BODY_LIMIT {
                return Err(too_large());
            }
            let start = body.len();
            (&mut reader)
                .take(size)
                .read_to_end(&mut body)
                .map_err(io)?;
            if (body.len() - start) as u64 != size {
                return Err(bad("chunk truncated"));
            }
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).map_err(io)?;
        }
    } else if let Some(len) = length {
        if len > BODY_LIMIT {
            return Err(too_large());
        }
        reader.take(len).read_to_end(&mut body).map_err(io)?;
        if body.len() as u64 != len {
            return Err(bad("body shorter than content-length"));
        }
    } else {
        reader
            .take(BODY_LIMIT + 1)
            .read_to_end(&mut body)
            .map_err(io)?;
        if body.len() as u64 > BODY_LIMIT {
            return Err(too_large());
        }
    }
    Ok(Response::Body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a/b"),
            Some(("127.0.0.1".into(), 8080, "/a/b".into()))
        );
        assert_eq!(
            parse_url("http://example.org"),
            Some(("example.org".into(), 80, "/".into()))
        );
        assert_eq!(parse_url("https://example.org/"), None);
        assert_eq!(parse_url("http://:80/"), None);
        assert_eq!(parse_url("http://h/a b"), None);
    }
}
