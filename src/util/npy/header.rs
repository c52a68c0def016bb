//! The `.npy` header: magic, version, and the Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (478, 3), }`, parsed strictly (numpy's
//! `read_array_header` refuses missing or extra keys too). Every number is checked before the
//! caller sizes a buffer from it.

use super::ParseError;
use crate::model::pickle::printable;
use crate::model::tensor::DType;

/// The longest header accepted. numpy itself refuses headers over 10,000 bytes unless told
/// otherwise; a header this long is damage, not a big array.
pub(super) const MAX_HEADER_BYTES: usize = 1 << 16;
/// The most dimensions numpy 2 creates.
const MAX_DIMS: usize = 64;

/// What the header says.
#[derive(Debug)]
pub(super) struct Header {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Offset of the first data byte.
    pub data_start: usize,
    /// Bytes of data the shape and dtype need (no overflow: checked).
    pub data_len: usize,
}

/// The bytes before the header text: magic, version and header length; returns
/// `(header text offset, header length)`. Needs at most 12 bytes.
pub(super) fn preamble(bytes: &[u8]) -> Result<(usize, usize), ParseError> {
    if bytes.get(..6) != Some(b"\x93NUMPY".as_slice()) {
        return Err(ParseError::Format("missing the \\x93NUMPY magic".into()));
    }
    let truncated = || ParseError::Format("the file ends inside the header".into());
    let (start, hlen) = match bytes.get(6) {
        Some(1) => {
            let b = bytes.get(8..10).ok_or_else(truncated)?;
            (10, usize::from(u16::from_le_bytes([b[0], b[1]])))
        }
        Some(2 | 3) => {
            let b = bytes.get(8..12).ok_or_else(truncated)?;
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (12, usize::try_from(n).unwrap_or(usize::MAX))
        }
        Some(v) => {
            return Err(ParseError::Format(format!(
                "format version {v}, expected 1, 2 or 3"
            )))
        }
        None => return Err(truncated()),
    };
    if hlen > MAX_HEADER_BYTES {
        return Err(ParseError::Format(format!(
            "a header of {hlen} bytes, expected at most {MAX_HEADER_BYTES}"
        )));
    }
    Ok((start, hlen))
}

/// Parses the header at the start of `bytes` (which must hold at least the whole header).
pub(super) fn parse(bytes: &[u8]) -> Result<Header, ParseError> {
    let (start, hlen) = preamble(bytes)?;
    let text = bytes
        .get(start..start + hlen)
        .ok_or_else(|| ParseError::Format("the file ends inside the header".into()))?;
    let text = std::str::from_utf8(text)
        .map_err(|_| ParseError::Format("the header is not text".into()))?;
    let dict = Dict::parse(text).map_err(|e| ParseError::Format(format!("bad header ({e})")))?;
    let dtype = match dict.descr.as_str() {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i8" => DType::I64,
        "|u1" => DType::U8,
        "|b1" => DType::Bool,
        other if other.starts_with("a structured") => {
            return Err(ParseError::Unsupported(other.into()))
        }
        other => {
            return Err(ParseError::Unsupported(format!(
                "dtype {}",
                printable(other, 40)
            )))
        }
    };
    if dict.fortran_order && dict.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(ParseError::Unsupported(
            "Fortran (column-major) order".into(),
        ));
    }
    let numel = dict
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(element_size(dtype)))
        .ok_or_else(|| ParseError::Format(format!("shape {:?} is too large", dict.shape)))?;
    Ok(Header {
        dtype,
        shape: dict.shape,
        data_start: start + hlen,
        data_len: numel,
    })
}

pub(super) fn element_size(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool | DType::U8 => 1,
    }
}

/// numpy's name of a dtype, for messages.
pub(super) fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
    }
}

/// The three entries of the header dict.
struct Dict {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Dict {
    fn parse(text: &str) -> Result<Dict, String> {
        let mut p = Lexer {
            s: text.trim_end().as_bytes(),
            i: 0,
        };
        p.expect(b'{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(p.descr()?),
                "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
                "shape" if shape.is_none() => shape = Some(p.shape()?),
                k => {
                    return Err(format!(
                        "unexpected or repeated key \"{}\"",
                        printable(k, 40)
                    ))
                }
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        if p.i != p.s.len() {
            return Err("text after the closing brace".into());
        }
        Ok(Dict {
            descr: descr.ok_or("no 'descr' key")?,
            fortran_order: fortran.ok_or("no 'fortran_order' key")?,
            shape: shape.ok_or("no 'shape' key")?,
        })
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", char::from(c), self.i))
        }
    }

    /// A quoted string without escapes (dtype strings and keys have none).
    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        let rest = self.s.get(self.i + 1..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == quote)
            .ok_or("an unterminated string")?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.i += len + 2;
        Ok(text)
    }

    /// The dtype: a string, or a list for a structured dtype (not supported, named as such).
    fn descr(&mut self) -> Result<String, String> {
        self.skip_space();
        if self.s.get(self.i) != Some(&b'[') {
            return self.string();
        }
        // Skip the list of fields, brackets balanced, strings skipped whole.
        let mut depth = 0usize;
        loop {
            match self.s.get(self.i) {
                None => return Err("an unterminated list".into()),
                Some(b'\'' | b'"') => {
                    self.string()?;
                    continue;
                }
                Some(b'[' | b'(') => depth += 1,
                Some(b']' | b')') => depth = depth.saturating_sub(1),
                Some(_) => {}
            }
            self.i += 1;
            if depth == 0 {
                return Ok("a structured dtype (a list of fields)".into());
            }
        }
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        let rest = self.s.get(self.i..).unwrap_or_default();
        for (word, v) in [(b"True".as_slice(), true), (b"False".as_slice(), false)] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!("expected True or False at byte {}", self.i))
    }

    /// `()`, `(n,)` or `(n, m, ...)` of non-negative integers.
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            if dims.len() == MAX_DIMS {
                return Err(format!("more than {MAX_DIMS} dimensions"));
            }
            dims.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_space();
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        digits
            .parse()
            .map_err(|_| format!("expected a size at byte {start}"))
    }
}
