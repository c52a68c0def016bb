//! `null://`: checks and counts frames, writes nothing. The test double of every real sink,
//! and a way to time rendering without encoding.

use super::{check_frame, FrameSink, SinkError, SinkSettings, SinkSummary};

/// Counts frames of the configured size.
#[derive(Debug)]
pub struct NullSink {
    width: u32,
    height: u32,
    fps: u32,
    frames: u64,
    audio_seconds: Option<f64>,
}

impl NullSink {
    /// A sink for frames described by `settings`; the audio only sets the summary's duration.
    pub fn new(settings: &SinkSettings<'_>) -> Self {
        Self {
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            frames: 0,
            audio_seconds: settings
                .audio
                .map(|a| a.len() as f64 / f64::from(settings.sample_rate)),
        }
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl FrameSink for NullSink {
    fn write_frame(&mut self, rgb: &[u8]) -> Result<(), SinkError> {
        check_frame(rgb, self.frames, self.width, self.height)?;
        self.frames += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError> {
        Ok(SinkSummary {
            frames: self.frames,
            video_seconds: self.frames as f64 / f64::from(self.fps),
            audio_seconds: self.audio_seconds,
            path: None,
        })
    }
}
