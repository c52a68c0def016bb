//! YUV4MPEG2 (`.y4m`) writer in pure Rust: lossless chroma (4:4:4), so the only loss is the
//! 8-bit RGB → Y'CbCr rounding.
//!
//! Format: one header line
//! `YUV4MPEG2 W<w> H<h> F<fps>:1 Ip A1:1 C444 XCOLORRANGE=LIMITED\n`, then per frame
//! `FRAME\n` followed by the full-resolution Y, Cb and Cr planes (`w*h` bytes each).
//!
//! The file is written beside the target and renamed into place by `finish`
//! (`util::fsx::AtomicFile`); an unfinished sink removes it.
//!
//! Colour: ITU-R BT.601, limited ("studio") range — the default every y4m reader assumes
//! (ffmpeg, mpv, x264), stated explicitly with `XCOLORRANGE=LIMITED`. The conversion is the
//! usual 8-bit integer form with 8 fractional bits (see [`rgb_to_ycbcr`]): Y in 16..=235,
//! Cb and Cr in 16..=240.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{check_frame, Frame, FrameSink, SinkError, SinkSettings, SinkSummary, WriteOutcome};
use crate::clock::Pts;
use crate::util::fsx::AtomicFile;

/// BT.601 limited-range Y'CbCr of one 8-bit RGB pixel, in integers:
///
/// ```text
/// Y  = ((  66 R + 129 G +  25 B + 128) >> 8) +  16
/// Cb = (( -38 R -  74 G + 112 B + 128) >> 8) + 128
/// Cr = (( 112 R -  94 G -  18 B + 128) >> 8) + 128
/// ```
///
/// (`>>` is an arithmetic shift, i.e. floor division by 256.) Within one level of the exact
/// BT.601 matrix; white is (235, 128, 128), black (16, 128, 128).
#[inline]
pub fn rgb_to_ycbcr(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let cb = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let cr = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    // The coefficients keep each value inside 16..=240, so the casts cannot wrap.
    [y as u8, cb as u8, cr as u8]
}

/// The header line (with its newline) for `width`×`height` frames at `fps`.
pub fn header(width: u32, height: u32, fps: u32) -> String {
    format!("YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C444 XCOLORRANGE=LIMITED\n")
}

/// Writes frames to a `.y4m` file. Holds one preallocated plane buffer, so writing a frame
/// allocates nothing.
pub struct Y4mSink {
    path: PathBuf,
    file: AtomicFile,
    out: BufWriter<File>,
    width: u32,
    height: u32,
    fps: u32,
    frames: u64,
    /// Y, Cb, Cr planes of one frame, back to back.
    planes: Vec<u8>,
}

impl Y4mSink {
    /// Starts the file for `path` (at a temporary path beside it) and writes the stream
    /// header. An existing file at `path` is replaced only by [`FrameSink::finish`].
    ///
    /// # Errors
    /// [`SinkError::Create`] when the file cannot be created, [`SinkError::Write`] when the
    /// header cannot be written.
    pub fn create(path: &Path, settings: &SinkSettings) -> Result<Self, SinkError> {
        let file = AtomicFile::new(path);
        let f = file.create().map_err(|source| SinkError::Create {
            path: path.to_owned(),
            source,
        })?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        out.write_all(header(settings.width, settings.height, settings.fps).as_bytes())
            .map_err(|source| SinkError::Write {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            out,
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            frames: 0,
            planes: vec![0; settings.frame_bytes()],
        })
    }
}

impl FrameSink for Y4mSink {
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError> {
        let rgb = frame.data;
        check_frame(rgb, self.frames, self.width, self.height)?;
        let n = self.width as usize * self.height as usize;
        let (y, chroma) = self.planes.split_at_mut(n);
        let (cb, cr) = chroma.split_at_mut(n);
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let [yy, u, v] = rgb_to_ycbcr(px[0], px[1], px[2]);
            y[i] = yy;
            cb[i] = u;
            cr[i] = v;
        }
        let io = |source| SinkError::Write {
            path: self.path.clone(),
            source,
        };
        self.out.write_all(b"FRAME\n").map_err(io)?;
        self.out.write_all(&self.planes).map_err(io)?;
        self.frames += 1;
        Ok(WriteOutcome::Written)
    }

    /// YUV4MPEG2 has no sound track: audio is dropped.
    fn write_audio(&mut self, _samples: &[f32], _pts: Pts) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary, SinkError> {
        let io = |source| SinkError::Write {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(io)?;
        let this = *self;
        drop(this.out);
        this.file.commit().map_err(|source| SinkError::Write {
            path: this.path.clone(),
            source,
        })?;
        Ok(SinkSummary {
            frames: this.frames,
            video_seconds: this.frames as f64 / f64::from(this.fps),
            audio_seconds: None,
            path: Some(this.path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact BT.601 limited-range conversion in floating point.
    fn reference(r: u8, g: u8, b: u8) -> [f64; 3] {
        let (r, g, b) = (
            f64::from(r) / 255.0,
            f64::from(g) / 255.0,
            f64::from(b) / 255.0,
        );
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let cb = (b - y) / 1.772;
        let cr = (r - y) / 1.402;
        [16.0 + 219.0 * y, 128.0 + 224.0 * cb, 128.0 + 224.0 * cr]
    }

    #[test]
    fn known_colours() {
        assert_eq!(rgb_to_ycbcr(255, 255, 255), [235, 128, 128]);
        assert_eq!(rgb_to_ycbcr(0, 0, 0), [16, 128, 128]);
        assert_eq!(rgb_to_ycbcr(255, 0, 0), [82, 90, 240]);
        assert_eq!(rgb_to_ycbcr(0, 255, 0), [144, 54, 34]);
        assert_eq!(rgb_to_ycbcr(0, 0, 255), [41, 240, 110]);
    }

    #[test]
    fn within_one_level_of_bt601() {
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(5) {
                for b in (0..=255u8).step_by(5) {
                    let got = rgb_to_ycbcr(r, g, b);
                    let want = reference(r, g, b);
                    for c in 0..3 {
                        let d = (f64::from(got[c]) - want[c]).abs();
                        assert!(
                            d <= 1.0,
                            "rgb ({r},{g},{b}) channel {c}: {} vs {}",
                            got[c],
                            want[c]
                        );
                    }
                }
            }
        }
    }

    /// Parses a whole y4m file: header fields and the frames' planes.
    fn parse(bytes: &[u8]) -> (String, Vec<Vec<u8>>) {
        let nl = bytes.iter().position(|&b| b == b'\n').expect("header line");
        let head = String::from_utf8(bytes[..nl].to_vec()).expect("ascii header");
        let field = |p: char| -> usize {
            head.split(' ')
                .find_map(|t| t.strip_prefix(p))
                .expect("field")
                .parse()
                .expect("number")
        };
        let frame = field('W') * field('H') * 3;
        let mut rest = &bytes[nl + 1..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            assert!(
                rest.starts_with(b"FRAME\n"),
                "frame {} lacks its FRAME marker",
                frames.len()
            );
            rest = &rest[6..];
            assert!(rest.len() >= frame, "frame {} is truncated", frames.len());
            frames.push(rest[..frame].to_vec());
            rest = &rest[frame..];
        }
        (head, frames)
    }

    #[test]
    fn writes_three_frames_that_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.y4m");
        let (w, h) = (5u32, 3u32);
        let settings = SinkSettings::new(w, h);
        let mut sink: Box<dyn FrameSink> =
            Box::new(Y4mSink::create(&path, &settings).expect("create"));
        let colours = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255]];
        for (k, c) in colours.iter().enumerate() {
            let mut frame = c.repeat((w * h) as usize);
            frame[0..3].copy_from_slice(&[255, 255, 255]); // top-left pixel white
            let out = sink
                .write_frame(&Frame::rgb(k as u64, Pts::ZERO, &frame))
                .expect("write");
            assert_eq!(out, WriteOutcome::Written);
            assert!(!path.exists(), "the target appears only at finish");
        }
        let summary = sink.finish().expect("finish");
        assert_eq!(summary.frames, 3);
        assert!((summary.video_seconds - 0.1).abs() < 1e-12);

        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(bytes.len(), header(w, h, 30).len() + 3 * (6 + 45));
        let (head, frames) = parse(&bytes);
        assert_eq!(
            head,
            "YUV4MPEG2 W5 H3 F30:1 Ip A1:1 C444 XCOLORRANGE=LIMITED"
        );
        assert_eq!(frames.len(), 3);
        let n = (w * h) as usize;
        for (frame, c) in frames.iter().zip(colours) {
            let want = rgb_to_ycbcr(c[0], c[1], c[2]);
            for (p, plane) in frame.chunks_exact(n).enumerate() {
                assert_eq!(plane[0], [235, 128, 128][p], "white pixel, plane {p}");
                assert!(
                    plane[1..].iter().all(|&v| v == want[p]),
                    "plane {p} of {c:?}"
                );
            }
        }
        assert_eq!(&frames[0][..n][1..2], &[82]); // red's Y
    }

    #[test]
    fn wrong_frame_size_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.y4m");
        let mut sink = Y4mSink::create(&path, &SinkSettings::new(4, 4)).expect("create");
        let err = sink
            .write_frame(&Frame::rgb(0, Pts::ZERO, &[0; 47]))
            .expect_err("47 bytes is not 4x4x3");
        assert!(
            matches!(
                err,
                SinkError::FrameSize {
                    got: 47,
                    expected: 48,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_directory_is_a_create_error() {
        let path = Path::new("/nonexistent-dir/x.y4m");
        let err = Y4mSink::create(path, &SinkSettings::new(4, 4))
            .err()
            .expect("must fail");
        assert!(matches!(err, SinkError::Create { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent-dir/x.y4m"), "{err}");
    }
}
