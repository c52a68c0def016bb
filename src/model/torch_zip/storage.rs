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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(
            is_contiguous(&[1, 3], &[99, 1]),
            "size-1 dims may carry any stride"
        );
        assert!(
            is_contiguous(&[0, 3], &[5, 7]),
            "empty tensors have no layout"
        );
        assert!(!is_contiguous(&[3, 2], &[1, 3]), "transposed");
        assert!(!is_contiguous(&[2, 3], &[4, 1]), "padded rows");
        assert!(!is_contiguous(&[4], &[2]), "every other element");
    }

    #[test]
    fn decoding_honours_byte_order() {
        let le = [0u8, 0, 0x80, 0x3f, 0, 0, 0, 0xc0];
        assert_eq!(
            decode(DType::F32, &le, false),
            TensorData::F32(vec![1.0, -2.0])
        );
        let be = [0x3fu8, 0x80, 0, 0];
        assert_eq!(decode(DType::F32, &be, true), TensorData::F32(vec![1.0]));
        let i = (-3i64).to_le_bytes();
        assert_eq!(decode(DType::I64, &i, false), TensorData::I64(vec![-3]));
        assert_eq!(
            decode(DType::Bool, &[0, 1, 2], false),
            TensorData::Bool(vec![false, true, true])
        );
        assert_eq!(storage_dtype("HalfStorage"), None);
        assert_eq!(storage_dtype("LongStorage").map(element_size), Some(8));
    }
}
