//! Nodes on different hosts: four `rampart node` processes, each in its own
//! Linux network namespace with its own 10.77.0.x address, cabled by veth
//! pairs to a bridge. They know each other only from `--bootstrap`
//! addresses (no 127.0.0.1, no roster addresses) and train a logistic
//! regression on the synthetic data to the end, reaching bit-identical
//! models (no faults, no timeouts).
//!
//! Skipped, with a printed message, only where namespaces cannot be created
//! (not root, no CAP_NET_ADMIN, no `ip`); CI runs as root and installs
//! iproute2 when missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rampart_testnet::netns::{self, Lab};
use rampart_testnet::roster::{testnet_key, write_key};
use rampart_testnet::{Member, Roster, Scenario};

const N: usize = 4;
const ROUNDS: u64 = 15;
const PORT: u16 = 4001;

/// The node processes, killed on drop (before the namespaces go).
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn roster() -> Roster {
    let mut s = Scenario::quickstart();
    s.name = "namespaces".into();
    s.nodes = N;
    s.f = 1;
    s.rule = "trimmed-mean".parse().unwrap();
    s.model = rampart_testnet::ModelName::Logreg;
    s.rounds = ROUNDS;
    s.lr = 0.1;
    s.eval_every = 5;
    s.round_timeout_ms = 10_000;
    s.start_timeout_ms = 20_000;
    s.roles.clear();
    let mut r = s.roster(5);
    // Addresses only from --bootstrap.
    r.members = r
        .members
        .into_iter()
        .map(|m| Member {
            peer: m.peer,
            addrs: Vec::new(),
        })
        .collect();
    r
}

#[test]
fn four_namespaces_train_to_completion() {
    if let Err(e) = netns::available() {
        println!(
            "SKIPPED: network namespaces cannot be created here ({e:#}); run as root with iproute2"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let roster = roster();
    let roster_path = dir.path().join("roster.toml");
    roster.save(&roster_path).unwrap();
    let lab = Lab::create(N).unwrap();
    let peers: Vec<String> = (0..N)
        .map(|i| testnet_key(5, i).public().to_peer_id().to_string())
        .collect();

    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut nodes = Nodes(Vec::new());
    for i in 0..N {
        let key = dir.path().join(format!("node-{i}.key"));
        write_key(&key, &testnet_key(5, i)).unwrap();
        let log = std::fs::File::create(dir.path().join(format!("node-{i}.log"))).unwrap();
        let mut cmd: Command = lab.command(i, env!("CARGO_BIN_EXE_rampart"));
        cmd.arg("node")
            .arg("--key")
            .arg(&key)
            .arg("--roster")
            .arg(&roster_path)
            .arg("--listen")
            .arg(format!("/ip4/{}/tcp/{PORT}", Lab::addr(i)))
            .args(["--metrics", "-", "--stop-on-stdin-eof"]);
        for j in (0..N).filter(|&j| j != i) {
            cmd.arg("--bootstrap").arg(format!(
                "/ip4/{}/tcp/{PORT}/p2p/{}",
                Lab::addr(j),
                peers[j]
            ));
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        nodes.0.push(child);
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut finals: Vec<Option<serde_json::Value>> = vec![None; N];
    let mut listening: Vec<Option<String>> = vec![None; N];
    let mut rounds = vec![0u64; N];
    while finals.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, line) = match rx.recv_timeout(left) {
            Ok(x) => x,
            Err(e) => {
                let logs: Vec<String> = (0..N)
                    .map(|i| {
                        let t = std::fs::read_to_string(dir.path().join(format!("node-{i}.log")))
                            .unwrap_or_default();
                        let tail: Vec<&str> = t.lines().rev().take(5).collect();
                        format!("node {i}: {tail:?}")
                    })
                    .collect();
                panic!("{e:?} with rounds {rounds:?}; logs:\n{}", logs.join("\n"));
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        match v["kind"].as_str() {
            Some("event") => {
                let ev = &v["event"];
                if let Some(a) = ev["Listening"]["addr"].as_str() {
                    listening[i] = Some(a.to_owned());
                }
                if let Some(r) = ev["RoundCompleted"]["round"].as_u64() {
                    rounds[i] = r + 1;
                }
                assert!(ev.get("Failed").is_none(), "node {i}: {ev}");
                assert!(ev.get("JobMismatch").is_none(), "node {i}: {ev}");
            }
            Some("final") => finals[i] = Some(v),
            _ => {}
        }
    }
    for i in 0..N {
        // Each node listened on its own namespace's address.
        let want = format!("/ip4/{}/tcp/{PORT}", Lab::addr(i));
        assert_eq!(listening[i].as_deref(), Some(want.as_str()), "node {i}");
        let f = finals[i].as_ref().unwrap();
        assert_eq!(f["rounds"], ROUNDS, "node {i}");
        assert!(f["accuracy"].as_f64().unwrap() > 0.5, "node {i}: {f}");
    }
    // No faults, no timeouts: bit-identical models.
    let hash = &finals[0].as_ref().unwrap()["model_hash"];
    assert!(
        finals
            .iter()
            .all(|f| &f.as_ref().unwrap()["model_hash"] == hash)
    );
    drop(nodes);
    drop(lab);
}
