//! `rampart keygen`: a new Ed25519 node key.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use libp2p::identity::Keypair;

/// Flags of `rampart keygen`.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Where to write the key (created with mode 0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Writes a fresh key and prints its PeerId on stdout.
pub(crate) fn run(args: &KeygenArgs) -> Result<()> {
    let key = Keypair::generate_ed25519();
    rampart_testnet::roster::write_key(&args.out, &key)?;
    println!("{}", key.public().to_peer_id());
    Ok(())
}
