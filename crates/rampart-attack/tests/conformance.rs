//! The attack formulas against `../shared/spec/vectors/attacks.json`.

use rampart_attack::{Attack, ForgeContext, alie_z_max, flip_label};
use serde_json::Value;

fn bits(v: &Value) -> f64 {
    f64::from_bits(u64::from_str_radix(v.as_str().expect("hex"), 16).expect("hex bits"))
}

#[test]
fn shared_attack_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/spec/vectors/attacks.json"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read attacks.json"))
            .expect("attacks.json");
    let mut checked = 0;
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let honest: Vec<Vec<f64>> = case["honest_bits"]
            .as_array()
            .expect("honest")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(bits).collect())
            .collect();
        let rows: Vec<&[f64]> = honest.iter().map(Vec::as_slice).collect();
        let p = &case["params"];
        let attack = match case["attack"].as_str().expect("attack") {
            "sign_flip" => Attack::SignFlip,
            "ipm" => Attack::Ipm {
                tau: p["tau"].as_f64().expect("tau"),
            },
            "alie" => Attack::Alie {
                tau: Some(p["tau"].as_f64().expect("tau")),
                ddof: p["ddof"].as_u64().expect("ddof") as usize,
            },
            "mimic" => Attack::Mimic {
                idx: p["idx"].as_u64().expect("idx") as usize,
            },
            "inf" => Attack::Inf,
            "nan" => Attack::Nan,
            other => panic!("{name}: unknown attack {other}"),
        };
        let got = attack
            .forge(
                &rows,
                &ForgeContext {
                    n: rows.len() + 1,
                    f: 1,
                    seed: 0,
                },
            )
            .expect("forge");
        let want: Vec<f64> = case["expected"]["output_bits"]
            .as_array()
            .expect("bits")
            .iter()
            .map(bits)
            .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (c, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{name}: coord {c}: {g} vs {w}"
            );
        }
        checked += 1;
    }
    let mut z_checked = 0;
    for row in doc["alie_z_table"].as_array().expect("z table") {
        let n = row["n"].as_u64().expect("n") as usize;
        let f = row["f"].as_u64().expect("f") as usize;
        let want = bits(&row["z_max_bits"]);
        let got = alie_z_max(n, f).expect("defined");
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "z_max({n},{f}) = {got}, want {want}"
        );
        z_checked += 1;
    }
    let mut flips = 0;
    for row in doc["label_flip"].as_array().expect("label flip") {
        let c = row["num_classes"].as_u64().expect("C") as u32;
        let y = row["label"].as_u64().expect("y") as u32;
        assert_eq!(
            flip_label(y, c),
            row["flipped"].as_u64().expect("flipped") as u32
        );
        flips += 1;
    }
    println!(
        "attacks: {checked} cases bit-exact, {z_checked} z_max values within 1e-12, {flips} label flips"
    );
    assert_eq!((checked, z_checked), (12, 8));
}
