//! Media for the native peer: VP8 video and Opus audio, sent from IVF and Ogg Opus files or
//! generated (a moving colour-bar test pattern and a 440 Hz tone), and received frames
//! written to IVF and Ogg Opus files.
//!
//! Sources run on their own threads, paced by their timestamps, and hand whole frames to the
//! driver through a bounded queue (a slow driver slows the source down; nothing grows). The
//! test pattern is encoded as VP8 key frames with libwebp (whose lossy format *is* a VP8 key
//! frame), the tone with the pure-Rust Opus encoder of `opus-pure`, which also reads and
//! writes the Ogg container.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Test pattern size and rate.
pub const PATTERN_WIDTH: u32 = 320;
/// Test pattern height.
pub const PATTERN_HEIGHT: u32 = 240;
/// Test pattern frames per second.
pub const PATTERN_FPS: u64 = 15;
/// Largest IVF frame accepted from a file (a corrupt size field is an error, not an allocation).
const MAX_IVF_FRAME: usize = 8 << 20;
/// Frames queued between a source thread and the driver.
pub(crate) const SOURCE_QUEUE: usize = 16;

/// Where outgoing video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// A generated 320×240, 15 fps moving colour-bar pattern (VP8 key frames).
    TestPattern,
    /// A VP8 IVF file (e.g. `ffmpeg -i in.mp4 -c:v libvpx out.ivf`).
    Ivf(PathBuf),
}

/// Where outgoing audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// A generated 440 Hz stereo tone, Opus at 48 kHz in 20 ms frames.
    Tone,
    /// An Ogg Opus file (e.g. `ffmpeg -i in.wav -c:a libopus out.ogg`).
    Ogg(PathBuf),
}

/// What media the peer sends and records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaConfig {
    /// Video to send, if any.
    pub video: Option<VideoSource>,
    /// Audio to send, if any.
    pub audio: Option<AudioSource>,
    /// Start a file again when it ends (otherwise [`crate::PeerEvent::MediaEnded`] and the
    /// track goes quiet).
    pub repeat: bool,
    /// Write the other peer's VP8 video to this IVF file.
    pub record_video: Option<PathBuf>,
    /// Write the other peer's Opus audio to this Ogg file.
    pub record_audio: Option<PathBuf>,
}

impl MediaConfig {
    /// Whether a track of this kind is sent or received.
    pub(crate) fn wants(&self, track: Track) -> (bool, bool) {
        match track {
            Track::Video => (self.video.is_some(), self.record_video.is_some()),
            Track::Audio => (self.audio.is_some(), self.record_audio.is_some()),
        }
    }
}

/// A media track kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// VP8 video.
    Video,
    /// Opus audio.
    Audio,
}

impl Track {
    /// RTP clock rate of the track's codec.
    pub(crate) fn clock(self) -> u64 {
        match self {
            Track::Video => 90_000,
            Track::Audio => 48_000,
        }
    }
}

impl std::fmt::Display for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Track::Video => "video",
            Track::Audio => "audio",
        })
    }
}

/// A frame from a source: its data and its media time in the track's clock.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) track: Track,
    pub(crate) data: Vec<u8>,
    pub(crate) ticks: u64,
}

/// What a source thread tells the driver.
#[derive(Debug)]
pub(crate) enum SourceMsg {
    Frame(Frame),
    End {
        track: Track,
        frames: u64,
        error: Option<String>,
    },
}

/// Something that yields frames with timestamps (in the track's clock).
trait FrameSource: Send {
    fn track(&self) -> Track;
    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, String>;
}

/// Opens a video source, checking the file now so a bad file is an error at start-up.
fn open_video(src: &VideoSource, repeat: bool) -> Result<Box<dyn FrameSource>, String> {
    match src {
        VideoSource::TestPattern => Ok(Box::new(TestPattern::default())),
        VideoSource::Ivf(path) => Ok(Box::new(IvfSource::open(path, repeat)?)),
    }
}

fn open_audio(src: &AudioSource, repeat: bool) -> Result<Box<dyn FrameSource>, String> {
    match src {
        AudioSource::Tone => Ok(Box::new(Tone::new()?)),
        AudioSource::Ogg(path) => Ok(Box::new(OggSource::open(path, repeat)?)),
    }
}

/// Sources opened but not started: they start when the connection is up.
pub(crate) struct Sources {
    starts: Vec<std::sync::mpsc::Sender<()>>,
}

impl Sources {
    /// Opens the configured sources (errors name the file and the problem) and spawns their
    /// threads, which wait for [`Sources::start`].
    pub(crate) fn open(
        config: &MediaConfig,
        tx: &mpsc::Sender<SourceMsg>,
    ) -> Result<Sources, String> {
        let mut sources = Vec::new();
        if let Some(v) = &config.video {
            sources.push(open_video(v, config.repeat)?);
        }
        if let Some(a) = &config.audio {
            sources.push(open_audio(a, config.repeat)?);
        }
        let mut starts = Vec::new();
        for src in sources {
            let (start_tx, start_rx) = std::sync::mpsc::channel();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("sb-{}-source", src.track()))
                .spawn(move || run_source(src, &start_rx, &tx))
                .map_err(|e| format!("cannot start a media thread: {e}"))?;
            starts.push(start_tx);
        }
        Ok(Sources { starts })
    }

    /// Starts every source (once; later calls do nothing).
    pub(crate) fn start(&mut self) {
        for s in self.starts.drain(..) {
            let _ = s.send(());
        }
    }
}

fn run_source(
    mut src: Box<dyn FrameSource>,
    start: &std::sync::mpsc::Receiver<()>,
    tx: &mpsc::Sender<SourceMsg>,
) {
    if start.recv().is_err() {
        return;
    }
    let track = src.track();
    let clock = track.clock();
    let t0 = Instant::now();
    let mut frames = 0u64;
    let end = |frames, error| SourceMsg::End {
        track,
        frames,
        error,
    };
    loop {
        match src.next_frame() {
            Ok(Some((data, ticks))) => {
                let due = t0
                    + Duration::from_micros(
                        u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(clock))
                            .unwrap_or(u64::MAX / 2),
                    );
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let frame = Frame { track, data, ticks };
                if tx.blocking_send(SourceMsg::Frame(frame)).is_err() {
                    return;
                }
                frames += 1;
            }
            Ok(None) => {
                let _ = tx.blocking_send(end(frames, None));
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(end(frames, Some(e)));
                return;
            }
        }
    }
}

/// The moving colour-bar pattern, each frame a VP8 key frame.
#[derive(Default)]
struct TestPattern {
    n: u64,
}

impl TestPattern {
    fn render(n: u64) -> Vec<u8> {
        let (w, h) = (PATTERN_WIDTH as usize, PATTERN_HEIGHT as usize);
        let mut rgb = vec![0u8; w * h * 3];
        // A white box sweeps across the bars, one bar width per second.
        let box_x = ((n * (w as u64) / 8 / PATTERN_FPS) % w as u64) as usize;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                let bar = 7 - x * 8 / w;
                let in_box = (y > h / 3 && y < h * 2 / 3) && (x + w - box_x) % w < w / 16;
                let (r, g, b) = if in_box {
                    (255, 255, 255)
                } else {
                    (
                        if bar & 2 != 0 { 230 } else { 16 },
                        if bar & 4 != 0 { 230 } else { 16 },
                        if bar & 1 != 0 { 230 } else { 16 },
                    )
                };
                rgb[i] = r;
                rgb[i + 1] = g;
                rgb[i + 2] = b;
            }
        }
        rgb
    }
}

/// Encodes an RGB picture as one VP8 key frame: libwebp's lossy format is a RIFF wrapper
/// around exactly that, so the `VP8 ` chunk is taken out of it.
pub(crate) fn vp8_key_frame(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut config =
        webp::WebPConfig::new().map_err(|()| "libwebp: cannot make a config".to_owned())?;
    config.lossless = 0;
    config.quality = 60.0;
    config.method = 0;
    let webp = webp::Encoder::from_rgb(rgb, width, height)
        .encode_advanced(&config)
        .map_err(|e| format!("libwebp: {e:?}"))?;
    vp8_chunk(&webp).map(<[u8]>::to_vec)
}

/// The `VP8 ` chunk of a simple lossy WebP file.
fn vp8_chunk(webp: &[u8]) -> Result<&[u8], String> {
    let bad = || "libwebp produced an unexpected file".to_owned();
    if webp.len() < 20 || &webp[0..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return Err(bad());
    }
    if &webp[12..16] != b"VP8 " {
        return Err(bad());
    }
    let len = u32::from_le_bytes([webp[16], webp[17], webp[18], webp[19]]) as usize;
    webp.get(20..20 + len).ok_or_else(bad)
}

impl FrameSource for TestPattern {
    fn track(&self) -> Track {
        Track::Video
    }

    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, String> {
        let rgb = Self::render(self.n);
        let frame = vp8_key_frame(&rgb, PATTERN_WIDTH, PATTERN_HEIGHT)?;
        let ticks = self.n * 90_000 / PATTERN_FPS;
        self.n += 1;
        Ok(Some((frame, ticks)))
    }
}

/// A 440 Hz tone, 20 ms Opus frames.
struct Tone {
    encoder: opus_pure::OpusEncoder,
    n: u64,
}

impl Tone {
    const FRAME: usize = 960;

    fn new() -> Result<Tone, String> {
        let mut encoder = opus_pure::OpusEncoder::new(48_000, 2, opus_pure::Application::Audio)
            .map_err(|e| format!("opus: {e}"))?;
        encoder.bitrate_bps = 48_000;
        Ok(Tone { encoder, n: 0 })
    }
}

impl FrameSource for Tone {
    fn track(&self) -> Track {
        Track::Audio
    }

    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, String> {
        let start = self.n * Self::FRAME as u64;
        let mut pcm = vec![0f32; Self::FRAME * 2];
        for (i, pair) in pcm.chunks_exact_mut(2).enumerate() {
            let t = (start + i as u64) as f64 / 48_000.0;
            let s = (t * 440.0 * std::f64::consts::TAU).sin() as f32 * 0.2;
            pair[0] = s;
            pair[1] = s;
        }
        let mut out = vec![0u8; opus_pure::MAX_PACKET_BYTES];
        let n = self
            .encoder
            .encode(&pcm, Self::FRAME, &mut out)
            .map_err(|e| format!("opus: {e}"))?;
        out.truncate(n);
        self.n += 1;
        Ok(Some((out, start)))
    }
}

/// Frames of a VP8 IVF file.
struct IvfSource {
    path: PathBuf,
    file: BufReader<File>,
    /// Time base: `scale / rate` seconds per timestamp unit.
    rate: u64,
    scale: u64,
    repeat: bool,
    /// Added to timestamps after each repetition.
    offset: u64,
    last: u64,
    step: u64,
    read_any: bool,
}

impl IvfSource {
    fn open(path: &Path, repeat: bool) -> Result<IvfSource, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut file = BufReader::new(File::open(path).map_err(|e| err(&e))?);
        let mut h = [0u8; 32];
        file.read_exact(&mut h)
            .map_err(|_| err(&"not an IVF file (shorter than its header)"))?;
        if &h[0..4] != b"DKIF" {
            return Err(err(&"not an IVF file (no DKIF signature)"));
        }
        if &h[8..12] != b"VP80" {
            return Err(err(&format!(
                "IVF codec {:?} is not VP8 (VP80)",
                String::from_utf8_lossy(&h[8..12])
            )));
        }
        let header_len = u64::from(u16::from_le_bytes([h[6], h[7]]));
        let rate = u64::from(u32::from_le_bytes([h[16], h[17], h[18], h[19]]));
        let scale = u64::from(u32::from_le_bytes([h[20], h[21], h[22], h[23]]));
        if rate == 0 || scale == 0 {
            return Err(err(&"IVF time base is zero"));
        }
        file.seek(SeekFrom::Start(header_len.max(32)))
            .map_err(|e| err(&e))?;
        Ok(IvfSource {
            path: path.to_owned(),
            file,
            rate,
            scale,
            repeat,
            offset: 0,
            last: 0,
            step: 3000,
            read_any: false,
        })
    }
}

impl FrameSource for IvfSource {
    fn track(&self) -> Track {
        Track::Video
    }

    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let mut h = [0u8; 12];
        match self.file.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                if !self.repeat || !self.read_any {
                    return Ok(None);
                }
                self.offset = self.last + self.step;
                self.file.seek(SeekFrom::Start(32)).map_err(|e| err(&e))?;
                self.file.read_exact(&mut h).map_err(|e| err(&e))?;
            }
            Err(e) => return Err(err(&e)),
        }
        let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if size > MAX_IVF_FRAME {
            return Err(err(&format!("frame of {size} bytes (corrupt file?)")));
        }
        let pts = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
        let mut data = vec![0u8; size];
        self.file
            .read_exact(&mut data)
            .map_err(|_| err(&"truncated frame"))?;
        let ticks = u64::try_from(
            u128::from(pts) * u128::from(self.scale) * 90_000 / u128::from(self.rate),
        )
        .map_err(|_| err(&"timestamp out of range"))?
            + self.offset;
        if self.read_any && ticks > self.last {
            self.step = ticks - self.last;
        }
        self.last = ticks;
        self.read_any = true;
        Ok(Some((data, ticks)))
    }
}

/// Packets of an Ogg Opus file.
struct OggSource {
    path: PathBuf,
    reader: opus_pure::OggOpusReader<BufReader<File>>,
    repeat: bool,
    ticks: u64,
    read_any: bool,
}

impl OggSource {
    fn open(path: &Path, repeat: bool) -> Result<OggSource, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = opus_pure::OggOpusReader::new(BufReader::new(file))
            .map_err(|e| format!("{}: not an Ogg Opus file: {e}", path.display()))?;
        Ok(OggSource {
            path: path.to_owned(),
            reader,
            repeat,
            ticks: 0,
            read_any: false,
        })
    }
}

impl FrameSource for OggSource {
    fn track(&self) -> Track {
        Track::Audio
    }

    fn next_frame(&mut self) -> Result<Option<(Vec<u8>, u64)>, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let packet = match self.reader.read_packet().map_err(|e| err(&e))? {
            Some(p) => p,
            None if self.repeat && self.read_any => {
                self.reader.rewind().map_err(|e| err(&e))?;
                match self.reader.read_packet().map_err(|e| err(&e))? {
                    Some(p) => p,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let samples = opus_pure::packet::samples_48k(&packet.data).map_err(|e| err(&e))?;
        let at = self.ticks;
        self.ticks += samples as u64;
        self.read_any = true;
        Ok(Some((packet.data, at)))
    }
}

/// Writes VP8 frames to an IVF file (time base 1/90000, the RTP clock). The size (from the
/// first key frame) and the frame count in the header are written when the file is finished
/// (or dropped).
pub(crate) struct IvfWriter {
    file: BufWriter<File>,
    frames: u32,
    first: Option<u64>,
    /// Presentation time of the last frame written (90 kHz ticks from the first).
    last: u64,
    size: (u16, u16),
}

impl IvfWriter {
    /// Creates the file.
    pub(crate) fn create(path: &Path) -> io::Result<IvfWriter> {
        let (w, h) = (0u16, 0u16);
        let mut file = BufWriter::new(File::create(path)?);
        let mut hdr = Vec::with_capacity(32);
        hdr.extend_from_slice(b"DKIF");
        hdr.extend_from_slice(&0u16.to_le_bytes());
        hdr.extend_from_slice(&32u16.to_le_bytes());
        hdr.extend_from_slice(b"VP80");
        hdr.extend_from_slice(&w.to_le_bytes());
        hdr.extend_from_slice(&h.to_le_bytes());
        hdr.extend_from_slice(&90_000u32.to_le_bytes());
        hdr.extend_from_slice(&1u32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        file.write_all(&hdr)?;
        Ok(IvfWriter {
            file,
            frames: 0,
            first: None,
            last: 0,
            size: (0, 0),
        })
    }

    /// Appends a frame with its RTP time (90 kHz).
    pub(crate) fn write(&mut self, ticks: u64, data: &[u8]) -> io::Result<()> {
        if self.frames == 0
            && let Some(size) = vp8_size(data)
        {
            self.size = size;
        }
        let first = *self.first.get_or_insert(ticks);
        let pts = ticks.saturating_sub(first);
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("frame too large"))?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(&pts.to_le_bytes())?;
        self.file.write_all(data)?;
        self.frames += 1;
        self.last = self.last.max(pts);
        Ok(())
    }

    /// Frames written.
    pub(crate) fn frames(&self) -> u32 {
        self.frames
    }

    /// The duration written into the header: the span of the frames' times plus one
    /// average frame interval (as FFmpeg's own IVF muxer computes it), in 90 kHz ticks.
    pub(crate) fn duration_ticks(&self) -> u32 {
        let frames = u64::from(self.frames);
        let span = match frames {
            0 => 0,
            1 => 3_000, // one frame at 30 fps
            n => self.last + self.last / (n - 1),
        };
        u32::try_from(span).unwrap_or(u32::MAX)
    }

    /// Writes the picture size and the duration into the header and flushes.
    ///
    /// Header bytes 24..28 hold the duration in time-base units (1/90,000 s), which is how
    /// FFmpeg reads and writes them (libvpx's tools call the field a frame count and do not
    /// rely on it); the frame count is [`IvfWriter::frames`].
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let duration = self.duration_ticks();
        let f = self.file.get_mut();
        f.seek(SeekFrom::Start(12))?;
        f.write_all(&self.size.0.to_le_bytes())?;
        f.write_all(&self.size.1.to_le_bytes())?;
        f.seek(SeekFrom::Start(24))?;
        f.write_all(&duration.to_le_bytes())?;
        f.seek(SeekFrom::End(0))?;
        f.flush()
    }
}

impl Drop for IvfWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Whether a VP8 frame is a key frame (RFC 6386 §9.1: bit 0 of the frame tag is 0).
pub(crate) fn vp8_is_key_frame(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// Width and height of a VP8 key frame.
pub(crate) fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !vp8_is_key_frame(frame) {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// Writes Opus packets to an Ogg Opus file (stereo header, 48 kHz).
pub(crate) struct OggWriter {
    writer: Option<opus_pure::OggOpusWriter<BufWriter<File>>>,
    frames: u32,
}

impl OggWriter {
    pub(crate) fn create(path: &Path) -> io::Result<OggWriter> {
        let head = opus_pure::OpusHead::new(2, 48_000).map_err(io::Error::other)?;
        let writer = opus_pure::OggOpusWriter::new(BufWriter::new(File::create(path)?), head)
            .map_err(io::Error::other)?;
        Ok(OggWriter {
            writer: Some(writer),
            frames: 0,
        })
    }

    /// Appends a packet; a packet that is not valid Opus is an error (and is not written).
    pub(crate) fn write(&mut self, packet: &[u8]) -> io::Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Err(io::Error::other("finished"));
        };
        w.write_packet(packet).map_err(io::Error::other)?;
        self.frames += 1;
        Ok(())
    }

    pub(crate) fn frames(&self) -> u32 {
        self.frames
    }

    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.take() {
            let mut inner = w.finish().map_err(io::Error::other)?;
            inner.flush()?;
        }
        Ok(())
    }
}

impl Drop for OggWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_pattern_frames_are_vp8_key_frames_of_the_pattern_size() {
        let mut p = TestPattern::default();
        for i in 0..3 {
            let (frame, ticks) = p.next_frame().unwrap().unwrap();
            assert!(vp8_is_key_frame(&frame));
            assert_eq!(vp8_size(&frame), Some((320, 240)));
            assert_eq!(ticks, i * 6000);
        }
    }

    #[test]
    fn tone_packets_are_20ms_opus() {
        let mut t = Tone::new().unwrap();
        let (p, at) = t.next_frame().unwrap().unwrap();
        assert_eq!(at, 0);
        assert_eq!(opus_pure::packet::samples_48k(&p).unwrap(), 960);
        let (_, at) = t.next_frame().unwrap().unwrap();
        assert_eq!(at, 960);
    }

    #[test]
    fn ivf_round_trip_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("sb-ivf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ivf");
        let mut p = TestPattern::default();
        let frames: Vec<_> = (0..4).map(|_| p.next_frame().unwrap().unwrap()).collect();
        {
            let mut w = IvfWriter::create(&path).unwrap();
            for (f, t) in &frames {
                w.write(t + 1000, f).unwrap();
            }
        }
        // The header carries the duration in 1/90,000 s (FFmpeg's reading): 4 frames at
        // 15 fps span 0.2667 s plus one frame interval.
        let header = std::fs::read(&path).unwrap();
        assert_eq!(
            u32::from_le_bytes(header[24..28].try_into().unwrap()),
            24_000
        );
        let mut r = IvfSource::open(&path, false).unwrap();
        for (f, t) in &frames {
            let (g, u) = r.next_frame().unwrap().unwrap();
            assert_eq!(&g, f);
            assert_eq!(u, *t);
        }
        assert!(r.next_frame().unwrap().is_none());
        // Repeating continues the timeline.
        let mut r = IvfSource::open(&path, true).unwrap();
        for _ in 0..4 {
            r.next_frame().unwrap();
        }
        assert_eq!(r.next_frame().unwrap().unwrap().1, 4 * 6000);

        std::fs::write(dir.join("bad.ivf"), b"not an ivf file at all, no sir....").unwrap();
        let e = IvfSource::open(&dir.join("bad.ivf"), false).err().unwrap();
        assert!(e.contains("no DKIF"), "{e}");
        let mut vp9 = std::fs::read(&path).unwrap();
        vp9[8..12].copy_from_slice(b"VP90");
        std::fs::write(dir.join("vp9.ivf"), &vp9).unwrap();
        let e = IvfSource::open(&dir.join("vp9.ivf"), false).err().unwrap();
        assert!(e.contains("not VP8"), "{e}");
        // A corrupt frame size is an error, not a huge allocation.
        let mut big = std::fs::read(&path).unwrap();
        big[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(dir.join("big.ivf"), &big).unwrap();
        let mut r = IvfSource::open(&dir.join("big.ivf"), false).unwrap();
        assert!(r.next_frame().unwrap_err().contains("corrupt"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ogg_round_trip() {
        let dir = std::env::temp_dir().join(format!("sb-ogg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ogg");
        let mut t = Tone::new().unwrap();
        let packets: Vec<_> = (0..10)
            .map(|_| t.next_frame().unwrap().unwrap().0)
            .collect();
        {
            let mut w = OggWriter::create(&path).unwrap();
            for p in &packets {
                w.write(p).unwrap();
            }
            assert!(w.write(&[]).is_err(), "an empty packet is not Opus");
        }
        let mut r = OggSource::open(&path, false).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let (q, at) = r.next_frame().unwrap().unwrap();
            assert_eq!(&q, p);
            assert_eq!(at, i as u64 * 960);
        }
        assert!(r.next_frame().unwrap().is_none());
        assert!(OggSource::open(&dir.join("missing.ogg"), false).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
