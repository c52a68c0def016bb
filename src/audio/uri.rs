//! Where live audio comes from and where it goes, parsed once from a URI into a typed value.
//!
//! | URI | meaning |
//! |---|---|
//! | `alsa://DEVICE` | ALSA capture device (`alsa://default`, `alsa://hw:1,0`, `alsa://plughw:CARD=Mic`) |
//! | `file://PATH.wav[?loop=true]` | a WAV file played in real time (`file:///abs/x.wav` is absolute, `file://x.wav` relative) |
//! | `pipe://?rate=R&format=s16le\|f32le[&channels=N]` | raw interleaved PCM on standard input |
//! | `silence://` | endless silence |
//!
//! Playback (`audio.out`) takes `alsa://DEVICE` only ([`PlaybackUri`]).
//!
//! A path is taken literally up to the first `?` (no percent-decoding). Every mistake is one
//! [`UriError`] sentence that quotes the URI and says what was expected.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The forms [`SourceUri::parse`] accepts, for error messages and help texts.
pub const SOURCE_FORMS: &str = "alsa://DEVICE, file://PATH.wav[?loop=true], \
     pipe://?rate=R&format=s16le|f32le[&channels=N] or silence://";

/// Sample rates a `pipe://` source may declare.
pub const PIPE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;
/// Channel counts a `pipe://` source may declare.
pub const PIPE_CHANNELS: std::ops::RangeInclusive<u16> = 1..=32;

/// A live audio source, parsed from `audio.source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceUri {
    /// An ALSA capture device, by its ALSA name.
    Alsa { device: String },
    /// A WAV file, played in real time once (or endlessly with `looped`).
    File { path: PathBuf, looped: bool },
    /// Raw PCM on standard input.
    Pipe(PipeFormat),
    /// Endless silence.
    Silence,
}

/// Sample encoding of raw PCM on a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcmEncoding {
    /// Signed 16-bit little-endian integers.
    S16Le,
    /// 32-bit little-endian IEEE floats.
    F32Le,
}

impl PcmEncoding {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            PcmEncoding::S16Le => 2,
            PcmEncoding::F32Le => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PcmEncoding::S16Le => "s16le",
            PcmEncoding::F32Le => "f32le",
        }
    }
}

/// What a `pipe://` source delivers: interleaved frames of `channels` samples at `rate` Hz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeFormat {
    pub rate: u32,
    pub encoding: PcmEncoding,
    pub channels: u16,
}

impl PipeFormat {
    /// Bytes per interleaved frame.
    pub fn frame_bytes(self) -> usize {
        self.encoding.bytes() * usize::from(self.channels)
    }
}

/// Where delayed playback goes, parsed from `audio.out` (`alsa://DEVICE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaybackUri {
    /// The ALSA playback device name.
    pub device: String,
}

/// A URI that is not one of the accepted forms: one sentence naming the URI and what was
/// expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?} is not a valid audio {role}: {detail}")]
pub struct UriError {
    uri: String,
    role: &'static str,
    detail: String,
}

impl UriError {
    fn source(uri: &str, detail: impl Into<String>) -> UriError {
        UriError {
            uri: uri.to_owned(),
            role: "source",
            detail: detail.into(),
        }
    }

    /// The URI as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

/// Splits `scheme://rest` (scheme case-insensitive).
fn split_scheme(uri: &str) -> Option<(String, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

/// Checks an ALSA device name: not empty, no whitespace or control characters.
fn alsa_device(rest: &str) -> Result<String, String> {
    if rest.is_empty() {
        return Err("alsa:// needs a device name, e.g. alsa://default or alsa://hw:1,0".into());
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the ALSA device name {rest:?} contains a space or control character; expected a name such as default or hw:1,0"
        ));
    }
    Ok(rest.to_owned())
}

/// `key=value` pairs of a query, in order; an empty query gives none.
fn query_pairs(query: &str) -> Result<Vec<(&str, &str)>, String> {
    if query.is_empty() {
        return Ok(Vec::new());
    }
    query
        .split('&')
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| format!("the parameter {pair:?} has no value; expected key=value"))
        })
        .collect()
}

fn parse_file(rest: &str) -> Result<SourceUri, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let is_wav = path.len() > 4 && path[path.len() - 4..].eq_ignore_ascii_case(".wav");
    if !is_wav {
        return Err(
            "file:// needs the path of a .wav file, e.g. file:///srv/audio/intro.wav".into(),
        );
    }
    let mut looped = false;
    for (key, value) in query_pairs(query)? {
        match key {
            "loop" => {
                looped = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("loop = {value:?}: expected true or false")),
                }
            }
            _ => return Err(format!("unknown parameter {key:?} (known: loop)")),
        }
    }
    Ok(SourceUri::File {
        path: PathBuf::from(path),
        looped,
    })
}

fn parse_pipe(rest: &str) -> Result<SourceUri, String> {
    let Some(query) = rest.strip_prefix('?') else {
        return Err(if rest.is_empty() {
            "pipe:// needs rate and format, e.g. pipe://?rate=16000&format=s16le".into()
        } else {
            format!("pipe:// reads standard input and takes no name ({rest:?}); expected pipe://?rate=R&format=s16le|f32le[&channels=N]")
        });
    };
    let (mut rate, mut encoding, mut channels) = (None, None, 1u16);
    for (key, value) in query_pairs(query)? {
        match key {
            "rate" => {
                rate = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|r| PIPE_RATES.contains(r))
                        .ok_or_else(|| {
                            format!(
                            "rate = {value:?}: expected an integer {}..={} (samples per second)",
                            PIPE_RATES.start(),
                            PIPE_RATES.end()
                        )
                        })?,
                )
            }
            "format" => {
                encoding = Some(match value {
                    "s16le" => PcmEncoding::S16Le,
                    "f32le" => PcmEncoding::F32Le,
                    _ => return Err(format!("format = {value:?}: expected s16le or f32le")),
                })
            }
            "channels" => {
                channels = value
                    .parse::<u16>()
                    .ok()
                    .filter(|c| PIPE_CHANNELS.contains(c))
                    .ok_or_else(|| {
                        format!(
                            "channels = {value:?}: expected an integer {}..={}",
                            PIPE_CHANNELS.start(),
                            PIPE_CHANNELS.end()
                        )
                    })?
            }
            _ => {
                return Err(format!(
                    "unknown parameter {key:?} (known: rate, format, channels)"
                ))
            }
        }
    }
    let rate = rate.ok_or("pipe:// needs rate=R (samples per second)")?;
    let encoding = encoding.ok_or("pipe:// needs format=s16le or format=f32le")?;
    Ok(SourceUri::Pipe(PipeFormat {
        rate,
        encoding,
        channels,
    }))
}

impl SourceUri {
    /// Parses an audio source URI (see the module documentation for the forms).
    ///
    /// # Errors
    /// [`UriError`] naming the URI and what was expected.
    pub fn parse(uri: &str) -> Result<SourceUri, UriError> {
        let Some((scheme, rest)) = split_scheme(uri) else {
            return Err(UriError::source(uri, format!("expected {SOURCE_FORMS}")));
        };
        let parsed = match scheme.as_str() {
            "alsa" => alsa_device(rest).map(|device| SourceUri::Alsa { device }),
            "file" => parse_file(rest),
            "pipe" => parse_pipe(rest),
            "silence" if rest.is_empty() => Ok(SourceUri::Silence),
            "silence" => Err("silence:// takes no name or parameters".to_owned()),
            _ => Err(format!(
                "unknown scheme {scheme:?}; expected {SOURCE_FORMS}"
            )),
        };
        parsed.map_err(|detail| UriError::source(uri, detail))
    }

    /// A short name for logs and status: the URI in canonical form.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl FromStr for SourceUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceUri::parse(s)
    }
}

impl fmt::Display for SourceUri {
    /// The canonical URI; parsing it gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceUri::Alsa { device } => write!(f, "alsa://{device}"),
            SourceUri::File { path, looped } => {
                write!(f, "file://{}", path.display())?;
                if *looped {
                    f.write_str("?loop=true")?;
                }
                Ok(())
            }
            SourceUri::Pipe(p) => write!(
                f,
                "pipe://?rate={}&format={}&channels={}",
                p.rate,
                p.encoding.name(),
                p.channels
            ),
            SourceUri::Silence => f.write_str("silence://"),
        }
    }
}

impl PlaybackUri {
    /// Parses a playback URI: `alsa://DEVICE`.
    ///
    /// # Errors
    /// [`UriError`] naming the URI and what was expected.
    pub fn parse(uri: &str) -> Result<PlaybackUri, UriError> {
        let err = |detail: String| UriError {
            uri: uri.to_owned(),
            role: "output",
            detail,
        };
        match split_scheme(uri) {
            Some((scheme, rest)) if scheme == "alsa" => alsa_device(rest)
                .map(|device| PlaybackUri { device })
                .map_err(err),
            _ => Err(err(
                "expected alsa://DEVICE, e.g. alsa://default or alsa://hw:0,3 (or an empty string for no playback)"
                    .into(),
            )),
        }
    }
}

impl FromStr for PlaybackUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlaybackUri::parse(s)
    }
}

impl fmt::Display for PlaybackUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alsa://{}", self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) -> SourceUri {
        SourceUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn err(uri: &str) -> String {
        SourceUri::parse(uri).unwrap_err().to_string()
    }

    #[test]
    fn accepted_forms_parse_and_print_back() {
        let cases = [
            (
                "alsa://default",
                SourceUri::Alsa {
                    device: "default".into(),
                },
            ),
            (
                "ALSA://plughw:CARD=Mic,DEV=0",
                SourceUri::Alsa {
                    device: "plughw:CARD=Mic,DEV=0".into(),
                },
            ),
            (
                "file:///srv/a b.WAV",
                SourceUri::File {
                    path: "/srv/a b.WAV".into(),
                    looped: false,
                },
            ),
            (
                "file://rel/x.wav?loop=true",
                SourceUri::File {
                    path: "rel/x.wav".into(),
                    looped: true,
                },
            ),
            (
                "pipe://?rate=44100&format=f32le&channels=2",
                SourceUri::Pipe(PipeFormat {
                    rate: 44_100,
                    encoding: PcmEncoding::F32Le,
                    channels: 2,
                }),
            ),
            (
                "pipe://?format=s16le&rate=16000",
                SourceUri::Pipe(PipeFormat {
                    rate: 16_000,
                    encoding: PcmEncoding::S16Le,
                    channels: 1,
                }),
            ),
            ("silence://", SourceUri::Silence),
        ];
        for (text, want) in cases {
            let got = ok(text);
            assert_eq!(got, want, "{text}");
            assert_eq!(ok(&got.to_string()), got, "{text} prints back");
        }
        assert_eq!(
            PipeFormat {
                rate: 8000,
                encoding: PcmEncoding::F32Le,
                channels: 3
            }
            .frame_bytes(),
            12
        );
    }

    #[test]
    fn mistakes_get_one_sentence_naming_the_uri() {
        let cases = [
            ("default", "expected alsa://DEVICE"),
            ("http://x", "unknown scheme \"http\""),
            ("alsa://", "needs a device name"),
            ("alsa://hw 1", "space or control character"),
            ("file://x.mp3", "path of a .wav file"),
            (
                "file://x.wav?loop=yes",
                "loop = \"yes\": expected true or false",
            ),
            (
                "file://x.wav?repeat=true",
                "unknown parameter \"repeat\" (known: loop)",
            ),
            ("file://x.wav?loop", "has no value"),
            ("pipe://", "needs rate and format"),
            ("pipe://stdin?rate=1", "takes no name"),
            ("pipe://?format=s16le", "needs rate=R"),
            ("pipe://?rate=16000", "needs format=s16le or format=f32le"),
            (
                "pipe://?rate=abc&format=s16le",
                "rate = \"abc\": expected an integer 1000..=384000",
            ),
            (
                "pipe://?rate=999&format=s16le",
                "expected an integer 1000..=384000",
            ),
            (
                "pipe://?rate=16000&format=s24le",
                "format = \"s24le\": expected s16le or f32le",
            ),
            (
                "pipe://?rate=16000&format=s16le&channels=0",
                "channels = \"0\": expected an integer 1..=32",
            ),
            (
                "pipe://?rate=16000&format=s16le&bits=16",
                "known: rate, format, channels",
            ),
            ("silence://x", "takes no name or parameters"),
        ];
        for (uri, want) in cases {
            let e = err(uri);
            assert!(
                e.starts_with(&format!("{uri:?} is not a valid audio source: ")),
                "{e}"
            );
            assert!(e.contains(want), "{uri}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn playback_takes_alsa_only() {
        assert_eq!(
            PlaybackUri::parse("alsa://hw:0,3").unwrap(),
            PlaybackUri {
                device: "hw:0,3".into()
            }
        );
        assert_eq!(
            PlaybackUri::parse("alsa://default").unwrap().to_string(),
            "alsa://default"
        );
        let e = PlaybackUri::parse("file://x.wav").unwrap_err().to_string();
        assert!(
            e.starts_with("\"file://x.wav\" is not a valid audio output: expected alsa://DEVICE"),
            "{e}"
        );
        assert!(PlaybackUri::parse("alsa://").is_err());
    }
}
