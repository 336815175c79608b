//! NumPy `.npy` files: a reader for 1-D and 2-D little-endian `f32`/`f64`
//! arrays (format versions 1.0, 2.0 and 3.0) and a version 1.0 writer.
//!
//! The format (numpy `lib/format.py`): the magic `\x93NUMPY`, a major and a
//! minor version byte, the header length (`u16` little-endian in 1.0, `u32`
//! in 2.0 and 3.0), then a Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and ended by `\n`, then the raw data.
//!
//! Nothing in a header is trusted: the data length the shape implies is
//! computed with checked arithmetic and compared with the file's real size
//! before anything is allocated, so a header claiming a huge shape is an error
//! and never an allocation.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// The magic string every `.npy` file starts with.
pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Headers longer than this are refused: real ones are a few dozen bytes, and
/// the limit keeps a hostile header from costing memory or time.
const MAX_HEADER_LEN: usize = 1 << 20;

/// Nesting depth allowed in the header's Python literal (a dict holding a
/// tuple is depth 2); a bound so that a crafted header cannot overflow the
/// stack.
const MAX_DEPTH: usize = 8;

/// Data is decoded through a buffer of this many bytes, so reading never
/// needs a second, byte-sized copy of the array.
const CHUNK: usize = 1 << 16;

/// A floating-point element type that `.npy` files can hold.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    /// The numpy type string (`<f4`, `<f8`).
    const DESCR: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    /// Decodes one element from `SIZE` little-endian bytes.
    fn from_le(bytes: &[u8]) -> Self;
    /// Appends the element's little-endian bytes.
    fn put_le(self, out: &mut Vec<u8>);
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn from_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes);
        f32::from_le_bytes(b)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const SIZE: usize = 8;
    fn from_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        f64::from_le_bytes(b)
    }
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// A 2-D array in C order: `n` rows of `d` values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Matrix<T> {
    /// Number of rows (input vectors).
    pub(crate) n: usize,
    /// Length of each row; never 0.
    pub(crate) d: usize,
    /// The `n * d` values, row after row.
    pub(crate) data: Vec<T>,
}

impl<T> Matrix<T> {
    /// The rows as slices.
    pub(crate) fn rows(&self) -> Vec<&[T]> {
        self.data.chunks_exact(self.d).collect()
    }
}

/// An array read from a file, in the precision the file stores.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Array {
    /// `<f4` data.
    F32 {
        /// The shape from the header.
        shape: Vec<usize>,
        /// The values in C order.
        data: Vec<f32>,
    },
    /// `<f8` data.
    F64 {
        /// The shape from the header.
        shape: Vec<usize>,
        /// The values in C order.
        data: Vec<f64>,
    },
}

impl Array {
    /// The shape from the header.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Array::F32 { shape, .. } | Array::F64 { shape, .. } => shape,
        }
    }
}

/// The element types the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// What the reader needs from a header.
#[derive(Debug, PartialEq)]
struct Header {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Bytes before the data: magic, version, length field and header.
    data_offset: u64,
}

/// Formats a shape the way Python prints a tuple: `(5,)`, `(3, 4)`.
pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Reads an array of any number of dimensions (checked by the callers).
/// Messages do not repeat the path: callers add it as context.
pub(crate) fn read(path: &Path) -> Result<Array> {
    let file = File::open(path).context("cannot open the file")?;
    let file_len = file.metadata().context("cannot stat the file")?.len();
    let mut reader = BufReader::new(file);
    let header = read_header(&mut reader, file_len)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .and_then(|c| c.checked_mul(header.dtype.size()).map(|bytes| (c, bytes)));
    let Some((count, bytes)) = count else {
        bail!(
            "header claims shape {}, whose size overflows; the file has {} bytes",
            shape_str(&header.shape),
            file_len
        );
    };
    let available = file_len - header.data_offset;
    if u64::try_from(bytes).ok() != Some(available) {
        let what = if (bytes as u64) > available {
            "truncated data"
        } else {
            "trailing bytes after the data"
        };
        bail!(
            "{what}: shape {} of {} needs {bytes} bytes of data, but the file has {available}",
            shape_str(&header.shape),
            match header.dtype {
                Dtype::F32 => "float32",
                Dtype::F64 => "float64",
            },
        );
    }
    // `count` is now bounded by the file's size.
    Ok(match header.dtype {
        Dtype::F32 => Array::F32 {
            data: read_data(&mut reader, count)?,
            shape: header.shape,
        },
        Dtype::F64 => Array::F64 {
            data: read_data(&mut reader, count)?,
            shape: header.shape,
        },
    })
}

/// Reads `count` elements of `T` from `reader`.
fn read_data<T: Element>(reader: &mut impl Read, count: usize) -> Result<Vec<T>> {
    let mut data = Vec::with_capacity(count);
    let mut buf = vec![0u8; CHUNK - CHUNK % T::SIZE];
    let mut left = count;
    while left > 0 {
        let take = left.min(buf.len() / T::SIZE);
        let chunk = &mut buf[..take * T::SIZE];
        reader
            .read_exact(chunk)
            .context("the data ended early (the file changed while it was read?)")?;
        data.extend(chunk.chunks_exact(T::SIZE).map(T::from_le));
        left -= take;
    }
    Ok(data)
}

/// Reads and parses the preamble and header, leaving `reader` at the data.
fn read_header(reader: &mut impl Read, file_len: u64) -> Result<Header> {
    let mut pre = [0u8; 8];
    if file_len < 10 || reader.read_exact(&mut pre).is_err() || &pre[..6] != MAGIC {
        bail!("not an NPY file (it does not start with the \\x93NUMPY magic)");
    }
    let (major, minor) = (pre[6], pre[7]);
    let (header_len, len_field) = match (major, minor) {
        (1, 0) => {
            let mut b = [0u8; 2];
            reader
                .read_exact(&mut b)
                .context("truncated NPY preamble")?;
            (usize::from(u16::from_le_bytes(b)), 2u64)
        }
        (2, 0) | (3, 0) => {
            let mut b = [0u8; 4];
            reader
                .read_exact(&mut b)
                .context("truncated NPY preamble")?;
            let len = usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX);
            (len, 4u64)
        }
        _ => bail!("unsupported NPY format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"),
    };
    let data_offset = 8 + len_field + header_len as u64;
    ensure!(
        data_offset <= file_len,
        "truncated NPY header: it claims {header_len} bytes, but the file has only {file_len} bytes"
    );
    ensure!(
        header_len <= MAX_HEADER_LEN,
        "NPY header of {header_len} bytes exceeds the limit of {MAX_HEADER_LEN}"
    );
    let mut text = vec![0u8; header_len];
    reader
        .read_exact(&mut text)
        .context("truncated NPY header")?;
    let text = std::str::from_utf8(&text).context("NPY header is not valid UTF-8")?;
    let (dtype, shape) = parse_header(text)?;
    Ok(Header {
        dtype,
        shape,
        data_offset,
    })
}

/// Interprets the header dict: dtype, fortran order, shape.
fn parse_header(text: &str) -> Result<(Dtype, Vec<usize>)> {
    let value = PyParser::new(text)
        .parse_all()
        .with_context(|| format!("malformed NPY header {:?}", text.trim_end()))?;
    let Py::Dict(entries) = value else {
        bail!("malformed NPY header {:?}: not a dict", text.trim_end());
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let dtype = match get("descr") {
        Some(Py::Str(descr)) => match descr.as_str() {
            "<f4" => Dtype::F32,
            "<f8" => Dtype::F64,
            ">f4" | ">f8" => bail!(
                "unsupported dtype '{descr}': big-endian data; only little-endian float32 ('<f4') and float64 ('<f8') are supported"
            ),
            other => bail!(
                "unsupported dtype '{other}': only little-endian float32 ('<f4') and float64 ('<f8') are supported"
            ),
        },
        Some(_) => bail!(
            "unsupported dtype: structured arrays are not supported, only little-endian float32 ('<f4') and float64 ('<f8')"
        ),
        None => bail!("malformed NPY header: no 'descr' key"),
    };
    match get("fortran_order") {
        Some(Py::Bool(false)) => {}
        Some(Py::Bool(true)) => bail!(
            "Fortran-order (column-major) arrays are not supported; save the array in C order (numpy.ascontiguousarray)"
        ),
        Some(_) => bail!("malformed NPY header: 'fortran_order' is not True or False"),
        None => bail!("malformed NPY header: no 'fortran_order' key"),
    }
    let shape = match get("shape") {
        Some(Py::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                Py::Int(i) => Ok(*i),
                _ => bail!("malformed NPY header: 'shape' holds a non-integer"),
            })
            .collect::<Result<Vec<usize>>>()?,
        Some(_) => bail!("malformed NPY header: 'shape' is not a tuple"),
        None => bail!("malformed NPY header: no 'shape' key"),
    };
    Ok((dtype, shape))
}

/// The subset of Python literals that NPY headers use.
#[derive(Debug, PartialEq)]
enum Py {
    Str(String),
    Int(usize),
    Bool(bool),
    None,
    Tuple(Vec<Py>),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

/// A recursive-descent parser for [`Py`] with a depth bound.
struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> PyParser<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn parse_all(mut self) -> Result<Py> {
        let v = self.value(0)?;
        self.skip_ws();
        ensure!(
            self.pos == self.s.len(),
            "unexpected text at byte {}",
            self.pos
        );
        Ok(v)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Py> {
        ensure!(depth < MAX_DEPTH, "nesting deeper than {MAX_DEPTH}");
        match self.peek() {
            None => bail!("unexpected end"),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Py::Dict(entries));
                    }
                    let k = self.value(depth + 1)?;
                    ensure!(
                        self.peek() == Some(b':'),
                        "expected ':' at byte {}",
                        self.pos
                    );
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => bail!("expected ',' or '}}' at byte {}", self.pos),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(if open == b'(' {
                            Py::Tuple(items)
                        } else {
                            Py::List(items)
                        });
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => bail!("expected ',' or '{}' at byte {}", close as char, self.pos),
                    }
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != q {
                    ensure!(
                        self.s[self.pos] != b'\\',
                        "escapes in strings are not supported"
                    );
                    self.pos += 1;
                }
                ensure!(self.pos < self.s.len(), "unterminated string");
                let text = std::str::from_utf8(&self.s[start..self.pos])
                    .context("string is not UTF-8")?
                    .to_owned();
                self.pos += 1;
                Ok(Py::Str(text))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.pos])
                    .context("integer is not UTF-8")?;
                let n: usize = digits
                    .parse()
                    .with_context(|| format!("integer {digits} is too large"))?;
                // Python 2 wrote long integers as `3L`.
                if self.s.get(self.pos) == Some(&b'L') {
                    self.pos += 1;
                }
                Ok(Py::Int(n))
            }
            Some(_) => {
                let rest = &self.s[self.pos..];
                for (word, v) in [
                    (&b"True"[..], Py::Bool(true)),
                    (&b"False"[..], Py::Bool(false)),
                    (&b"None"[..], Py::None),
                ] {
                    if rest.starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                bail!("unexpected character at byte {}", self.pos)
            }
        }
    }
}

/// Encodes a version 1.0 file holding `data` with the given shape.
pub(crate) fn encode<T: Element>(shape: &[usize], data: &[T]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_str(shape)
    );
    // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a
    // multiple of 64, as numpy writes it, so the data is aligned.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + header_len + data.len() * T::SIZE);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // A 1-D or 2-D header is far below 65535 bytes.
    out.extend_from_slice(&u16::try_from(header_len).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    for &v in data {
        v.put_le(&mut out);
    }
    out
}

/// Writes `data` as a 1-D array of shape `(len,)`.
pub(crate) fn write_vector<T: Element>(path: &Path, data: &[T]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    w.write_all(&encode(&[data.len()], data))
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_bytes(bytes: &[u8]) -> Result<Array> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.npy");
        std::fs::write(&path, bytes)?;
        read(&path)
    }

    fn with_header(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        let text = format!("{dict}\n");
        if version == 1 {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn writer_output_is_aligned_and_reads_back() {
        for d in [1usize, 3, 1000] {
            let data: Vec<f64> = (0..d).map(|i| i as f64 * 0.1 - 7.0).collect();
            let bytes = encode(&[d], &data);
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(bytes[10 + header_len - 1], b'\n');
            assert_eq!(
                parse_bytes(&bytes).unwrap(),
                Array::F64 {
                    shape: vec![d],
                    data
                }
            );
        }
        let data = [1.5f32, f32::NAN, -0.0, f32::INFINITY];
        let Array::F32 { shape, data: got } = parse_bytes(&encode(&[2, 2], &data)).unwrap() else {
            panic!("f32 expected");
        };
        assert_eq!(shape, vec![2, 2]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&data));
    }

    #[test]
    fn header_variants() {
        let data: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        for (version, dict) in [
            (
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
            ),
            (
                2,
                "{\"shape\": (1L, 2L), \"descr\": \"<f8\", \"fortran_order\": False}",
            ),
            (3, "{'fortran_order':False,'shape':(1,2),'descr':'<f8'}   "),
        ] {
            let a = parse_bytes(&with_header(version, dict, &data)).unwrap();
            assert_eq!(a.shape(), &[1, 2], "{dict}");
        }
    }

    #[test]
    fn header_errors() {
        let data = [0u8; 16];
        let cases = [
            (
                "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 2), }",
                "big-endian",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
                "'<i8'",
            ),
            (
                "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2), }",
                "Fortran",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3), }",
                "truncated",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }",
                "trailing",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 3), }",
                "overflows",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999, 3), }",
                "too large",
            ),
            ("{'descr': '<f8', 'fortran_order': False}", "no 'shape'"),
            (
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,)}",
                "structured",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': ((((((((((1,),),),),),),),),),)}",
                "nesting",
            ),
            ("{'descr': '<f8' 'shape'}", "malformed"),
        ];
        for (dict, needle) in cases {
            let err = parse_bytes(&with_header(1, dict, &data)).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{dict}: {msg}");
        }
        let msg = format!("{:#}", parse_bytes(b"PK\x03\x04 zip file").unwrap_err());
        assert!(msg.contains("not an NPY file"), "{msg}");
        let mut v9 = with_header(1, "{}", &[]);
        v9[6] = 9;
        let msg = format!("{:#}", parse_bytes(&v9).unwrap_err());
        assert!(msg.contains("version 9.0"), "{msg}");
    }
}
