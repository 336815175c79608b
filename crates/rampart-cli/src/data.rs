//! `rampart data`: list the data sets, fetch MNIST / Fashion-MNIST with
//! checksum verification, verify a directory a user points to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rampart_learn::{DatasetKind, DownloadEvent, download_from, mirrors};
use rampart_testnet::spec::DataName;

/// Subcommands of `rampart data`.
#[derive(Subcommand, Debug)]
pub(crate) enum DataCommand {
    /// List the data sets, their files, licences and where they come from.
    List,
    /// Download a data set's files into a directory, checking each against
    /// the published SHA-256 before it is written (files already there and
    /// valid are kept).
    Fetch(FetchArgs),
    /// Check that a directory holds a complete, unaltered copy of a data set
    /// (every file against the published SHA-256) and print its size.
    Verify(VerifyArgs),
}

/// A data set that lives in files: a [`DataName`] other than synthetic.
#[derive(Clone, Debug)]
pub(crate) struct DataSet {
    data: DataName,
    kind: DatasetKind,
}

impl DataSet {
    fn of(data: DataName) -> Option<Self> {
        data.file_kind().map(|kind| Self { data, kind })
    }

    fn name(&self) -> &'static str {
        self.data.name()
    }
}

impl std::str::FromStr for DataSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let data = s.parse::<DataName>().map_err(|e| format!("{e:#}"))?;
        Self::of(data).ok_or_else(|| {
            "the synthetic data set is generated from the job seed: there is nothing to fetch or verify (give mnist, fashion-mnist or cifar10)"
                .to_owned()
        })
    }
}

/// Flags of `rampart data fetch`.
#[derive(Args, Debug)]
pub(crate) struct FetchArgs {
    /// Which data set: mnist, fashion-mnist or cifar10.
    set: DataSet,
    /// Directory to put the files in (created if needed). Default: data/<set>.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Base URL to fetch from instead of the built-in mirrors; repeat to try
    /// several in order. http:// or https://; each file name plus .gz is appended.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
}

/// Flags of `rampart data verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// Which data set: mnist, fashion-mnist or cifar10.
    set: DataSet,
    /// Directory holding the files. Default: data/<set>.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn default_dir(set: &DataSet) -> PathBuf {
    Path::new("data").join(set.name())
}

pub(crate) fn run(command: &DataCommand) -> Result<()> {
    match command {
        DataCommand::List => {
            list();
            Ok(())
        }
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Verify(args) => verify(args),
    }
}

fn list() {
    println!("synthetic       built in: a seeded Gaussian mixture, nothing to fetch (the default)");
    let sets = [DataName::Mnist, DataName::FashionMnist, DataName::Cifar10];
    for set in sets.into_iter().filter_map(DataSet::of) {
        let kind = &set.kind;
        let (what, licence) = match set.data {
            DataName::Mnist => (
                "handwritten digits, 60,000 + 10,000 grey 28×28 images, 10 classes",
                "CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
            ),
            DataName::FashionMnist => (
                "Zalando article images, 60,000 + 10,000 grey 28×28, 10 classes",
                "MIT, Zalando SE",
            ),
            _ => (
                "50,000 + 10,000 colour 32×32 images, 10 classes",
                "see the data set's home page (Krizhevsky, 2009)",
            ),
        };
        println!("{:<15} {what}", set.name());
        println!("{:<15} licence: {licence}", "");
        println!("{:<15} files: {}", "", kind.files().join(", "));
        let from = mirrors(kind);
        if from.is_empty() {
            println!(
                "{:<15} no downloader: unpack the binary version (cifar-10-binary.tar.gz) and point --data-dir at the folder holding the batches",
                ""
            );
        } else {
            println!(
                "{:<15} rampart data fetch {} --dir {} (mirrors: {})",
                "",
                set.name(),
                default_dir(&set).display(),
                from.join(" ")
            );
        }
    }
}

fn fetch(args: &FetchArgs) -> Result<()> {
    let set = &args.set;
    let kind = &set.kind;
    if mirrors(kind).is_empty() {
        bail!(
            "{} has no downloader: unpack its binary version (cifar-10-binary.tar.gz from the data set's home page) into a folder and check it with `rampart data verify {} --dir DIR`",
            set.name(),
            set.name()
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| default_dir(set));
    let urls: Vec<&str> = if args.urls.is_empty() {
        mirrors(kind).to_vec()
    } else {
        args.urls.iter().map(String::as_str).collect()
    };
    let mut fetched = 0u64;
    let mut on_event = |ev: DownloadEvent<'_>| match ev {
        DownloadEvent::Present { file } => println!("{file}: already present, verified"),
        DownloadEvent::Fetching { file, url } => println!("{file}: fetching {url}"),
        DownloadEvent::Fetched { file, bytes, .. } => {
            fetched += bytes;
            println!("{file}: {bytes} bytes, verified");
        }
        DownloadEvent::Failed { file, error, .. } => println!("{file}: not taken: {error}"),
        _ => {}
    };
    download_from(kind, &dir, &urls, &mut on_event).with_context(|| {
        format!(
            "cannot fetch {} into {}: no URL gave the published file. Check the network, give a reachable mirror with --url, or copy the four files (raw or .gz) into that folder by other means and check them with `rampart data verify {} --dir {}`",
            set.name(),
            dir.display(),
            set.name(),
            dir.display()
        )
    })?;
    println!(
        "{}: complete in {} ({fetched} bytes fetched); every file matches the published SHA-256. Use it with --data {} --data-dir {}",
        set.name(),
        dir.display(),
        set.name(),
        dir.display()
    );
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let set = &args.set;
    let kind = &set.kind;
    let dir = args.dir.clone().unwrap_or_else(|| default_dir(set));
    rampart_testnet::scenario::check_data_dir(set.data, &dir)?;
    let split = kind.load(&dir).map_err(|e| {
        let fix = if mirrors(kind).is_empty() {
            "unpack that file again from the data set's binary version".to_owned()
        } else {
            format!(
                "delete that file and run `rampart data fetch {} --dir {}`",
                set.name(),
                dir.display()
            )
        };
        anyhow::anyhow!("{e}; {fix}")
    })?;
    let hashes = if mirrors(kind).is_empty() {
        "every batch has the expected size and labels"
    } else {
        "every file matches the published SHA-256"
    };
    println!(
        "{} in {}: {} training and {} test samples of shape {:?}, {} classes; {hashes}",
        set.name(),
        dir.display(),
        split.train.len(),
        split.test.len(),
        kind.sample_shape(),
        kind.num_classes()
    );
    Ok(())
}
