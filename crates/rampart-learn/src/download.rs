//! Fetching MNIST / Fashion-MNIST over HTTP or HTTPS with checksum
//! verification (feature `download`).
//!
//! Each data set has a list of mirrors ([`mirrors`]); a file is taken from
//! the first one that serves it with the published content. Every file is
//! decompressed and checked against the published SHA-256 of its IDX bytes
//! before it is written (atomically, as `<name>.gz`) into the directory, so
//! a mirror can be slow or gone but never wrong: a file that fails the check
//! is refused and nothing is written. Files already present with the right
//! hash are kept and not fetched again.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::data::{
    DatasetKind, FASHION_MNIST, IdxFile, IdxSet, MNIST, read_maybe_gz, verify_sha256,
};
use crate::error::DataError;

/// Where MNIST is served, tried in this order: two long-standing copies of
/// the original files, then the data set's home page (which has refused
/// automated downloads at times).
pub const MNIST_MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Where Fashion-MNIST is served, tried in this order: the release's own
/// location, then its repository.
pub const FASHION_MNIST_MIRRORS: &[&str] = &[
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
];

/// Largest compressed file accepted (MNIST's largest is under 10 MB,
/// Fashion-MNIST's 26 MB).
const BODY_LIMIT: u64 = 64 << 20;
/// Largest decompressed file accepted.
const RAW_LIMIT: u64 = 128 << 20;
const MAX_REDIRECTS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole body of one file (26 MB at about 50 kB/s).
const BODY_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// The URL is not `http://` or `https://` followed by a host.
    #[error("unsupported URL {url} (give http://host[:port]/path or https://…)")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// Connecting, resolving, TLS, sending or receiving failed.
    #[error("{url}: {message}")]
    Transfer {
        /// The URL.
        url: String,
        /// What went wrong, as the HTTP client put it.
        message: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
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

/// What [`download_from`] is doing, for progress output.
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadEvent<'a> {
    /// The file is already in the directory with the published hash.
    Present {
        /// File name without `.gz`.
        file: &'a str,
    },
    /// A request for the file is about to be made.
    Fetching {
        /// File name without `.gz`.
        file: &'a str,
        /// The URL asked.
        url: &'a str,
    },
    /// The file was fetched, verified and written.
    Fetched {
        /// File name without `.gz`.
        file: &'a str,
        /// The URL it came from.
        url: &'a str,
        /// Compressed size written.
        bytes: u64,
    },
    /// This URL did not give the published file; the next mirror is tried.
    Failed {
        /// File name without `.gz`.
        file: &'a str,
        /// The URL asked.
        url: &'a str,
        /// Why it was not taken.
        error: &'a DownloadError,
    },
}

/// The mirrors [`download`] uses for `kind` (empty for data sets that have
/// no downloader).
///
/// ```
/// use rampart_learn::{DatasetKind, mirrors};
/// assert!(mirrors(&DatasetKind::Mnist).len() >= 2);
/// assert!(mirrors(&DatasetKind::Cifar10).is_empty());
/// ```
pub fn mirrors(kind: &DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::Mnist => MNIST_MIRRORS,
        DatasetKind::FashionMnist => FASHION_MNIST_MIRRORS,
        DatasetKind::Synthetic(_) | DatasetKind::Cifar10 => &[],
    }
}

/// Downloads the four IDX files of `kind` (MNIST or Fashion-MNIST) as
/// `<name>.gz` into `dir`, from `base_url` or, with `None`, from the data
/// set's [`mirrors`] in turn. See [`download_from`].
pub fn download(
    kind: &DatasetKind,
    dir: &Path,
    base_url: Option<&str>,
) -> Result<(), DownloadError> {
    let given;
    let urls: &[&str] = match base_url {
        Some(u) => {
            given = [u];
            &given
        }
        None => mirrors(kind),
    };
    download_from(kind, dir, urls, &mut |_| {})
}

/// Downloads the four IDX files of `kind` into `dir`, each from the first
/// of `base_urls` that serves it with the published content (the file name
/// plus `.gz` is appended to the URL). Files already present in `dir` with
/// the right hash are kept. Each download is decompressed and checked
/// against the published SHA-256 before it is written; `on_event` hears of
/// every step. When no URL gives a file, the error is the last URL's.
pub fn download_from(
    kind: &DatasetKind,
    dir: &Path,
    base_urls: &[&str],
    on_event: &mut dyn FnMut(DownloadEvent<'_>),
) -> Result<(), DownloadError> {
    let set: &IdxSet = match kind {
        DatasetKind::Mnist => &MNIST,
        DatasetKind::FashionMnist => &FASHION_MNIST,
        DatasetKind::Synthetic(_) => return Err(DownloadError::Unsupported { kind: "synthetic" }),
        DatasetKind::Cifar10 => return Err(DownloadError::Unsupported { kind: "cifar10" }),
    };
    // Check every URL before the first request, so a typo fails at once.
    for url in base_urls {
        parse_base(url)?;
    }
    if base_urls.is_empty() {
        return Err(DownloadError::BadUrl { url: String::new() });
    }
    let agent = agent();
    for file in set.files() {
        let local = dir.join(file.name);
        if let Ok((path, bytes)) = read_maybe_gz(&local, RAW_LIMIT)
            && verify_sha256(&path, &bytes, file.sha256).is_ok()
        {
            on_event(DownloadEvent::Present { file: file.name });
            continue;
        }
        let mut last = None;
        for base in base_urls {
            let url = format!("{}/{}.gz", base.trim_end_matches('/'), file.name);
            on_event(DownloadEvent::Fetching {
                file: file.name,
                url: &url,
            });
            match fetch_verified(&agent, &url, dir, file) {
                Ok(bytes) => {
                    on_event(DownloadEvent::Fetched {
                        file: file.name,
                        url: &url,
                        bytes,
                    });
                    last = None;
                    break;
                }
                Err(e) => {
                    on_event(DownloadEvent::Failed {
                        file: file.name,
                        url: &url,
                        error: &e,
                    });
                    last = Some(e);
                }
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    Ok(())
}

/// GETs `url`, checks the decompressed bytes against `file`'s hash and
/// writes the body as `dir/<name>.gz`; returns the bytes written.
fn fetch_verified(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    file: &IdxFile,
) -> Result<u64, DownloadError> {
    let body = http_get(agent, url)?;
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
    // Created only now, so a fetch that gets nothing leaves nothing behind.
    std::fs::create_dir_all(dir).map_err(|source| DownloadError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_atomic(&gz_path, &body)?;
    Ok(body.len() as u64)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(MAX_REDIRECTS)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_recv_body(Some(BODY_TIMEOUT))
        .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `http://` or `https://` with a non-empty host and no whitespace.
fn parse_base(url: &str) -> Result<(), DownloadError> {
    let bad = || DownloadError::BadUrl {
        url: url.to_owned(),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || host.starts_with(':')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

/// GET `url` (redirects followed); returns the body, at most [`BODY_LIMIT`]
/// bytes.
fn http_get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, DownloadError> {
    let classify = |e: ureq::Error| match e {
        ureq::Error::StatusCode(status) => DownloadError::Status {
            url: url.to_owned(),
            status,
        },
        ureq::Error::BodyExceedsLimit(_) => DownloadError::TooLarge {
            url: url.to_owned(),
            limit: BODY_LIMIT,
        },
        ureq::Error::BadUri(_) => DownloadError::BadUrl {
            url: url.to_owned(),
        },
        other => DownloadError::Transfer {
            url: url.to_owned(),
            message: other.to_string(),
        },
    };
    let mut response = agent.get(url).call().map_err(classify)?;
    response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(classify)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_base("http://127.0.0.1:8080/a/b").is_ok());
        assert!(parse_base("http://example.org").is_ok());
        assert!(parse_base("https://example.org/x/").is_ok());
        for bad in [
            "ftp://example.org/",
            "http://",
            "http://:80/",
            "http://h/a b",
            "example.org",
        ] {
            assert!(
                matches!(parse_base(bad), Err(DownloadError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_downloadable_set_has_mirrors() {
        for kind in [DatasetKind::Mnist, DatasetKind::FashionMnist] {
            assert!(!mirrors(&kind).is_empty());
            for m in mirrors(&kind) {
                parse_base(m).unwrap();
            }
        }
    }
}
