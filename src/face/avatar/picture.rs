//! The reference picture: 8-bit RGB(A) PNG in, RGB bytes out, with the size checked from the
//! header before any pixel buffer exists.

use std::path::Path;

use super::AvatarError;

/// Reads an 8-bit RGB or RGBA PNG of exactly `width` × `height` pixels into RGB bytes.
///
/// # Errors
/// [`AvatarError::Image`] naming the file when it cannot be read, is not a PNG, has another
/// size (checked from the header, before any pixel buffer is allocated), colour type or bit
/// depth, or its pixel data are damaged.
pub fn read_png_rgb(path: &Path, width: usize, height: usize) -> Result<Vec<u8>, AvatarError> {
    let image = |detail: String| AvatarError::Image {
        path: path.into(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| image(format!("cannot read it: {e}")))?;
    decode_png_rgb(std::io::BufReader::new(file), width, height).map_err(image)
}

/// [`read_png_rgb`] on any reader; the error completes a sentence that starts with the file.
///
/// # Errors
/// A description of what is wrong.
pub fn decode_png_rgb<R: std::io::BufRead + std::io::Seek>(
    reader: R,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, String> {
    let expected = format!("expected an 8-bit RGB or RGBA PNG of {width}×{height} pixels");
    // The pixel buffer below is sized from the checked header; the decoder's own limit (its
    // row buffers, text and colour-profile chunks) is a second guard.
    let limits = png::Limits {
        bytes: width.saturating_mul(height).saturating_mul(8) + (1 << 20),
    };
    let mut decoder = png::Decoder::new_with_limits(reader, limits);
    let info = decoder
        .read_header_info()
        .map_err(|e| format!("not a readable PNG ({e}); {expected}"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if (w, h) != (width, height) {
        return Err(format!("the picture is {w}×{h} pixels; {expected}"));
    }
    let channels = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        (color, depth) => {
            return Err(format!(
                "the picture is a {}-bit {color:?} PNG; {expected}",
                depth as u8
            ))
        }
    };
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("the PNG is damaged ({e}); {expected}"))?;
    let mut buf = vec![0; w * h * channels];
    reader
        .next_frame(&mut buf)
        .map_err(|e| format!("the PNG's pixel data are damaged ({e}); {expected}"))?;
    if channels == 3 {
        return Ok(buf);
    }
    Ok(buf
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect())
}

/// Encodes RGB bytes as an 8-bit PNG.
///
/// # Errors
/// When the file cannot be written.
pub fn write_png_rgb(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(rgb).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())
}
