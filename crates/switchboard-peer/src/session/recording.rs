//! Media: frames from the local sources out, received frames into the recordings.

use super::*;

impl Session {
    /// Closes the recordings (header frame counts) and reports them.
    pub(crate) async fn finish_recordings(&mut self) {
        let video = self.av.rec_video.take().map(|(mut w, path)| {
            let done = w.finish();
            (Track::Video, path, done, w.frames())
        });
        let audio = self.av.rec_audio.take().map(|(mut w, path)| {
            let done = w.finish();
            (Track::Audio, path, done, w.frames())
        });
        for (track, path, done, frames) in video.into_iter().chain(audio) {
            if let Err(e) = done {
                tracing::warn!("finishing {}: {e}", path.display());
            }
            if frames == 0 {
                // Headers alone are not a playable file (FFmpeg rejects an Ogg Opus stream
                // without packets): nothing arrived, so nothing is kept.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::debug!("removing the empty {}: {e}", path.display());
                }
            }
            let frames = u64::from(frames);
            self.emit(PeerEvent::Recorded {
                track,
                path,
                frames,
            })
            .await;
        }
    }

    /// A frame (or the end) from a media source: written to the connection's track.
    pub(crate) async fn on_source(&mut self, msg: SourceMsg) -> Result<(), PeerError> {
        let frame = match msg {
            SourceMsg::Frame(f) => f,
            SourceMsg::End {
                track,
                frames,
                error,
            } => {
                if let Some(e) = &error {
                    tracing::warn!("{track} source stopped: {e}");
                }
                self.emit(PeerEvent::MediaEnded {
                    track,
                    frames,
                    error,
                })
                .await;
                return Ok(());
            }
        };
        if !self.av.connected {
            return Ok(());
        }
        let Some(rtc) = self.rtc.as_mut() else {
            return Ok(());
        };
        let Some(&(mid, _)) = self.av.mids.iter().find(|(_, t)| *t == frame.track) else {
            return Ok(());
        };
        // Only on an m-line negotiated for sending: str0m accepts a frame for a receive-only
        // m-line and then fails the whole session when it packetizes it (`NoSenderSource`).
        if !rtc.media(mid).is_some_and(|m| m.direction().is_sending()) {
            return Ok(());
        }
        let Some(writer) = rtc.writer(mid) else {
            // The other side does not receive this track.
            return Ok(());
        };
        let (codec, freq) = match frame.track {
            Track::Video => (Codec::Vp8, Frequency::NINETY_KHZ),
            Track::Audio => (Codec::Opus, Frequency::FORTY_EIGHT_KHZ),
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return Ok(());
        };
        match writer.write(
            pt,
            Instant::now(),
            MediaTime::new(frame.ticks, freq),
            frame.data,
        ) {
            Ok(()) => match frame.track {
                Track::Video => self.stats.video_frames_sent += 1,
                Track::Audio => self.stats.audio_frames_sent += 1,
            },
            Err(e) => tracing::debug!("{} frame not sent: {e}", frame.track),
        }
        Ok(())
    }

    /// A whole frame of the other side's media.
    pub(crate) async fn on_media_data(&mut self, d: str0m::media::MediaData) {
        let Some(&(mid, track)) = self.av.mids.iter().find(|(m, _)| *m == d.mid) else {
            tracing::debug!("media for unknown m-line {}", d.mid);
            return;
        };
        let codec = d.params.spec().codec;
        let i = track as usize;
        if !self.av.media_seen[i] {
            self.av.media_seen[i] = true;
            self.emit(PeerEvent::MediaStarted {
                track,
                codec: codec.to_string().to_lowercase(),
            })
            .await;
        }
        match track {
            Track::Video => {
                self.stats.video_frames_received += 1;
                let Some((w, path)) = self.av.rec_video.as_mut() else {
                    return;
                };
                if codec != Codec::Vp8 {
                    return;
                }
                if w.frames() == 0 && !media::vp8_is_key_frame(&d.data) {
                    // A recording starts with a key frame: ask for one (at most once a second).
                    let now = Instant::now();
                    if self
                        .av
                        .keyframe_asked
                        .is_none_or(|t| now - t > Duration::from_secs(1))
                    {
                        self.av.keyframe_asked = Some(now);
                        if let Some(rtc) = self.rtc.as_mut()
                            && let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, None)
                        {
                            rx.request_keyframe(KeyframeRequestKind::Pli);
                        }
                    }
                    return;
                }
                let ticks = d.time.rebase(Frequency::NINETY_KHZ).numer();
                if let Err(e) = w.write(ticks, &d.data) {
                    tracing::warn!("recording to {}: {e}", path.display());
                }
            }
            Track::Audio => {
                self.stats.audio_frames_received += 1;
                let Some((w, path)) = self.av.rec_audio.as_mut() else {
                    return;
                };
                if codec != Codec::Opus {
                    return;
                }
                if let Err(e) = w.write(&d.data) {
                    tracing::debug!("not recorded to {}: {e}", path.display());
                }
            }
        }
    }
}
