//! NumPy `.npy` files (format 1.0–3.0, little endian, C order): read into a [`Tensor`],
//! write float32, float64, uint8 and int64 arrays.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::model::tensor::{ShapeDisplay, Tensor, TensorData};

mod header;

/// The dtypes [`read`] decodes, for messages.
const SUPPORTED: &str =
    "float32 (<f4), float64 (<f8), int64 (<i8), uint8 (|u1) and bool (|b1), C order";

/// The largest member of a `.npz` archive read into memory (an avatar's `repr.npz` holds a few
/// KiB); a larger declared size is refused before reading, so a zip bomb costs nothing.
pub const MAX_NPZ_MEMBER_BYTES: u64 = 256 << 20;

/// Why a `.npy` file or `.npz` archive cannot be used. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file cannot be opened, read or written.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not a `.npy` file, or its header contradicts its size.
    #[error("{path} is not a valid NumPy .npy file: {detail}")]
    Format { path: PathBuf, detail: String },
    /// A valid `.npy` file of a dtype or layout we do not read.
    #[error("{path} holds a NumPy array of {found}; supported: {SUPPORTED}")]
    Unsupported { path: PathBuf, found: String },
    /// A float array read as a model or drawing input holds NaN or ±Inf.
    #[error("{path}: element {index} is {value}; expected finite values only")]
    NonFinite {
        path: PathBuf,
        /// The element's position, e.g. `[12, 2]`.
        index: String,
        value: f64,
    },
}

/// Why `.npy` bytes cannot be decoded (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ParseError {
    fn at(self, path: &Path) -> NpyError {
        match self {
            ParseError::Format(detail) => NpyError::Format {
                path: path.into(),
                detail,
            },
            ParseError::Unsupported(found) => NpyError::Unsupported {
                path: path.into(),
                found,
            },
        }
    }
}

/// Reads a `.npy` file. The header is read and checked first (dtype, shape, and that the
/// file holds exactly the bytes they need) before the data are read.
///
/// # Errors
/// [`NpyError::Io`] when the file cannot be read, [`NpyError::Format`] when it is not `.npy`
/// or its size contradicts its header, [`NpyError::Unsupported`] for a Fortran-ordered,
/// big-endian or other dtype than float32/float64/int64/uint8/bool.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let io = |error| NpyError::Io {
        path: path.into(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut head = Vec::new();
    (&mut file).take(12).read_to_end(&mut head).map_err(io)?;
    let (start, hlen) = header::preamble(&head).map_err(|e| e.at(path))?;
    (&mut file)
        .take((start + hlen).saturating_sub(head.len()) as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let h = header::parse(&head).map_err(|e| e.at(path))?;
    check_len(&h, file_len.saturating_sub(h.data_start as u64)).map_err(|e| e.at(path))?;
    let mut body = Vec::with_capacity(h.data_len);
    file.read_to_end(&mut body).map_err(io)?;
    check_len(&h, body.len() as u64).map_err(|e| e.at(path))?;
    Ok(decode(h.dtype, h.shape, &body))
}

/// [`read`], then refuses a float array holding NaN or ±Inf. For arrays that are model or
/// drawing inputs, where one such value silently blanks the output.
///
/// # Errors
/// As [`read`], and [`NpyError::NonFinite`] naming the first bad element.
pub fn read_finite(path: &Path) -> Result<Tensor, NpyError> {
    let t = read(path)?;
    check_finite(&t).map_err(|(index, value)| NpyError::NonFinite {
        path: path.into(),
        index,
        value,
    })?;
    Ok(t)
}

/// The position (as `[i, j, ...]`) and value of the first NaN or ±Inf element of a float
/// tensor; `Ok` for finite or non-float tensors.
///
/// # Errors
/// The first non-finite element.
pub fn check_finite(t: &Tensor) -> Result<(), (String, f64)> {
    let bad = match &t.data {
        TensorData::F32(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, f64::from(v[i]))),
        TensorData::F64(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
        _ => None,
    };
    match bad {
        None => Ok(()),
        Some((flat, value)) => Err((ShapeDisplay(&unravel(flat, &t.shape)).to_string(), value)),
    }
}

/// The multi-index of flat position `flat` in a C-ordered array of `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in index.iter_mut().zip(shape).rev() {
        if d > 0 {
            *i = flat % d;
            flat /= d;
        }
    }
    index
}

/// Parses `.npy` bytes (also used for the members of `.npz` archives).
///
/// # Errors
/// [`ParseError::Format`] for bytes that are not `.npy` or whose length contradicts the
/// header, [`ParseError::Unsupported`] for another dtype or layout.
pub fn parse(bytes: &[u8]) -> Result<Tensor, ParseError> {
    let h = header::parse(bytes)?;
    let body = bytes.get(h.data_start..).unwrap_or_default();
    check_len(&h, body.len() as u64)?;
    Ok(decode(h.dtype, h.shape, body))
}

/// The data must be exactly what shape and dtype need: a shorter file is truncated, a longer
/// one holds something we would otherwise silently ignore.
fn check_len(h: &header::Header, found: u64) -> Result<(), ParseError> {
    if found == h.data_len as u64 {
        return Ok(());
    }
    Err(ParseError::Format(format!(
        "the data are {found} bytes, expected {} for shape {} of {}",
        h.data_len,
        ShapeDisplay(&h.shape),
        header::descr(h.dtype)
    )))
}

/// Decodes `body` (checked to be exactly the header's size).
fn decode(dtype: crate::model::DType, shape: Vec<usize>, body: &[u8]) -> Tensor {
    use crate::model::DType;
    macro_rules! words {
        ($t:ty, $n:literal) => {
            body.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])))
                .collect()
        };
    }
    let data = match dtype {
        DType::F32 => TensorData::F32(words!(f32, 4)),
        DType::F64 => TensorData::F64(words!(f64, 8)),
        DType::I64 => TensorData::I64(words!(i64, 8)),
        DType::U8 => TensorData::U8(body.to_vec()),
        DType::Bool => TensorData::Bool(body.iter().map(|&b| b != 0).collect()),
    };
    Tensor { shape, data }
}

/// Serialises a tensor as `.npy` bytes.
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let (descr, payload): (&str, Vec<u8>) = match &t.data {
        TensorData::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::F64(v) => ("<f8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I64(v) => ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::U8(v) => ("|u1", v.clone()),
        TensorData::Bool(v) => ("|b1", v.iter().map(|&b| b as u8).collect()),
    };
    let shape = match t.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape[0]),
        _ => format!(
            "({})",
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + payload.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Writes a tensor to `path` as `.npy`.
///
/// # Errors
/// When the file cannot be written.
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let io = |error| NpyError::Io {
        path: path.into(),
        error,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&to_bytes(t)).map_err(io)
}

/// Reads every member of a `.npz` archive (NumPy zip of `.npy` files) by name without `.npy`.
/// A member's declared size is checked against [`MAX_NPZ_MEMBER_BYTES`] before it is read, and
/// it must inflate to exactly that size.
///
/// # Errors
/// When the archive or a member cannot be read or parsed; the message names the member.
pub fn read_npz(path: &Path) -> Result<std::collections::BTreeMap<String, Tensor>, NpyError> {
    let io = |error| NpyError::Io {
        path: path.into(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let fmt = |detail: String| NpyError::Format {
        path: path.into(),
        detail,
    };
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fmt(format!("not a NumPy .npz archive ({e})")))?;
    let mut out = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let member = zip
            .by_index(i)
            .map_err(|e| fmt(format!("member {i}: {e}")))?;
        let name = member.name().trim_end_matches(".npy").to_string();
        let shown = crate::model::pickle::printable(&name, 80);
        let size = member.size();
        if size > MAX_NPZ_MEMBER_BYTES {
            return Err(fmt(format!(
                "member {shown} declares {size} bytes, more than {MAX_NPZ_MEMBER_BYTES}"
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // One byte past the declared size lets the reader check the CRC and catch a member that
        // inflates to more than it declares.
        member
            .take(size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fmt(format!("member {shown} is damaged ({e})")))?;
        if bytes.len() as u64 != size {
            return Err(fmt(format!(
                "member {shown} holds {} bytes, its header says {size}",
                bytes.len()
            )));
        }
        let t = parse(&bytes).map_err(|e| match e {
            ParseError::Format(d) => fmt(format!("member {shown}: {d}")),
            ParseError::Unsupported(d) => NpyError::Unsupported {
                path: path.into(),
                found: format!("{d} in member {shown}"),
            },
        })?;
        out.insert(name, t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_dtypes() {
        let cases = [
            Tensor {
                shape: vec![2, 3],
                data: TensorData::F32(vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0]),
            },
            Tensor {
                shape: vec![3],
                data: TensorData::F64(vec![0.1, 0.2, 0.3]),
            },
            Tensor {
                shape: vec![],
                data: TensorData::I64(vec![7]),
            },
            Tensor {
                shape: vec![1, 2, 2],
                data: TensorData::U8(vec![0, 1, 254, 255]),
            },
        ];
        for t in cases {
            let bytes = to_bytes(&t);
            assert_eq!(
                (bytes.len() - t.len() * elem_size(&t)) % 64,
                0,
                "data 64-byte aligned"
            );
            assert_eq!(parse(&bytes).unwrap(), t);
        }
    }

    fn elem_size(t: &Tensor) -> usize {
        match t.data {
            TensorData::F32(_) => 4,
            TensorData::F64(_) | TensorData::I64(_) => 8,
            TensorData::U8(_) | TensorData::Bool(_) => 1,
        }
    }

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let t = Tensor::f32(vec![4], vec![1.0; 4]);
        let bytes = to_bytes(&t);
        let short = parse(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(short.contains("15 bytes, expected 16"), "{short}");
        let long = parse(&[bytes.as_slice(), &[0]].concat())
            .unwrap_err()
            .to_string();
        assert!(long.contains("17 bytes, expected 16"), "{long}");
        let foreign = parse(b"PK\x03\x04 not npy").unwrap_err().to_string();
        assert!(foreign.contains("magic"), "{foreign}");
    }

    fn with_header(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((dict.len() as u16).to_le_bytes());
        b.extend(dict.as_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn unsupported_dtypes_are_named() {
        for descr in ["<f2", ">f4", "<c8", "<U3", "|O", "<i4"] {
            let b = with_header(
                &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}"),
                &[0; 64],
            );
            let err = parse(&b).unwrap_err();
            assert_eq!(err, ParseError::Unsupported(format!("dtype {descr}")));
        }
        let b = with_header(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(matches!(parse(&b), Err(ParseError::Unsupported(_))));
        let b = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
            &[0; 16],
        );
        assert!(parse(&b).unwrap_err().to_string().contains("Fortran"));
        // One non-trivial dimension: Fortran and C order are the same bytes.
        let b = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }",
            &[0; 8],
        );
        assert_eq!(parse(&b).unwrap().shape, vec![1, 2]);
    }

    #[test]
    fn huge_and_malformed_shapes_are_refused_before_allocating() {
        for (shape, expect) in [
            ("(4294967296, 4294967296, 16)", "too large"),
            ("(18446744073709551615, 2)", "too large"),
            ("(99999999999999999999,)", "expected a size"),
            ("(1000000000,)", "expected 4000000000"),
            ("(-1,)", "expected a size"),
            ("(2, 'x')", "expected a size"),
            ("[2, 3]", "expected '('"),
        ] {
            let b = with_header(
                &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
                &[0; 8],
            );
            let msg = parse(&b).unwrap_err().to_string();
            assert!(msg.contains(expect), "{shape}: {msg}");
        }
    }

    #[test]
    fn header_damage_is_a_format_error() {
        for (dict, expect) in [
            ("{'descr': '<f4', 'shape': (2,), }", "fortran_order"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                "unexpected",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                "repeated",
            ),
            ("{'descr': 'é<f4", "unterminated"),
            ("{'descr': '<f4', 'fortran_order': Maybe", "True or False"),
            ("not a dict", "expected '{'"),
        ] {
            let msg = parse(&with_header(dict, &[0; 8])).unwrap_err().to_string();
            assert!(msg.contains(expect), "{dict}: {msg}");
        }
        let mut b = to_bytes(&Tensor::f32(vec![1], vec![1.0]));
        b[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(parse(&b).unwrap_err().to_string().contains("ends inside"));
        b[6] = 2;
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&b).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn non_finite_elements_are_found_with_their_index() {
        let t = Tensor {
            shape: vec![3, 2],
            data: TensorData::F64(vec![0.0, 1.0, 2.0, 3.0, f64::NAN, f64::INFINITY]),
        };
        let (index, value) = check_finite(&t).unwrap_err();
        assert_eq!(index, "[2, 0]");
        assert!(value.is_nan());
        let t = Tensor::f32(vec![2], vec![1.0, f32::NEG_INFINITY]);
        assert_eq!(
            check_finite(&t).unwrap_err(),
            ("[1]".into(), f64::NEG_INFINITY)
        );
        assert!(check_finite(&Tensor::f32(vec![2], vec![1.0, 2.0])).is_ok());
    }
}
