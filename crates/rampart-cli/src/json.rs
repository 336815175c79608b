//! JSON input and output of float arrays.
//!
//! Input follows the conformance vectors' encoding: numbers, plus the strings
//! `"nan"`, `"inf"` and `"-inf"` for non-finite values. Numbers are parsed to
//! the nearest `f64` (serde_json's `float_roundtrip`), and rows are decoded
//! straight into one flat buffer, without an intermediate `Value` tree.
//!
//! Output writes finite values in the shortest decimal that parses back to
//! the same value of their type (`f32` values as `f32`), and non-finite
//! values as those same three strings, since JSON has no NaN or infinity.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rampart_gar::Float;
use serde::de::{self, DeserializeSeed, SeqAccess, Unexpected, Visitor};
use serde::{Serialize, Serializer};

use crate::npy::Matrix;

/// Reads `path` as an array of n ≥ 1 rows of d ≥ 1 numbers each. Messages
/// do not repeat the path: callers add it as context.
pub(crate) fn read_matrix(path: &Path) -> Result<Matrix<f64>> {
    let bytes = std::fs::read(path).context("cannot read the file")?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let matrix = MatrixSeed
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m))
        .context("invalid JSON input")?;
    if matrix.n == 0 {
        bail!("invalid JSON input: the array is empty; expected at least one row");
    }
    if matrix.d == 0 {
        bail!("invalid JSON input: the rows are empty (dimension 0)");
    }
    Ok(matrix)
}

/// Reads `path` as one array of numbers (the path is left to the caller's
/// context).
pub(crate) fn read_vector(path: &Path) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).context("cannot read the file")?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let mut data = Vec::new();
    RowSeed {
        data: &mut data,
        row: None,
        d: None,
    }
    .deserialize(&mut de)
    .and_then(|_| de.end())
    .context("invalid JSON vector")?;
    Ok(data)
}

/// The whole input: a sequence of rows.
struct MatrixSeed;

impl<'de> DeserializeSeed<'de> for MatrixSeed {
    type Value = Matrix<f64>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MatrixSeed {
    type Value = Matrix<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows, each an array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut data = Vec::new();
        let mut d = None;
        let mut n = 0;
        while let Some(len) = seq.next_element_seed(RowSeed {
            data: &mut data,
            row: Some(n),
            d,
        })? {
            d.get_or_insert(len);
            n += 1;
        }
        Ok(Matrix {
            n,
            d: d.unwrap_or(0),
            data,
        })
    }
}

/// One row, appended to `data`; its length must be `d` where that is known.
struct RowSeed<'a> {
    data: &'a mut Vec<f64>,
    /// The row's index, for messages (`None` for a lone vector).
    row: Option<usize>,
    /// The length of row 0, once known.
    d: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<usize, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "row {row} to be an array of numbers"),
            None => f.write_str("an array of numbers"),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut col = 0;
        while let Some(v) = seq.next_element_seed(CellSeed { row: self.row, col })? {
            if let (Some(row), Some(d)) = (self.row, self.d)
                && col == d
            {
                return Err(de::Error::custom(format!(
                    "ragged rows: row {row} has more than {d} numbers, but row 0 has {d}"
                )));
            }
            self.data.push(v);
            col += 1;
        }
        if let (Some(row), Some(d)) = (self.row, self.d)
            && col != d
        {
            return Err(de::Error::custom(format!(
                "ragged rows: row {row} has {col} numbers, but row 0 has {d}"
            )));
        }
        Ok(col)
    }
}

/// One value: a number or `"nan"`, `"inf"`, `"-inf"`.
struct CellSeed {
    row: Option<usize>,
    col: usize,
}

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = f64;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<f64, D::Error> {
        de.deserialize_any(self)
    }
}

impl Visitor<'_> for CellSeed {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or one of the strings \"nan\", \"inf\", \"-inf\"")?;
        match self.row {
            Some(row) => write!(f, " (row {row}, column {})", self.col),
            None => write!(f, " (index {})", self.col),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        // Rounds to nearest, like parsing the digits as a float would.
        Ok(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// A float written as a JSON number when finite and as `"nan"`, `"inf"` or
/// `"-inf"` otherwise.
pub(crate) struct Num<T>(pub(crate) T);

impl<T: Float + Serialize> Serialize for Num<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            // serde_json writes f32 and f64 with ryu: the shortest decimal
            // that reads back to the same value of that type.
            v.serialize(s)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if v > T::ZERO {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

/// A slice of floats written as a JSON array of [`Num`].
pub(crate) struct Nums<'a, T>(pub(crate) &'a [T]);

impl<T: Float + Serialize> Serialize for Nums<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&v| Num(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix<f64>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.json");
        std::fs::write(&path, text)?;
        read_matrix(&path)
    }

    #[test]
    fn reads_numbers_and_non_finite_strings() {
        let m =
            parse(r#"[[1, -2.5, "nan"], [1e300, "inf", "-inf"], [0.1, -0.0, 5e-324]]"#).unwrap();
        assert_eq!((m.n, m.d), (3, 3));
        assert_eq!(m.data[0], 1.0);
        assert!(m.data[2].is_nan());
        assert_eq!(m.data[3], 1e300);
        assert_eq!(m.data[4], f64::INFINITY);
        assert_eq!(m.data[5], f64::NEG_INFINITY);
        assert_eq!(m.data[6].to_bits(), 0.1f64.to_bits());
        assert_eq!(m.data[7].to_bits(), (-0.0f64).to_bits());
        assert_eq!(m.data[8].to_bits(), 1);
    }

    #[test]
    fn errors_name_the_row() {
        for (text, needle) in [
            ("[[1, 2], [3]]", "row 1 has 1 numbers, but row 0 has 2"),
            ("[[1, 2], [3, 4, 5]]", "row 1 has more than 2"),
            ("[[1, 2], [3, true]]", "row 1, column 1"),
            (r#"[[1, "x"]]"#, "invalid value: string \"x\""),
            ("[[1, 2], 3]", "row 1 to be an array"),
            ("[]", "the array is empty"),
            ("[[], []]", "dimension 0"),
            ("[[1]] [", "trailing characters"),
            ("{\"a\": 1}", "an array of rows"),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn writes_shortest_round_trip_and_non_finite_strings() {
        let v = [
            0.1f32,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1.0,
        ];
        let s = serde_json::to_string(&Nums(&v)).unwrap();
        assert_eq!(s, r#"[0.1,"nan","inf","-inf",-0.0,1.0]"#);
        let v = [0.1f64, 1e300, 5e-324, 1.0 / 3.0];
        let s = serde_json::to_string(&Nums(&v)).unwrap();
        let back: Vec<f64> = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
}
