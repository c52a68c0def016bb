//! The renderer's temporal code (the official `get_positional_encoding` with size 1000, 6
//! frequencies and the input included): for 0-based frame k,
//! t = k/1000 as float32 and the 13 constants
//! `[t, sin t, cos t, sin 2t, cos 2t, sin 4t, cos 4t, …, sin 32t, cos 32t]` (float32 arithmetic,
//! no factor π), broadcast as constant planes.

/// `position_encoding_size` of the release renderer configuration.
pub const POSITION_ENCODING_SIZE: f64 = 1000.0;

/// The 13 temporal-code values of frame `frame`.
pub fn time_code(frame: usize) -> [f32; 13] {
    let t = (frame as f64 / POSITION_ENCODING_SIZE) as f32;
    let mut out = [0.0f32; 13];
    out[0] = t;
    for i in 0..6 {
        // Scaling by a power of two is exact in float32; sin/cos are evaluated in double and
        // rounded once, i.e. the correctly rounded float32 result.
        let x = (t * (1u32 << i) as f32) as f64;
        out[1 + 2 * i] = x.sin() as f32;
        out[2 + 2 * i] = x.cos() as f32;
    }
    out
}

/// Writes the code as 13 constant `height × width` planes (CHW) into `dst`, which must hold
/// `13·height·width` values. Does not allocate.
pub fn fill_planes(code: &[f32; 13], dst: &mut [f32]) {
    let plane = dst.len() / 13;
    for (c, chunk) in code.iter().zip(dst.chunks_exact_mut(plane.max(1))) {
        chunk.fill(*c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_37_matches_the_documented_values() {
        let expected = [
            0.037, 0.03699156, 0.9993156, 0.07393248, 0.9972633, 0.1474603, 0.989068, 0.2916965,
            0.9565109, 0.5580218, 0.8298263, 0.9261223, 0.3772233,
        ];
        let got = time_code(37);
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(time_code(0)[..3], [0.0, 0.0, 1.0]);
    }

    #[test]
    fn planes_are_constant() {
        let mut dst = vec![0.0; 13 * 4];
        fill_planes(&time_code(5), &mut dst);
        assert_eq!(&dst[4..8], &[time_code(5)[1]; 4]);
    }
}
