//! ALSA PCM devices (through the `alsa` crate): opening and negotiating a device, sample format
//! conversion and error classification, shared by the capture source [`AlsaCapture`](super::AlsaCapture)
//! and delayed playback ([`super::playback`]).
//!
//! A device is opened non-blocking by its ALSA name and asked for the preferred rate and
//! channel count (16 kHz mono by default); it answers with the nearest it supports, and we take
//! whatever that is (48 kHz stereo is common) and convert. Sample formats, in order of
//! preference: S16_LE, S32_LE, FLOAT_LE, S24_LE, S24_3LE, U8. Period and buffer sizes come from
//! the settings (nearest the device allows).
//!
//! Capture timestamps: the stream's timestamps are switched to `CLOCK_MONOTONIC`
//! (`snd_pcm_sw_params_set_tstamp_type`) with timestamp mode on, so `snd_pcm_status` gives the
//! time of the last hardware pointer update (`htstamp`) and the frames captured but not yet read
//! at that moment (`avail`). After reading `n` frames, the first of them was captured at
//! `htstamp − (avail + n) / rate`. Where the device gives no timestamp, the same is computed
//! from the clock and `snd_pcm_delay`.
//!
//! Errors: a device that is missing, unplugged or busy ([`SourceError::Unavailable`], retry
//! later); anything else going wrong mid-stream ([`SourceError::Failed`], reopen); a device that
//! offers no format we can convert ([`SourceError::Config`]). Overruns (xruns) are recovered
//! (`snd_pcm_prepare`, or resume after a suspend) and counted; the samples lost are reported in
//! [`Captured::lost`](super::Captured::lost). While a device is opened, alsa-lib's own error printing to stderr is
//! switched off for this thread (a retry every few seconds must not flood the journal); our
//! errors carry the errno instead.

use std::ffi::{c_char, c_int, CString};
use std::time::Duration;

use alsa::pcm::{Access, Format, HwParams, TstampType, PCM};
use alsa::{Direction, ValueOr};

use super::source::SourceError;

/// How capture and playback devices are asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlsaSettings {
    /// ALSA period in device frames (the nearest the device allows).
    pub period_frames: u32,
    /// ALSA buffer in device frames (the nearest the device allows).
    pub buffer_frames: u32,
    /// Preferred sample rate; the device may choose another.
    pub rate: u32,
    /// Preferred channel count; the device may choose another.
    pub channels: u32,
}

impl Default for AlsaSettings {
    fn default() -> Self {
        AlsaSettings {
            period_frames: 256,
            buffer_frames: 2048,
            rate: 16_000,
            channels: 1,
        }
    }
}

/// Sample formats we convert to and from float, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    S16,
    S32,
    F32,
    /// 24-bit samples in the low bytes of 32-bit words.
    S24,
    /// 24-bit samples packed in 3 bytes.
    S24Packed,
    U8,
}

impl SampleFormat {
    const PREFERENCE: [SampleFormat; 6] = [
        SampleFormat::S16,
        SampleFormat::S32,
        SampleFormat::F32,
        SampleFormat::S24,
        SampleFormat::S24Packed,
        SampleFormat::U8,
    ];

    fn alsa(self) -> Format {
        match self {
            SampleFormat::S16 => Format::S16LE,
            SampleFormat::S32 => Format::S32LE,
            SampleFormat::F32 => Format::FloatLE,
            SampleFormat::S24 => Format::S24LE,
            SampleFormat::S24Packed => Format::S243LE,
            SampleFormat::U8 => Format::U8,
        }
    }

    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S32 | SampleFormat::F32 | SampleFormat::S24 => 4,
            SampleFormat::S24Packed => 3,
            SampleFormat::U8 => 1,
        }
    }

    /// One sample from its little-endian bytes, as a float in [-1, 1] (floats as stored).
    fn decode(self, b: &[u8]) -> f32 {
        match self {
            SampleFormat::S16 => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
            SampleFormat::S32 => {
                (f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0) as f32
            }
            SampleFormat::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            SampleFormat::S24 | SampleFormat::S24Packed => {
                // Sign-extend the low 24 bits.
                let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
                v as f32 / 8_388_608.0
            }
            SampleFormat::U8 => (f32::from(b[0]) - 128.0) / 128.0,
        }
    }

    /// One float sample (clamped to [-1, 1], NaN as 0) into its little-endian bytes.
    fn encode(self, v: f32, out: &mut [u8]) {
        let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
        match self {
            SampleFormat::S16 => {
                out[..2].copy_from_slice(&((v * 32_767.0).round() as i16).to_le_bytes())
            }
            SampleFormat::S32 => out[..4]
                .copy_from_slice(&((f64::from(v) * 2_147_483_647.0).round() as i32).to_le_bytes()),
            SampleFormat::F32 => out[..4].copy_from_slice(&v.to_le_bytes()),
            SampleFormat::S24 => {
                out[..4].copy_from_slice(&((v * 8_388_607.0).round() as i32).to_le_bytes())
            }
            SampleFormat::S24Packed => {
                out[..3].copy_from_slice(&((v * 8_388_607.0).round() as i32).to_le_bytes()[..3])
            }
            SampleFormat::U8 => out[0] = ((v * 127.0).round() + 128.0) as u8,
        }
    }
}

/// Mixes interleaved frames of `channels` samples down to mono (the channel mean), one float
/// per frame into `out` (`out.len()` frames are read from `bytes`).
pub fn decode_mono(format: SampleFormat, channels: usize, bytes: &[u8], out: &mut [f32]) {
    let sb = format.bytes();
    let fb = sb * channels;
    let scale = 1.0 / channels as f32;
    for (frame, v) in bytes.chunks_exact(fb).zip(out.iter_mut()) {
        let sum: f32 = frame.chunks_exact(sb).map(|s| format.decode(s)).sum();
        *v = sum * scale;
    }
}

/// Writes mono samples as interleaved frames of `channels` identical samples.
pub fn encode_mono(format: SampleFormat, channels: usize, input: &[f32], bytes: &mut [u8]) {
    let sb = format.bytes();
    for (frame, &v) in bytes.chunks_exact_mut(sb * channels).zip(input) {
        for s in frame.chunks_exact_mut(sb) {
            format.encode(v, s);
        }
    }
}

/// Switches off alsa-lib's error printing for this thread while it lives (errors still come
/// back as return codes).
pub(crate) struct QuietErrors(
    alsa_sys::snd_local_error_handler_t,
    /// Not `Send`: the handler is per thread.
    std::marker::PhantomData<*const ()>,
);

/// The thread-local error handler that prints nothing.
unsafe extern "C" fn ignore_error(
    _file: *const c_char,
    _line: c_int,
    _function: *const c_char,
    _err: c_int,
    _fmt: *const c_char,
    _args: *mut alsa_sys::__va_list_tag,
) {
}

impl QuietErrors {
    pub(crate) fn new() -> QuietErrors {
        // SAFETY: `snd_lib_error_set_local` only stores the pointer in a thread-local and
        // returns the previous one. `ignore_error` matches the handler's C signature
        // (file, line, function, errcode, fmt, va_list) and never touches its arguments.
        let previous = unsafe { alsa_sys::snd_lib_error_set_local(Some(ignore_error)) };
        QuietErrors(previous, std::marker::PhantomData)
    }
}

impl Drop for QuietErrors {
    fn drop(&mut self) {
        // SAFETY: restores the handler that was set on this thread before `new` (a valid
        // handler or none); the guard is not `Send`, so this runs on the same thread.
        unsafe { alsa_sys::snd_lib_error_set_local(self.0) };
    }
}

/// Whether an errno means "the device is not there (now)": retry later.
fn is_unavailable(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT
            | libc::ENODEV
            | libc::ENXIO
            | libc::EBUSY
            | libc::EAGAIN
            | libc::EBADFD
            | libc::ENOTTY
            | libc::ESHUTDOWN
            | libc::EHOSTDOWN
    )
}

/// A device error as a [`SourceError`] of the right kind.
pub(crate) fn classify(name: &str, e: alsa::Error) -> SourceError {
    if is_unavailable(e.errno()) {
        SourceError::Unavailable {
            name: name.to_owned(),
            source: Box::new(e),
        }
    } else {
        SourceError::Failed {
            name: name.to_owned(),
            source: Box::new(e),
        }
    }
}

/// An opened and configured PCM with what the device agreed to.
pub(crate) struct Pcm {
    pub pcm: PCM,
    /// `alsa://DEVICE`, for errors and logs.
    pub name: String,
    pub rate: u32,
    pub channels: usize,
    pub format: SampleFormat,
    pub period: usize,
    pub buffer: usize,
    /// The stream has monotonic hardware timestamps.
    pub htstamp: bool,
}

impl Pcm {
    /// Opens `device` for `dir` and negotiates the hardware and software parameters.
    pub fn open(device: &str, dir: Direction, s: &AlsaSettings) -> Result<Pcm, SourceError> {
        let name = format!("alsa://{device}");
        let c_name = CString::new(device).map_err(|_| SourceError::Config {
            name: name.clone(),
            detail: "the device name contains a NUL byte".into(),
        })?;
        let _quiet = QuietErrors::new();
        let pcm = PCM::open(&c_name, dir, true).map_err(|e| classify(&name, e))?;
        let fail = |e| classify(&name, e);
        let (rate, channels, format, period, buffer) = {
            let hwp = HwParams::any(&pcm).map_err(fail)?;
            hwp.set_access(Access::RWInterleaved).map_err(fail)?;
            let format = SampleFormat::PREFERENCE
                .into_iter()
                .find(|f| hwp.test_format(f.alsa()).is_ok())
                .ok_or_else(|| SourceError::Config {
                    name: name.clone(),
                    detail: "the device offers no sample format we can convert (S16_LE, S32_LE, FLOAT_LE, S24_LE, S24_3LE or U8)".into(),
                })?;
            hwp.set_format(format.alsa()).map_err(fail)?;
            let channels = hwp.set_channels_near(s.channels.max(1)).map_err(fail)?;
            let rate = hwp
                .set_rate_near(s.rate.max(1), ValueOr::Nearest)
                .map_err(fail)?;
            let period = hwp
                .set_period_size_near(
                    alsa::pcm::Frames::from(s.period_frames.max(16)),
                    ValueOr::Nearest,
                )
                .map_err(fail)?;
            let buffer = hwp
                .set_buffer_size_near(alsa::pcm::Frames::from(
                    s.buffer_frames.max(2 * s.period_frames.max(16)),
                ))
                .map_err(fail)?;
            pcm.hw_params(&hwp).map_err(fail)?;
            (rate, channels, format, period, buffer)
        };
        if rate == 0 || channels == 0 || period <= 0 || buffer <= 0 {
            return Err(SourceError::Config {
                name,
                detail: format!(
                    "the device agreed to {rate} Hz, {channels} channels, period {period}, buffer {buffer}: unusable"
                ),
            });
        }
        let htstamp = {
            let swp = pcm.sw_params_current().map_err(fail)?;
            swp.set_avail_min(period).map_err(fail)?;
            let stamped = swp.set_tstamp_mode(true).is_ok()
                && swp.set_tstamp_type(TstampType::Monotonic).is_ok();
            if dir == Direction::Playback {
                // Start when one period is queued; never stop on our own (we refill in time
                // or recover the underrun).
                swp.set_start_threshold(period).map_err(fail)?;
            }
            match pcm.sw_params(&swp) {
                Ok(()) => stamped,
                // Older kernels refuse the timestamp type: keep the defaults and use the clock.
                Err(_) if stamped => {
                    let swp = pcm.sw_params_current().map_err(fail)?;
                    swp.set_avail_min(period).map_err(fail)?;
                    pcm.sw_params(&swp).map_err(fail)?;
                    false
                }
                Err(e) => return Err(fail(e)),
            }
        };
        let pcm = Pcm {
            pcm,
            name,
            rate,
            channels: channels as usize,
            format,
            period: period as usize,
            buffer: buffer as usize,
            htstamp,
        };
        log::info!(
            "{} ({}): {} Hz, {} channel(s), {:?}, period {} frames, buffer {} frames, {} timestamps",
            pcm.name,
            match dir {
                Direction::Capture => "capture",
                Direction::Playback => "playback",
            },
            pcm.rate,
            pcm.channels,
            pcm.format,
            pcm.period,
            pcm.buffer,
            if pcm.htstamp { "device" } else { "clock" }
        );
        Ok(pcm)
    }

    /// Bytes per interleaved frame.
    pub fn frame_bytes(&self) -> usize {
        self.format.bytes() * self.channels
    }

    /// Duration of `frames` device frames.
    pub fn frames_duration(&self, frames: i64) -> Duration {
        Duration::from_nanos(
            (u64::try_from(frames.max(0)).unwrap_or(0) * 1_000_000_000) / u64::from(self.rate),
        )
    }

    /// Recovers from an xrun (`EPIPE`) or a suspend (`ESTRPIPE`); any other error is returned
    /// classified. Returns `Ok` when the stream is usable again.
    pub fn recover(&self, e: alsa::Error) -> Result<(), SourceError> {
        let fail = |e| classify(&self.name, e);
        match e.errno() {
            libc::EPIPE => self.pcm.prepare().map_err(fail),
            libc::ESTRPIPE => {
                for _ in 0..100 {
                    match self.pcm.resume() {
                        Ok(()) => return Ok(()),
                        Err(e) if e.errno() == libc::EAGAIN => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(_) => break,
                    }
                }
                self.pcm.prepare().map_err(fail)
            }
            _ => Err(fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_within_their_resolution() {
        let x = [0.0f32, 0.5, -0.5, 0.999, -1.0, 0.123_456];
        for f in SampleFormat::PREFERENCE {
            let mut bytes = vec![0u8; x.len() * f.bytes() * 2];
            encode_mono(f, 2, &x, &mut bytes);
            let mut y = [0.0f32; 6];
            decode_mono(f, 2, &bytes, &mut y);
            let tol = match f {
                // Encoding scales by 2^(b-1) - 1, decoding by 2^(b-1): up to two steps apart.
                SampleFormat::U8 => 2.0 / 128.0,
                SampleFormat::S16 => 2.0 / 32_768.0,
                _ => 1e-6,
            };
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= tol, "{f:?}: {a} -> {b}");
            }
        }
    }

    #[test]
    fn channels_are_averaged_and_values_clamped() {
        // Two S16 channels: 16384 and -16384 average to 0; 32767 and 32767 to ~1.
        let frames: [i16; 4] = [16_384, -16_384, 32_767, 32_767];
        let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = [9.0f32; 2];
        decode_mono(SampleFormat::S16, 2, &bytes, &mut out);
        assert_eq!(out, [0.0, 32_767.0 / 32_768.0]);
        let mut b = [0u8; 6];
        encode_mono(SampleFormat::S16, 1, &[2.0, f32::NAN, -7.0], &mut b);
        assert_eq!(b, [0xff, 0x7f, 0, 0, 0x01, 0x80]);
        // S24 sign extension.
        assert_eq!(SampleFormat::S24Packed.decode(&[0, 0, 0x80]), -1.0);
        assert_eq!(
            SampleFormat::S24.decode(&[0xff, 0xff, 0x7f, 0]),
            8_388_607.0 / 8_388_608.0
        );
    }

    #[test]
    fn missing_devices_are_retried_other_errors_reopen() {
        use super::super::source::SourceErrorKind;
        let e = classify("alsa://x", alsa::Error::new("snd_pcm_open", libc::ENOENT));
        assert_eq!(e.kind(), SourceErrorKind::Retry);
        let e = classify("alsa://x", alsa::Error::new("snd_pcm_readi", libc::ENODEV));
        assert_eq!(e.kind(), SourceErrorKind::Retry);
        let e = classify("alsa://x", alsa::Error::new("snd_pcm_readi", libc::EIO));
        assert_eq!(e.kind(), SourceErrorKind::Reopen);
        assert_eq!(e.to_string(), "audio source alsa://x failed");
    }
}
