//! Raw PCM from a pipe (`pipe://`, standard input): interleaved s16le or f32le frames at a
//! declared rate and channel count, mixed to mono.
//!
//! [`PipeSource::try_read`] waits at most a given time for data and returns what has arrived,
//! so the capture thread can keep real time (and produce silence) while the writer is idle;
//! [`AudioSource::read`] waits until its buffer is full or the pipe is closed. A partial frame
//! at a read boundary is kept for the next read; one at the end of the stream is dropped.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use super::source::{AudioSource, Captured, SourceError};
use super::uri::{PcmEncoding, PipeFormat};
use crate::clock::{MonotonicClock, Pts};

/// The name pipe sources use in errors and logs.
const NAME: &str = "pipe://";

/// What [`PipeSource::try_read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeRead {
    /// This many mono samples were written to the front of the buffer.
    Samples(usize),
    /// Nothing arrived in the time given.
    Idle,
    /// The writer closed the pipe and everything was read.
    End,
}

/// Raw PCM frames from a file descriptor (standard input for `pipe://`).
pub struct PipeSource {
    file: File,
    format: PipeFormat,
    /// Bytes read but not yet converted (at most one partial frame between reads).
    bytes: Vec<u8>,
    have: usize,
    ended: bool,
}

impl PipeSource {
    /// Reads standard input (a duplicate of descriptor 0, so dropping the source does not close
    /// it). `max_frames` bounds one read.
    ///
    /// # Errors
    /// [`SourceError::Failed`] when standard input cannot be duplicated.
    pub fn stdin(format: PipeFormat, max_frames: usize) -> Result<PipeSource, SourceError> {
        let fd =
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| SourceError::Failed {
                    name: NAME.into(),
                    source: Box::new(e),
                })?;
        Ok(PipeSource::from_fd(fd, format, max_frames))
    }

    /// Reads frames of `format` from `fd` (a pipe, a socket or a file), at most `max_frames`
    /// per read.
    pub fn from_fd(fd: OwnedFd, format: PipeFormat, max_frames: usize) -> PipeSource {
        let cap = format.frame_bytes() * max_frames.max(1);
        PipeSource {
            file: File::from(fd),
            format,
            bytes: vec![0; cap + format.frame_bytes()],
            have: 0,
            ended: false,
        }
    }

    pub fn format(&self) -> PipeFormat {
        self.format
    }

    /// Waits up to `timeout` for data and converts what arrived (at most `out.len()` frames,
    /// bounded by `max_frames`) to mono floats. Does not allocate.
    ///
    /// # Errors
    /// [`SourceError::Failed`] when reading fails (not for a closed pipe: that is
    /// [`PipeRead::End`]).
    pub fn try_read(
        &mut self,
        out: &mut [f32],
        timeout: Duration,
    ) -> Result<PipeRead, SourceError> {
        if self.ended {
            return Ok(PipeRead::End);
        }
        let fb = self.format.frame_bytes();
        let want_frames = out.len().min((self.bytes.len() - fb) / fb);
        if want_frames == 0 {
            return Ok(PipeRead::Samples(0));
        }
        if !self.wait_readable(timeout)? {
            return Ok(PipeRead::Idle);
        }
        let room = want_frames * fb - self.have;
        let n = loop {
            match self.file.read(&mut self.bytes[self.have..self.have + room]) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(PipeRead::Idle),
                Err(e) => {
                    return Err(SourceError::Failed {
                        name: NAME.into(),
                        source: Box::new(e),
                    })
                }
            }
        };
        if n == 0 {
            self.ended = true;
            return Ok(PipeRead::End);
        }
        self.have += n;
        let frames = self.have / fb;
        self.convert(frames, out);
        let rest = self.have - frames * fb;
        self.bytes.copy_within(frames * fb..self.have, 0);
        self.have = rest;
        Ok(PipeRead::Samples(frames))
    }

    fn convert(&self, frames: usize, out: &mut [f32]) {
        let channels = usize::from(self.format.channels);
        let sb = self.format.encoding.bytes();
        let scale = 1.0 / channels as f32;
        for (frame, v) in self.bytes[..frames * sb * channels]
            .chunks_exact(sb * channels)
            .zip(out.iter_mut())
        {
            let sum: f32 = frame
                .chunks_exact(sb)
                .map(|b| match self.format.encoding {
                    PcmEncoding::S16Le => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
                    PcmEncoding::F32Le => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                })
                .sum();
            *v = sum * scale;
        }
    }

    /// Whether the descriptor became readable (or closed) within `timeout`.
    fn wait_readable(&self, timeout: Duration) -> Result<bool, SourceError> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid, exclusively borrowed pollfd for a descriptor this source
        // owns, and we pass a count of 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(SourceError::Failed {
                name: NAME.into(),
                source: Box::new(e),
            });
        }
        Ok(rc > 0)
    }
}

impl AudioSource for PipeSource {
    /// Waits until `out` is full or the pipe is closed; `samples == 0` means the end.
    /// Timestamps are arrival times on `CLOCK_MONOTONIC` (the pipe carries none).
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        let mut got = 0;
        let mut timestamp: Option<Pts> = None;
        while got < out.len() {
            match self.try_read(&mut out[got..], Duration::from_millis(100))? {
                PipeRead::Samples(n) => {
                    if n > 0 && timestamp.is_none() {
                        timestamp = Some(MonotonicClock::read());
                    }
                    got += n;
                }
                PipeRead::Idle => {}
                PipeRead::End => break,
            }
        }
        Ok(Captured {
            samples: got,
            timestamp: timestamp.unwrap_or_else(MonotonicClock::read),
            lost: 0,
        })
    }

    fn sample_rate(&self) -> u32 {
        self.format.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn format(encoding: PcmEncoding, channels: u16) -> PipeFormat {
        PipeFormat {
            rate: 8000,
            encoding,
            channels,
        }
    }

    #[test]
    fn frames_split_across_writes_are_joined_and_mixed() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut src = PipeSource::from_fd(reader.into(), format(PcmEncoding::S16Le, 2), 64);
        let mut out = [0.0f32; 16];
        assert_eq!(
            src.try_read(&mut out, Duration::from_millis(1)).unwrap(),
            PipeRead::Idle
        );
        let frames: Vec<i16> = vec![16_384, 0, -32_768, -32_768, 100, 300];
        let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
        // Half a frame first, then the rest.
        writer.write_all(&bytes[..3]).unwrap();
        assert_eq!(
            src.try_read(&mut out, Duration::from_secs(5)).unwrap(),
            PipeRead::Samples(0)
        );
        writer.write_all(&bytes[3..]).unwrap();
        assert_eq!(
            src.try_read(&mut out, Duration::from_secs(5)).unwrap(),
            PipeRead::Samples(3)
        );
        assert_eq!(out[..3], [0.25, -1.0, 200.0 / 32_768.0]);
        writer.write_all(&[1]).unwrap(); // a trailing partial frame is dropped at the end
        drop(writer);
        let mut ends = 0;
        for _ in 0..3 {
            if src.try_read(&mut out, Duration::from_secs(5)).unwrap() == PipeRead::End {
                ends += 1;
            }
        }
        assert!(ends >= 2, "the end is reported and stays");
    }

    #[test]
    fn float_frames_and_blocking_reads() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut src = PipeSource::from_fd(reader.into(), format(PcmEncoding::F32Le, 1), 4);
        assert_eq!(src.sample_rate(), 8000);
        let t = std::thread::spawn(move || {
            for i in 0..10 {
                writer.write_all(&(i as f32 / 10.0).to_le_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut out = [0.0f32; 6];
        let c = src.read(&mut out).unwrap();
        assert_eq!(c.samples, 6);
        assert_eq!(out, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
        let c = src.read(&mut out).unwrap();
        assert_eq!(c.samples, 4, "the rest, then the writer closed");
        assert_eq!(out[..4], [0.6, 0.7, 0.8, 0.9]);
        assert_eq!(src.read(&mut out).unwrap().samples, 0);
        t.join().unwrap();
    }
}
