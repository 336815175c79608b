//! `rampart keygen` and the configuration errors of `rampart node`: each is
//! exit status 2 with one `error:` line, before anything starts.

mod common;

use std::path::{Path, PathBuf};

use common::{expect_failure, rampart};
use rampart_testnet::Scenario;

/// A roster of the quickstart's 7 testnet keys, and the key of member 0.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let roster = dir.join("roster.toml");
    Scenario::quickstart().roster(1).save(&roster).unwrap();
    let key = dir.join("node.key");
    rampart_testnet::roster::write_key(&key, &rampart_testnet::roster::testnet_key(1, 0)).unwrap();
    (roster, key)
}

fn node(args: &[&str]) -> std::process::Output {
    let mut all = vec!["node"];
    all.extend_from_slice(args);
    rampart(&all)
}

#[test]
fn keygen_writes_a_private_key_and_prints_its_peer_id() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let out = rampart(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let key = rampart_testnet::roster::read_key(&path).unwrap();
    assert_eq!(printed.trim(), key.public().to_peer_id().to_string());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Never overwrites.
    let again = rampart(&["keygen", "--out", path.to_str().unwrap()]);
    let line = expect_failure(&again, "existing key file");
    assert!(line.contains("cannot create key file"), "{line}");
}

#[test]
fn missing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, _) = setup(dir.path());
    let out = node(&[
        "--key",
        "/nonexistent/node.key",
        "--roster",
        roster.to_str().unwrap(),
    ]);
    let line = expect_failure(&out, "missing key");
    assert!(
        line.contains("cannot read key file /nonexistent/node.key")
            && line.ends_with("; create one with `rampart keygen --out /nonexistent/node.key`"),
        "{line}"
    );
    let out = node(&["--roster", roster.to_str().unwrap()]);
    let line = expect_failure(&out, "no key at all");
    assert!(line.contains("no key file"), "{line}");
}

#[test]
fn unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = setup(dir.path());
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "key = \"node.key\"\nroster = \"roster.toml\"\nlisten_on = []\n",
    )
    .unwrap();
    let out = node(&["--config", cfg.to_str().unwrap()]);
    let line = expect_failure(&out, "unknown key");
    assert!(line.contains("unknown field `listen_on`"), "{line}");
}

#[test]
fn bad_multiaddrs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = setup(dir.path());
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "key = \"node.key\"\nroster = \"roster.toml\"\nlisten = [\"127.0.0.1:4001\"]\n",
    )
    .unwrap();
    let out = node(&["--config", cfg.to_str().unwrap()]);
    let line = expect_failure(&out, "bad listen address");
    assert!(line.contains("listen address \"127.0.0.1:4001\""), "{line}");
    let out = node(&[
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1",
    ]);
    let line = expect_failure(&out, "bootstrap without /p2p");
    assert!(line.contains("must end with /p2p/"), "{line}");
}

#[test]
fn roster_without_self() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, _) = setup(dir.path());
    let other = dir.path().join("other.key");
    rampart_testnet::roster::write_key(&other, &rampart_testnet::roster::testnet_key(99, 0))
        .unwrap();
    let out = node(&[
        "--key",
        other.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
    ]);
    let line = expect_failure(&out, "roster without self");
    assert!(line.contains("is not a member of roster"), "{line}");
}

#[test]
fn bad_roster_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, key) = setup(dir.path());
    let text = std::fs::read_to_string(&roster).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace(
            "rule = \"multi-bulyan\"",
            "rule = \"multi-bulyan\"\nlr2 = 1",
        ),
    )
    .unwrap();
    let out = node(&[
        "--key",
        key.to_str().unwrap(),
        "--roster",
        bad.to_str().unwrap(),
    ]);
    let line = expect_failure(&out, "unknown roster key");
    assert!(line.contains("unknown field `lr2`"), "{line}");
    std::fs::write(&bad, text.replace("f = 1", "f = 2")).unwrap();
    let out = node(&[
        "--key",
        key.to_str().unwrap(),
        "--roster",
        bad.to_str().unwrap(),
    ]);
    let line = expect_failure(&out, "rule precondition");
    assert!(line.contains("n >= 4f + 3"), "{line}");
    let out = node(&[
        "--key",
        key.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--role",
        "ipm:sigma=3",
    ]);
    let line = expect_failure(&out, "bad role");
    assert!(line.contains("takes no parameter"), "{line}");
}

#[test]
fn more_bad_config_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, key) = setup(dir.path());
    let cfg = dir.path().join("node.toml");
    // A bootstrap address in the file that is no multiaddr.
    std::fs::write(
        &cfg,
        "key = \"node.key\"\nroster = \"roster.toml\"\nbootstrap = [\"10.0.0.1:4001\"]\n",
    )
    .unwrap();
    let out = node(&["--config", cfg.to_str().unwrap()]);
    let line = expect_failure(&out, "bad bootstrap in the file");
    assert!(
        line.contains("bootstrap address \"10.0.0.1:4001\""),
        "{line}"
    );
    // A missing roster file.
    let out = node(&[
        "--key",
        key.to_str().unwrap(),
        "--roster",
        "/nonexistent/roster.toml",
    ]);
    let line = expect_failure(&out, "missing roster");
    assert!(
        line.contains("cannot read roster /nonexistent/roster.toml")
            && line.ends_with("; create one with `rampart roster new` (see its --help)"),
        "{line}"
    );
    // A key file that is no key.
    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, b"not a key").unwrap();
    let out = node(&[
        "--key",
        junk.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
    ]);
    let line = expect_failure(&out, "junk key");
    assert!(line.contains("is not a rampart key file"), "{line}");
    // A config file that is not TOML, and one that does not exist.
    std::fs::write(&cfg, "key = \n").unwrap();
    let out = node(&["--config", cfg.to_str().unwrap()]);
    let line = expect_failure(&out, "not TOML");
    assert!(line.contains("config"), "{line}");
    let out = node(&["--config", "/nonexistent/node.toml"]);
    let line = expect_failure(&out, "missing config");
    assert!(line.contains("cannot read config"), "{line}");
}
