//! The RIFF/WAVE container: the chunk walk and the `fmt ` chunk, checked before any sample is
//! read or any buffer is sized.
//!
//! A RIFF file is `RIFF <u32 size> WAVE` followed by chunks `<id: 4 bytes> <u32 size> <body>`,
//! each body followed by one pad byte when its size is odd. We walk the chunks in order, skip
//! every chunk we do not need (`LIST`, `fact`, `cue `, `bext`, ...), read `fmt `, and stop at
//! `data`. The RIFF size field is not trusted (streaming writers leave it wrong): every size is
//! checked against the bytes the file really holds, so a hostile header costs no memory and a
//! bounded number of reads (each chunk header takes 8 bytes of the file).

use std::io::{Read, Seek, SeekFrom};

/// The `fmt ` chunk's format codes we decode.
const FORMAT_PCM: u16 = 1;
const FORMAT_IEEE_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Bytes 2..16 of a `WAVE_FORMAT_EXTENSIBLE` sub-format GUID
/// (`xxxxxxxx-0000-0010-8000-00aa00389b71`, the first two bytes carry the format code).
const KSDATAFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// How one sample is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Little-endian two's complement of 1 to 4 bytes (8-bit is unsigned, offset 128).
    Int { bytes: usize },
    /// Little-endian IEEE 754 single precision.
    Float32,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::Int { bytes } => write!(f, "{}-bit integer samples", bytes * 8),
            Encoding::Float32 => f.write_str("32-bit float samples"),
        }
    }
}

/// What the header says, every field already checked for plausibility by [`parse`] except the
/// documented limits, which the caller applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub encoding: Encoding,
    pub channels: u16,
    pub sample_rate: u32,
    /// Bytes per frame (one sample of every channel), from the channel count and encoding.
    pub block_align: usize,
    /// Bytes per frame as the header declares them; must equal `block_align`.
    pub declared_block_align: u16,
    /// Size of the data chunk as declared; [`parse`] has checked that the file holds it.
    pub data_len: u64,
}

/// Why a header is refused: the caller adds the file name and picks the error kind.
#[derive(Debug, PartialEq)]
pub(super) enum HeaderError {
    /// Reading failed for a reason other than the end of the file.
    Io(String),
    /// Not a RIFF/WAVE file, or a chunk structure that contradicts itself or the file size.
    NotWav(String),
    /// A well-formed header of an encoding we do not decode.
    Unsupported(String),
    /// The data chunk declares more bytes than the file holds.
    Truncated { declared: u64, available: u64 },
}

/// Reads the RIFF header and the chunks up to the start of `data`, leaving `r` at its first byte.
/// `stream_len` is the total number of bytes of the stream.
pub(super) fn parse<R: Read + Seek>(r: &mut R, stream_len: u64) -> Result<Header, HeaderError> {
    let mut riff = [0u8; 12];
    read_exact(r, &mut riff, "the RIFF header")?;
    match &riff[..4] {
        b"RIFF" => {}
        b"RF64" | b"BW64" => {
            return Err(HeaderError::Unsupported(
                "an RF64 file (the 64-bit WAV variant for files over 4 GiB)".into(),
            ))
        }
        b"RIFX" => return Err(HeaderError::Unsupported("a big-endian RIFX file".into())),
        other => {
            return Err(HeaderError::NotWav(format!(
                "it starts with {}, not RIFF",
                fourcc(other)
            )))
        }
    }
    if &riff[8..12] != b"WAVE" {
        return Err(HeaderError::NotWav(format!(
            "the RIFF form type is {}, not WAVE",
            fourcc(&riff[8..12])
        )));
    }
    let mut pos: u64 = 12;
    let mut format: Option<Format> = None;
    loop {
        if stream_len.saturating_sub(pos) < 8 {
            return Err(HeaderError::NotWav(match format {
                None => "the file ends before a fmt chunk".into(),
                Some(_) => "the file ends before a data chunk".into(),
            }));
        }
        let mut head = [0u8; 8];
        read_exact(r, &mut head, "a chunk header")?;
        pos += 8;
        let id = [head[0], head[1], head[2], head[3]];
        let size = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        let available = stream_len - pos;
        match &id {
            b"data" => {
                let Some(format) = format else {
                    return Err(HeaderError::NotWav(
                        "the data chunk comes before the fmt chunk".into(),
                    ));
                };
                if size > available {
                    return Err(HeaderError::Truncated {
                        declared: size,
                        available,
                    });
                }
                return Ok(Header {
                    encoding: format.encoding,
                    channels: format.channels,
                    sample_rate: format.sample_rate,
                    block_align: format.block_align,
                    declared_block_align: format.declared_block_align,
                    data_len: size,
                });
            }
            b"fmt " => {
                if format.is_some() {
                    return Err(HeaderError::NotWav("it has two fmt chunks".into()));
                }
                if size > available {
                    return Err(HeaderError::NotWav(format!(
                        "the fmt chunk declares {size} bytes but only {available} follow"
                    )));
                }
                let mut body = [0u8; 40];
                let keep = size.min(40) as usize;
                read_exact(r, &mut body[..keep], "the fmt chunk")?;
                format = Some(parse_fmt(&body[..keep])?);
                skip(r, size - keep as u64 + size % 2)?;
            }
            _ => {
                // An odd-sized chunk is followed by a pad byte; a missing pad byte at the very end
                // of the file is tolerated, like ffprobe and Python's `wave` do.
                if size > available {
                    return Err(HeaderError::NotWav(format!(
                        "the {} chunk declares {size} bytes but only {available} follow",
                        fourcc(&id)
                    )));
                }
                skip(r, (size + size % 2).min(available))?;
            }
        }
        pos += size + size % 2;
    }
}

/// The fields of a `fmt ` chunk that matter.
#[derive(Clone, Copy)]
struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
    block_align: usize,
    declared_block_align: u16,
}

/// Parses the first (at most 40) bytes of a `fmt ` chunk.
fn parse_fmt(b: &[u8]) -> Result<Format, HeaderError> {
    let u16_at = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let (Some(tag), Some(channels), Some(sample_rate), Some(block_align), Some(bits)) =
        (u16_at(0), u16_at(2), u32_at(4), u16_at(12), u16_at(14))
    else {
        return Err(HeaderError::NotWav(format!(
            "the fmt chunk has {} bytes, expected at least 16",
            b.len()
        )));
    };
    let code = if tag == FORMAT_EXTENSIBLE {
        let guid = b.get(24..40).ok_or_else(|| {
            HeaderError::NotWav(format!(
                "the fmt chunk of a WAVE_FORMAT_EXTENSIBLE file has {} bytes, expected 40",
                b.len()
            ))
        })?;
        if guid[2..] != KSDATAFORMAT_TAIL {
            return Err(HeaderError::Unsupported(
                "a WAVE_FORMAT_EXTENSIBLE sub-format that is not a standard format GUID".into(),
            ));
        }
        u16::from_le_bytes([guid[0], guid[1]])
    } else {
        tag
    };
    let encoding = match (code, bits) {
        (FORMAT_PCM, 8 | 16 | 24 | 32) => Encoding::Int {
            bytes: usize::from(bits / 8),
        },
        (FORMAT_IEEE_FLOAT, 32) => Encoding::Float32,
        (FORMAT_PCM, _) => return Err(HeaderError::Unsupported(format!("{bits}-bit integer PCM"))),
        (FORMAT_IEEE_FLOAT, _) => {
            return Err(HeaderError::Unsupported(format!("{bits}-bit float")))
        }
        (other, _) => {
            return Err(HeaderError::Unsupported(format!(
                "format code {other:#06x} ({})",
                format_name(other)
            )))
        }
    };
    let sample_bytes = match encoding {
        Encoding::Int { bytes } => bytes,
        Encoding::Float32 => 4,
    };
    Ok(Format {
        encoding,
        channels,
        sample_rate,
        block_align: usize::from(channels) * sample_bytes,
        declared_block_align: block_align,
    })
}

/// Names of the format codes a user is most likely to meet.
fn format_name(code: u16) -> &'static str {
    match code {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "µ-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MPEG layer 3",
        0x00FF => "AAC",
        _ => "a compressed or vendor format",
    }
}

/// A chunk id for messages: printable ASCII as is, other bytes as `\xNN`.
fn fourcc(id: &[u8]) -> String {
    let text: String = id
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    format!("\"{text}\"")
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), HeaderError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            HeaderError::NotWav(format!("the file ends inside {what}"))
        } else {
            HeaderError::Io(e.to_string())
        }
    })
}

fn skip<R: Seek>(r: &mut R, n: u64) -> Result<(), HeaderError> {
    let n = i64::try_from(n).map_err(|_| HeaderError::NotWav("a chunk is too large".into()))?;
    r.seek(SeekFrom::Current(n))
        .map(|_| ())
        .map_err(|e| HeaderError::Io(e.to_string()))
}

/// The GUID tail, for the tests that write `WAVE_FORMAT_EXTENSIBLE` files.
#[cfg(test)]
pub(super) fn tests_guid_tail() -> [u8; 14] {
    KSDATAFORMAT_TAIL
}
