//! TensorRT calibration cache (text), the input of an implicit INT8 build on TensorRT ≤ 10.
//!
//! ```text
//! TRT-100300-EntropyCalibration2
//! mesh_image: 3c010a14
//! Conv_12:0: 3d237c3a
//! ```
//! The header carries TensorRT's version number (`NV_TENSORRT_VERSION`: major·10000 +
//! minor·100 + patch since TensorRT 10, so 10.3.0 is `100300`; 8.6.1 wrote `8601`) and the
//! calibrator; then one line per tensor, named as the ONNX parser names it (the ONNX value
//! name), with the float32 scale (amax / 127) as the 8 hex digits of its bits. Names may
//! contain `:`; the scale follows the last `": "`.

use std::fmt::Write as _;

/// TensorRT 10.3 (JetPack 6), the version the Jetson images ship.
pub const TRT_VERSION: u32 = 100300;

/// The calibrator whose cache format we write.
pub const CALIBRATOR: &str = "EntropyCalibration2";

/// A parsed or to-be-written cache: header and (tensor, scale) lines in order.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationCache {
    pub version: u32,
    pub calibrator: String,
    pub scales: Vec<(String, f32)>,
}

/// Why a cache does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("calibration cache line 1: expected `TRT-<version>-<calibrator>`, found {0:?}")]
    Header(String),
    #[error("calibration cache line {line}: expected `<tensor>: <8 hex digits>`, found {text:?}")]
    Entry { line: usize, text: String },
}

impl CalibrationCache {
    /// A TensorRT 10.3 EntropyCalibration2 cache of `scales`.
    pub fn new(scales: Vec<(String, f32)>) -> CalibrationCache {
        CalibrationCache {
            version: TRT_VERSION,
            calibrator: CALIBRATOR.into(),
            scales,
        }
    }

    /// The cache text (newline-terminated lines).
    pub fn to_text(&self) -> String {
        let mut s = format!("TRT-{}-{}\n", self.version, self.calibrator);
        for (name, scale) in &self.scales {
            let _ = writeln!(s, "{name}: {:08x}", scale.to_bits());
        }
        s
    }

    /// Parses cache text.
    ///
    /// # Errors
    /// [`CacheError`] naming the line that is not a header or a `tensor: hex` entry.
    pub fn parse(text: &str) -> Result<CalibrationCache, CacheError> {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let bad_header = || CacheError::Header(header.to_string());
        let rest = header.strip_prefix("TRT-").ok_or_else(bad_header)?;
        let (version, calibrator) = rest.split_once('-').ok_or_else(bad_header)?;
        let version: u32 = version.parse().map_err(|_| bad_header())?;
        if calibrator.is_empty() {
            return Err(bad_header());
        }
        let mut scales = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let bad = || CacheError::Entry {
                line: i + 2,
                text: line.to_string(),
            };
            let (name, hex) = line.rsplit_once(": ").ok_or_else(bad)?;
            if name.is_empty() || hex.len() != 8 {
                return Err(bad());
            }
            let bits = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
            scales.push((name.to_string(), f32::from_bits(bits)));
        }
        Ok(CalibrationCache {
            version,
            calibrator: calibrator.to_string(),
            scales,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scale_round_trips_bit_exact() {
        let mut scales = vec![
            ("mesh_image".to_string(), 1.0f32 / 127.0),
            ("Conv_12:0".to_string(), f32::MIN_POSITIVE),
            ("a: b".to_string(), 3.4e38),
            ("sub".to_string(), f32::from_bits(1)),
        ];
        // A spread of bit patterns across the positive range.
        for k in 0..1000u32 {
            let bits = k.wrapping_mul(2_654_435_761) % 0x7f80_0000;
            scales.push((format!("t{k}"), f32::from_bits(bits)));
        }
        let cache = CalibrationCache::new(scales);
        let text = cache.to_text();
        assert!(text.starts_with("TRT-100300-EntropyCalibration2\n"));
        let back = CalibrationCache::parse(&text).unwrap();
        assert_eq!(back.version, cache.version);
        assert_eq!(back.calibrator, cache.calibrator);
        assert_eq!(back.scales.len(), cache.scales.len());
        for ((n0, s0), (n1, s1)) in cache.scales.iter().zip(&back.scales) {
            assert_eq!((n0, s0.to_bits()), (n1, s1.to_bits()));
        }
    }

    #[test]
    fn reads_a_tensorrt_8_cache_line() {
        let c =
            CalibrationCache::parse("TRT-8601-EntropyCalibration2\nimages: 3c010a14\n").unwrap();
        assert_eq!(c.version, 8601);
        assert_eq!(c.scales[0].0, "images");
        assert_eq!(c.scales[0].1.to_bits(), 0x3c01_0a14);
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(matches!(
            CalibrationCache::parse("hello\n"),
            Err(CacheError::Header(_))
        ));
        assert_eq!(
            CalibrationCache::parse("TRT-100300-EntropyCalibration2\nx 3c010a14\n"),
            Err(CacheError::Entry {
                line: 2,
                text: "x 3c010a14".into()
            })
        );
    }
}
