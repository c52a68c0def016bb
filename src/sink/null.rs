//! `null://`: checks and counts frames and audio, writes nothing. The test double of every real
//! sink, and a way to time rendering without encoding.

use super::{check_frame, Frame, FrameSink, SinkError, SinkSettings, SinkSummary, WriteOutcome};
use crate::clock::Pts;

/// Counts frames of the configured size.
#[derive(Debug)]
pub struct NullSink {
    width: u32,
    height: u32,
    fps: u32,
    frames: u64,
    audio_rate: Option<u32>,
    audio_samples: u64,
}

impl NullSink {
    /// A sink for frames described by `settings`; audio only counts toward the summary.
    pub fn new(settings: &SinkSettings) -> Self {
        Self {
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            frames: 0,
            audio_rate: settings.audio_rate,
            audio_samples: 0,
        }
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl FrameSink for NullSink {
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError> {
        check_frame(frame.data, self.frames, self.width, self.height)?;
        self.frames += 1;
        Ok(WriteOutcome::Written)
    }

    fn write_audio(&mut self, samples: &[f32], _pts: Pts) -> Result<(), SinkError> {
        self.audio_samples += samples.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError> {
        Ok(SinkSummary {
            frames: self.frames,
            video_seconds: self.frames as f64 / f64::from(self.fps),
            audio_seconds: self
                .audio_rate
                .map(|r| self.audio_samples as f64 / f64::from(r)),
            path: None,
        })
    }
}
