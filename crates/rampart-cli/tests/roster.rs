//! `rampart roster new | add | show | id`, and the job id's stability: the
//! same roster content in any member order, key order or formatting has the
//! same id, which is the id the node runs.

mod common;

use std::path::Path;

use common::{expect_failure, rampart};

fn ok(args: &[&str]) -> String {
    let out = rampart(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let key = key.to_str().unwrap().to_owned();
    let peer = ok(&["keygen", "--out", &key]).trim().to_owned();
    (key, peer)
}

/// A complete 4-member median roster (f = 1) built with the subcommands.
fn four(dir: &Path) -> (String, Vec<(String, String)>) {
    let roster = dir.join("roster.toml").to_str().unwrap().to_owned();
    let out = ok(&[
        "roster",
        "new",
        "--out",
        &roster,
        "--rule",
        "median",
        "--f",
        "1",
        "--name",
        "t",
        "--rounds",
        "2",
        "--hidden",
        "8",
        "--eval-every",
        "1",
        "--start-timeout-ms",
        "100",
    ]);
    assert!(out.contains("no members yet"), "{out}");
    let keys: Vec<(String, String)> = (0..4).map(|i| keygen(dir, &format!("k{i}.key"))).collect();
    for (i, (key, peer)) in keys.iter().enumerate() {
        // By key file for some, by PeerId for others.
        let who = if i % 2 == 0 { key } else { peer };
        let addr = format!("/ip4/10.0.0.{}/tcp/4001", i + 1);
        let out = ok(&["roster", "add", &roster, "--peer", who, "--addr", &addr]);
        assert!(
            out.starts_with(&format!("{peer} added; n = {}", i + 1)),
            "{out}"
        );
    }
    (roster, keys)
}

#[test]
fn new_add_show_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, keys) = four(dir.path());
    let id = ok(&["roster", "id", &roster]).trim().to_owned();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let show = ok(&["roster", "show", &roster]);
    assert!(show.contains(&format!("job id      {id}")), "{show}");
    assert!(show.contains("n, f        4, 1 (rule median)"), "{show}");
    for (_, peer) in &keys {
        assert!(show.contains(peer.as_str()), "{show}");
    }
    assert!(show.contains("/ip4/10.0.0.3/tcp/4001"), "{show}");

    // Adding an existing member again adds addresses, not a member; a
    // trailing /p2p/ naming the member is accepted. Addresses are hints:
    // the job id stays.
    let (_, p0) = &keys[0];
    let with_p2p = format!("/ip4/192.0.2.1/tcp/5000/p2p/{p0}");
    let out = ok(&["roster", "add", &roster, "--peer", p0, "--addr", &with_p2p]);
    assert!(out.contains("n = 4"), "{out}");
    let text = std::fs::read_to_string(&roster).unwrap();
    assert!(text.contains("/ip4/192.0.2.1/tcp/5000\""), "{text}");
    assert_eq!(ok(&["roster", "id", &roster]).trim(), id);
    assert!(show.contains("gradients   f32 on the wire"), "{show}");
    assert!(!text.contains("encoding"), "{text}");

    // The same job with bf16 gradients: written to the file, shown, and
    // another job id.
    let text = text.replace("[job]\n", "[job]\nencoding = \"bf16\"\n");
    assert!(text.contains("encoding = \"bf16\""), "{text}");
    let bf16 = dir.path().join("bf16.toml");
    std::fs::write(&bf16, &text).unwrap();
    let bf16 = bf16.to_str().unwrap();
    let show = ok(&["roster", "show", bf16]);
    assert!(show.contains("gradients   bf16 on the wire"), "{show}");
    let bf16_id = ok(&["roster", "id", bf16]).trim().to_owned();
    assert_eq!(bf16_id.len(), 64);
    assert_ne!(bf16_id, id);
    let out = rampart(&[
        "roster",
        "new",
        "--out",
        "x.toml",
        "--rule",
        "median",
        "--f",
        "1",
        "--encoding",
        "f16",
    ]);
    let line = expect_failure(&out, "unknown encoding");
    assert!(line.contains("f16"), "{line}");
}

#[test]
fn bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, keys) = four(dir.path());
    let out = rampart(&[
        "roster", "new", "--out", &roster, "--rule", "median", "--f", "1",
    ]);
    let line = expect_failure(&out, "existing roster");
    assert!(line.contains("--force"), "{line}");
    let out = rampart(&[
        "roster", "new", "--out", "x.toml", "--rule", "nope", "--f", "1",
    ]);
    let line = expect_failure(&out, "unknown rule");
    assert!(line.contains("unknown rule \"nope\""), "{line}");
    let (_, p0) = &keys[0];
    let out = rampart(&[
        "roster",
        "add",
        &roster,
        "--peer",
        p0,
        "--addr",
        "10.0.0.1:4001",
    ]);
    let line = expect_failure(&out, "bad multiaddr");
    assert!(line.contains("address \"10.0.0.1:4001\""), "{line}");
    let (_, p1) = &keys[1];
    let other = format!("/ip4/10.0.0.1/tcp/1/p2p/{p1}");
    let out = rampart(&["roster", "add", &roster, "--peer", p0, "--addr", &other]);
    let line = expect_failure(&out, "address of another peer");
    assert!(line.contains("not the member"), "{line}");
    let out = rampart(&["roster", "add", &roster, "--peer", "/nonexistent/node.key"]);
    let line = expect_failure(&out, "neither PeerId nor key");
    assert!(
        line.contains("neither a PeerId nor an existing key file"),
        "{line}"
    );

    // An incomplete roster has no id yet (trimmed mean needs n > 2f).
    let small = dir.path().join("small.toml");
    let small = small.to_str().unwrap();
    ok(&[
        "roster",
        "new",
        "--out",
        small,
        "--rule",
        "trimmed-mean",
        "--f",
        "1",
    ]);
    let out = ok(&["roster", "add", small, "--peer", p0]);
    assert!(out.contains("not enough yet"), "{out}");
    let out = rampart(&["roster", "id", small]);
    expect_failure(&out, "incomplete roster");
    let show = ok(&["roster", "show", small]);
    assert!(show.contains("job id      none yet"), "{show}");
}

#[test]
fn job_id_ignores_member_order_key_order_and_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let (roster, keys) = four(dir.path());
    let id = ok(&["roster", "id", &roster]).trim().to_owned();
    // The same content written by hand: comments, other key order, members
    // reversed, addresses dropped, defaults left out, other number forms.
    let mut text = String::from(
        "# hand-written\n[job]\nrule = \"median\"\nf = 1\nname = \"t\"\nrounds = 2\n\
         hidden = [ 8 ]\nseed = 1\nmodel = \"mlp\"\ndata = \"synthetic\"\npartition = \"iid\"\n\
         lr = 5e-2\nmomentum = 0.90\nbatch = 32\nround_timeout_ms = 5_000\n\
         start_timeout_ms = 100\neval_every = 1\n\n",
    );
    for (_, peer) in keys.iter().rev() {
        text.push_str(&format!("[[members]]\npeer = '{peer}'\n\n"));
    }
    text.push_str("n = 4\n");
    // `n` after the tables would belong to the last member: put it first.
    let text = format!("n = 4\n{}", text.trim_end_matches("n = 4\n"));
    let other = dir.path().join("other.toml");
    std::fs::write(&other, &text).unwrap();
    assert_eq!(ok(&["roster", "id", other.to_str().unwrap()]).trim(), id);
    // Any change to the job changes it.
    std::fs::write(&other, text.replace("lr = 5e-2", "lr = 0.051")).unwrap();
    assert_ne!(ok(&["roster", "id", other.to_str().unwrap()]).trim(), id);
}

#[test]
fn the_node_runs_the_printed_job_id() {
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("one.toml");
    let roster = roster.to_str().unwrap();
    ok(&[
        "roster",
        "new",
        "--out",
        roster,
        "--rule",
        "average",
        "--f",
        "0",
        "--rounds",
        "1",
        "--hidden",
        "8",
        "--start-timeout-ms",
        "10",
    ]);
    let (key, _) = keygen(dir.path(), "a.key");
    ok(&["roster", "add", roster, "--peer", &key]);
    let id = ok(&["roster", "id", roster]).trim().to_owned();
    let out = ok(&[
        "node",
        "--key",
        &key,
        "--roster",
        roster,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--metrics",
        "-",
    ]);
    let start: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(start["kind"], "start");
    assert_eq!(start["job"], id.as_str());
}
