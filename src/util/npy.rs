//! NumPy `.npy` files (format 1.0–3.0, little endian, C order): read into a [`Tensor`],
//! write float32, float64, uint8 and int64 arrays.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::model::tensor::{Tensor, TensorData};

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a NumPy .npy file: {detail}")]
    Format { path: PathBuf, detail: String },
}

/// Reads a `.npy` file.
///
/// # Errors
/// When the file cannot be read, is not `.npy`, is Fortran-ordered, big-endian or of a dtype
/// other than float32/float64/int64/uint8/bool.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })?;
    parse(&bytes).map_err(|detail| NpyError::Format {
        path: path.into(),
        detail,
    })
}

/// Parses `.npy` bytes (also used for the members of `.npz` archives).
///
/// # Errors
/// A description of what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Tensor, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no descr")?;
    let quote = descr.chars().next().ok_or("empty descr")?;
    let descr = descr[1..].split(quote).next().ok_or("bad descr")?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_txt = dict_value(header, "shape").ok_or("header has no shape")?;
    let shape_txt = shape_txt.trim_start_matches('(');
    let shape_txt = &shape_txt[..shape_txt.find(')').ok_or("bad shape")?];
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry {s:?}"))
        })
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let need = |size: usize| -> Result<&[u8], String> {
        body.get(..n * size).ok_or_else(|| {
            format!(
                "data truncated: expected {} bytes, found {}",
                n * size,
                body.len()
            )
        })
    };
    let data = match descr {
        "<f4" => TensorData::F32(
            need(4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<f8" => TensorData::F64(
            need(8)?
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "<i8" => TensorData::I64(
            need(8)?
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        "|u1" => TensorData::U8(need(1)?.to_vec()),
        "|b1" => TensorData::Bool(need(1)?.iter().map(|&b| b != 0).collect()),
        other => {
            return Err(format!(
                "unsupported dtype {other} (expected <f4, <f8, <i8, |u1 or |b1)"
            ))
        }
    };
    Ok(Tensor { shape, data })
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let i = header.find(&format!("'{key}'"))?;
    let rest = &header[i + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
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
    let io = |source| NpyError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&to_bytes(t)).map_err(io)
}

/// Reads every member of a `.npz` archive (NumPy zip of `.npy` files) by name without `.npy`.
///
/// # Errors
/// When the archive or a member cannot be read or parsed.
pub fn read_npz(path: &Path) -> Result<std::collections::BTreeMap<String, Tensor>, NpyError> {
    let file = std::fs::File::open(path).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })?;
    let fmt = |detail: String| NpyError::Format {
        path: path.into(),
        detail,
    };
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| fmt(format!("not a NumPy .npz archive ({e})")))?;
    let mut out = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| fmt(e.to_string()))?;
        let name = member.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        member
            .read_to_end(&mut bytes)
            .map_err(|source| NpyError::Io {
                path: path.into(),
                source,
            })?;
        out.insert(
            name.clone(),
            parse(&bytes).map_err(|d| fmt(format!("member {name}: {d}")))?,
        );
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
        assert!(parse(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
    }
}
