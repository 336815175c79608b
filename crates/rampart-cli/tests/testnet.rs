//! A 5-node, 20-round testnet of real `rampart node` processes, and the
//! report it writes. Nothing sleeps: the test waits for the orchestrator to
//! exit (it waits for its node processes), with the scenario's timeout.

mod common;

const SCENARIO: &str = r#"
name = "ci"
nodes = 5
f = 1
rule = "multi-krum"
model = "mlp"
hidden = [32]
data = "synthetic"
partition = "iid"
rounds = 20
lr = 0.1
momentum = 0.9
batch = 32
round_timeout_ms = 5000
start_timeout_ms = 20000
drift_period = 5
eval_every = 5
seed = 7
timeout_s = 120

[[roles]]
behaviour = "sign-flip"
count = 1
"#;

#[test]
fn five_node_testnet_writes_its_report() {
    let run = common::testnet_up(SCENARIO);
    let (out_dir, stdout, summary) = (&run.report, &run.stdout, &run.summary);
    assert!(stdout.contains("honest accuracy: min"), "{stdout}");

    for key in [
        "honest_accuracy",
        "rounds",
        "rejected",
        "ignored",
        "excluded",
        "honest_spread",
        "bytes_sent",
        "rule",
        "n",
        "f",
        "attacks",
        "nodes",
    ] {
        assert!(
            summary.get(key).is_some(),
            "summary.json lacks {key}: {summary}"
        );
    }
    assert_eq!(summary["n"], 5);
    assert_eq!(summary["f"], 1);
    assert_eq!(summary["rule"], "multi-krum");
    assert_eq!(summary["rounds"], 20);
    assert_eq!(summary["rounds_completed"], 20);
    assert_eq!(summary["attacks"], serde_json::json!(["sign-flip"]));
    let acc = &summary["honest_accuracy"];
    let (min, mean, max) = (
        acc["min"].as_f64().unwrap(),
        acc["mean"].as_f64().unwrap(),
        acc["max"].as_f64().unwrap(),
    );
    assert!(
        0.5 < min && min <= mean && mean <= max && max <= 1.0,
        "{acc}"
    );
    // Every honest node aggregated the same inputs: one model.
    assert_eq!(summary["honest_models_identical"], true, "{summary}");
    assert_eq!(summary["honest_spread"].as_f64(), Some(0.0));
    // A sign-flip gradient is well-formed: nothing is refused, the rule
    // copes with it.
    assert_eq!(summary["rejected"], serde_json::json!({}), "{summary}");
    assert_eq!(summary["excluded"], serde_json::json!([]), "{summary}");
    assert!(summary["bytes_sent"].as_u64().unwrap() > 0);
    let nodes = summary["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    for (i, n) in nodes.iter().enumerate() {
        assert!(n["peer"].as_str().unwrap().starts_with("12D3KooW"), "{n}");
        let role = n["role"].as_str().unwrap();
        assert_eq!(role, if i == 4 { "sign-flip" } else { "honest" });
        assert_eq!(n["model_hash"].as_str().unwrap().len(), 64, "{n}");
        assert!(n["accuracy"].as_f64().unwrap() > 0.0);
        assert_eq!(n["finished"], true);
    }

    for i in 0..5 {
        let csv = std::fs::read_to_string(out_dir.join(format!("metrics/node-{i}.csv"))).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "round,loss,accepted,rejected,excluded,round_ms,bytes_sent,test_accuracy,test_loss"
        );
        assert_eq!(lines.len(), 21, "node {i}: {csv}");
        assert!(lines[1].starts_with("0,"));
        assert!(lines[20].starts_with("19,"));
        // Evaluated every 5 rounds: rounds 4, 9, 14, 19 carry an accuracy.
        let evaluated = lines[1..].iter().filter(|l| !l.ends_with(",,")).count();
        assert_eq!(evaluated, 4, "node {i}: {csv}");
        // Every round aggregates all 5 inputs, the Byzantine one included.
        assert!(
            lines[1..].iter().all(|l| l.split(',').nth(2) == Some("5")),
            "{csv}"
        );
    }
    let spread = std::fs::read_to_string(out_dir.join("metrics/spread.csv")).unwrap();
    assert_eq!(spread.lines().count(), 5, "{spread}");
    for plot in ["accuracy.png", "accuracy.svg", "spread.png", "spread.svg"] {
        let len = std::fs::metadata(out_dir.join(plot)).unwrap().len();
        assert!(len > 1000, "{plot} is {len} bytes");
    }
    let png = std::fs::read(out_dir.join("accuracy.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out_dir.join("accuracy.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("test accuracy"));
    // No node process is left: their logs end and the roster is there.
    assert!(out_dir.join("roster.toml").exists());
    assert!(out_dir.join("nodes/node-0/metrics.jsonl").exists());
}

#[test]
fn bad_scenarios_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(
        &scenario,
        SCENARIO.replace("rounds = 20", "rounds = 20\nrund = 1"),
    )
    .unwrap();
    let out = common::rampart(&["testnet", "up", scenario.to_str().unwrap()]);
    let line = common::expect_failure(&out, "unknown scenario key");
    assert!(line.contains("unknown field `rund`"), "{line}");
    let out = common::rampart(&["testnet", "up", "--nodes", "6", "--rule", "bulyan"]);
    let line = common::expect_failure(&out, "rule precondition");
    assert!(line.contains("n >= 4f + 3"), "{line}");
    let out = common::rampart(&["testnet", "up", "--byzantine", "alie:9"]);
    let line = common::expect_failure(&out, "too many Byzantine");
    assert!(line.contains("more than the 7 nodes"), "{line}");
}

/// An equivocator is excluded by every honest node and may never get a
/// quorum again: the run must end once the honest nodes are done (after a
/// grace period), not at the scenario's timeout.
#[test]
fn an_excluded_equivocator_does_not_hold_the_run() {
    let scenario_text = SCENARIO
        .replace("rounds = 20", "rounds = 8")
        .replace("round_timeout_ms = 5000", "round_timeout_ms = 1000")
        .replace("timeout_s = 120", "timeout_s = 90")
        .replace("sign-flip", "equivocate");
    let run = common::testnet_up(&scenario_text);
    let (stderr, summary) = (&run.stderr, &run.summary);
    assert_eq!(
        summary["excluded"].as_array().unwrap().len(),
        1,
        "{summary}"
    );
    assert!(summary.get("aborted").is_none(), "{summary}");
    for node in summary["nodes"].as_array().unwrap() {
        if node["role"] == "honest" {
            assert_eq!(node["finished"], true, "{node}");
        } else if node["finished"] != true {
            assert!(stderr.contains("every honest node is done"), "{stderr}");
        }
    }
    // Far from the 90 s timeout: 8 rounds, then at most the grace period.
    assert!(summary["wall_s"].as_f64().unwrap() < 60.0, "{summary}");
}
