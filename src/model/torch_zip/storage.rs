//! Storage records: element types, contiguity, and decoding raw bytes into tensor data.

use crate::model::tensor::{DType, TensorData};

/// Element type of a `torch.<Name>Storage`, for the supported ones.
pub(super) fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        "BoolStorage" => DType::Bool,
        "ByteStorage" => DType::U8,
        _ => return None,
    })
}

pub(super) fn element_size(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool | DType::U8 => 1,
    }
}

/// Row-major with no gaps; dimensions of size 1 may carry any stride, empty tensors any strides.
pub(super) fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

pub(super) fn decode(dtype: DType, raw: &[u8], big_endian: bool) -> TensorData {
    macro_rules! words {
        ($t:ty, $n:literal) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let b: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    if big_endian {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    }
                })
                .collect()
        };
    }
    match dtype {
        DType::F32 => TensorData::F32(words!(f32, 4)),
        DType::F64 => TensorData::F64(words!(f64, 8)),
        DType::I64 => TensorData::I64(words!(i64, 8)),
        DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DType::U8 => TensorData::U8(raw.to_vec()),
    }
}
