//! Files over the data channel: one channel per file (`sb-file:<id>`), a JSON header,
//! 16 KiB chunks, a SHA-256 the receiver checks; received names made safe, never overwriting.

use super::*;

pub(crate) fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&h.finalize()), size))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name safe to create in the receive directory and to print: the last path
/// component, without control and bidirectional-override characters (terminal escapes,
/// "exe.txt" shown as "txt.exe") or characters some file system refuses (`<>:"|?*`), no
/// leading dots, no trailing dots or spaces, not a Windows device name (`CON`, `NUL`,
/// `COM1`, ...), at most 128 characters; "file" if nothing is left.
pub(crate) fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let clean: String = base
        .chars()
        .filter(|&c| {
            !c.is_control() && !bidi(c) && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
        })
        .collect::<String>()
        .trim_start_matches(['.', ' '])
        .chars()
        .take(128)
        .collect::<String>()
        .trim_end_matches(['.', ' '])
        .to_owned();
    if clean.is_empty() {
        return "file".to_owned();
    }
    let stem = clean.split('.').next().unwrap_or("").to_ascii_uppercase();
    let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if device { format!("_{clean}") } else { clean }
}

/// Whether `size` bytes fit in `dir`'s file system with [`DISK_RESERVE`] left over. When the
/// free space cannot be read, the file is accepted (the size limit still holds).
pub(crate) fn fits_on_disk(dir: &Path, size: u64) -> bool {
    fs4::available_space(dir).map_or(true, |free| fits(size, free))
}

pub(crate) fn fits(size: u64, available: u64) -> bool {
    size.checked_add(DISK_RESERVE)
        .is_some_and(|n| n <= available)
}

/// Creates `dir/name`, or `dir/name (1)`, ... up to `(9999)`, never opening a file that
/// exists (create-new): a peer cannot make this side overwrite anything, even by sending the
/// colliding names first.
pub(crate) fn create_unique(dir: &Path, name: &str) -> io::Result<(PathBuf, std::fs::File)> {
    let candidates =
        std::iter::once(name.to_owned()).chain((1..10_000).map(|i| format!("{name} ({i})")));
    for candidate in candidates {
        let path = dir.join(candidate);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{name} and 9,999 numbered variants exist already"),
    ))
}

/// A [`PeerEvent::FileProgress`] for a transfer at `bytes` of `size`, at most one per
/// [`PROGRESS_STEP`] since `reported` (which it moves up). A sender also reports its last
/// byte; a receiver leaves that to [`PeerEvent::FileReceived`].
pub(super) fn progress(
    (id, name): (&str, &str),
    bytes: u64,
    size: u64,
    reported: &mut u64,
    sending: bool,
) -> Option<PeerEvent> {
    let due = bytes - *reported >= PROGRESS_STEP;
    if !(if sending {
        due || bytes == size
    } else {
        due && bytes < size
    }) {
        return None;
    }
    *reported = bytes;
    Some(PeerEvent::FileProgress {
        id: id.to_owned(),
        name: name.to_owned(),
        bytes,
        size,
        sending,
    })
}

impl Session {
    pub(crate) async fn start_file(
        &mut self,
        path: PathBuf,
        sha256: String,
        size: u64,
        id: String,
    ) -> Result<(), PeerError> {
        let name = path
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let fail = |reason: String| PeerEvent::FileFailed {
            id: id.clone(),
            name: name.clone(),
            reason,
        };
        let Some(rtc) = self.rtc.as_mut().filter(|_| self.channel.is_some()) else {
            self.emit(fail("not connected".into())).await;
            return Ok(());
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.emit(fail(e.to_string())).await;
                return Ok(());
            }
        };
        let channel = rtc.direct_api().create_data_channel(ChannelConfig {
            label: format!("sb-file:{id}"),
            ..Default::default()
        });
        self.files.sends.push(FileSend {
            id,
            channel,
            name,
            size,
            sha256,
            file,
            open: false,
            sent: 0,
            reported: 0,
        });
        Ok(())
    }

    pub(crate) async fn on_file_channel_open(
        &mut self,
        id: ChannelId,
        label: &str,
    ) -> Result<(), PeerError> {
        if let Some(f) = self.files.sends.iter_mut().find(|f| f.channel == id) {
            f.open = true;
            let header = json!({"name": f.name, "size": f.size, "type": "application/octet-stream", "sha256": f.sha256});
            if let Some(mut ch) = self.rtc.as_mut().and_then(|r| r.channel(id)) {
                ch.set_buffered_amount_low_threshold(FILE_HIGH_WATER / 4);
                let _ = ch
                    .write(false, header.to_string().as_bytes())
                    .map_err(|e| PeerError::Rtc(e.to_string()))?;
            }
            return Ok(());
        }
        if let Some(tid) = label.strip_prefix("sb-file:") {
            self.files.recvs.push(FileRecv {
                id: tid.to_owned(),
                channel: id,
                state: None,
            });
        }
        Ok(())
    }

    /// Data on a file channel; `false` when `id` is not one.
    pub(crate) async fn on_file_data(
        &mut self,
        id: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<bool, PeerError> {
        if let Some(pos) = self.files.sends.iter().position(|f| f.channel == id) {
            let f = self.files.sends.remove(pos);
            let ev = if !binary && data == b"done" && f.sent == f.size {
                PeerEvent::FileSent {
                    id: f.id,
                    name: f.name,
                    size: f.size,
                }
            } else {
                PeerEvent::FileFailed {
                    id: f.id,
                    name: f.name,
                    reason: format!("the receiver answered {:?}", String::from_utf8_lossy(data)),
                }
            };
            self.close_channel(id);
            self.emit(ev).await;
            return Ok(true);
        }
        let Some(pos) = self.files.recvs.iter().position(|r| r.channel == id) else {
            return Ok(false);
        };
        let mut event = None;
        let mut reply: Option<&[u8]> = None;
        let mut done = false;
        {
            let r = &mut self.files.recvs[pos];
            match &mut r.state {
                None => {
                    let meta: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
                    let name =
                        safe_name(meta.get("name").and_then(Value::as_str).unwrap_or("file"));
                    let size = meta.get("size").and_then(Value::as_u64);
                    let fail = |reason: &str| PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: name.clone(),
                        reason: reason.to_owned(),
                    };
                    match (&self.files.receive_dir, size) {
                        (None, _) => {
                            event = Some(fail("incoming files are refused (no receive directory)"));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (_, None) => {
                            event = Some(fail("bad file header"));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(_), Some(size)) if size > self.files.max_file_size => {
                            event = Some(fail(&format!(
                                "{size} bytes is more than the {} bytes accepted (max_file_size)",
                                self.files.max_file_size
                            )));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(dir), Some(size)) if !fits_on_disk(dir, size) => {
                            event = Some(fail(&format!(
                                "{size} bytes is more than the free space in {}",
                                dir.display()
                            )));
                            reply = Some(b"reject");
                            done = true;
                        }
                        (Some(dir), Some(size)) => match create_unique(dir, &name) {
                            Ok((path, file)) => {
                                r.state = Some(RecvState {
                                    name,
                                    size,
                                    expect: meta
                                        .get("sha256")
                                        .and_then(Value::as_str)
                                        .map(str::to_owned),
                                    path,
                                    file,
                                    hasher: Sha256::new(),
                                    received: 0,
                                    reported: 0,
                                });
                            }
                            Err(e) => {
                                event = Some(fail(&format!(
                                    "cannot create {name} in {}: {e}",
                                    dir.display()
                                )));
                                reply = Some(b"reject");
                                done = true;
                            }
                        },
                    }
                }
                Some(st) if binary && st.received + data.len() as u64 > st.size => {
                    // More than announced: the transfer is refused, not the disk filled.
                    let _ = std::fs::remove_file(&st.path);
                    event = Some(PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        reason: format!(
                            "the sender sent more than the {} bytes announced",
                            st.size
                        ),
                    });
                    reply = Some(b"reject");
                    done = true;
                }
                Some(st) => {
                    if binary {
                        st.file.write_all(data)?;
                        st.hasher.update(data);
                        st.received += data.len() as u64;
                        event = progress(
                            (&r.id, &st.name),
                            st.received,
                            st.size,
                            &mut st.reported,
                            false,
                        );
                    }
                }
            }
            if let Some(st) = &mut r.state
                && st.received >= st.size
            {
                st.file.flush()?;
                let sha256 = hex(&std::mem::take(&mut st.hasher).finalize());
                let verified = st.expect.as_ref().map(|e| e.eq_ignore_ascii_case(&sha256));
                done = true;
                if st.received != st.size || verified == Some(false) {
                    reply = Some(b"reject");
                    event = Some(PeerEvent::FileFailed {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        reason: format!(
                            "got {} of {} bytes, sha256 {sha256}{}",
                            st.received,
                            st.size,
                            st.expect
                                .as_ref()
                                .map(|e| format!(", expected {e}"))
                                .unwrap_or_default()
                        ),
                    });
                } else {
                    reply = Some(b"done");
                    event = Some(PeerEvent::FileReceived {
                        id: r.id.clone(),
                        name: st.name.clone(),
                        path: st.path.clone(),
                        size: st.size,
                        sha256,
                        verified,
                    });
                }
            }
        }
        if let Some(reply) = reply
            && let Some(mut ch) = self.rtc.as_mut().and_then(|rtc| rtc.channel(id))
        {
            let _ = ch
                .write(false, reply)
                .map_err(|e| PeerError::Rtc(e.to_string()))?;
            if !self.files.replied.contains(&id) {
                // Bounded: an answer older than the last 64 was acknowledged long ago.
                if self.files.replied.len() >= 64 {
                    self.files.replied.remove(0);
                }
                self.files.replied.push(id);
            }
        }
        if done {
            self.files.recvs.remove(pos);
        }
        if let Some(e) = event {
            self.emit(e).await;
        }
        Ok(true)
    }

    pub(crate) fn close_channel(&mut self, id: ChannelId) {
        if let Some(rtc) = self.rtc.as_mut() {
            rtc.direct_api().close_data_channel(id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{DISK_RESERVE, create_unique, fits, fits_on_disk, safe_name};

    #[test]
    fn a_file_must_fit_in_the_free_space_with_a_reserve() {
        assert!(fits(1000, DISK_RESERVE + 1000));
        assert!(!fits(1001, DISK_RESERVE + 1000));
        assert!(!fits(u64::MAX, u64::MAX));
        // The real file system: a small file fits, more than the disk can hold does not.
        let dir = std::env::temp_dir();
        assert!(fits_on_disk(&dir, 1));
        let total = fs4::total_space(&dir).unwrap();
        assert!(!fits_on_disk(&dir, total));
    }

    #[test]
    fn received_names_are_plain_file_names_on_every_system() {
        for (given, safe) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Windows\\win.ini", "win.ini"),
            ("\u{202e}fdp.exe", "fdp.exe"),
            ("bell\u{7}\u{1b}[31mred", "bell[31mred"),
            ("...hidden", "hidden"),
            ("trailing. . ", "trailing"),
            ("a<b>c:d\"e|f?g*h", "abcdefgh"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
            ("com7.log", "_com7.log"),
            ("community.txt", "community.txt"),
            ("", "file"),
            ("/", "file"),
        ] {
            assert_eq!(safe_name(given), safe, "{given:?}");
        }
        assert_eq!(safe_name(&"x".repeat(500)).chars().count(), 128);
    }

    /// Before: with `name (1)` … `name (9999)` taken, the original name was opened with
    /// truncation. Now nothing that exists is ever opened.
    #[test]
    fn receiving_never_overwrites_a_file() {
        let dir = std::env::temp_dir().join(format!("sb-unique-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"keep me").unwrap();
        let (p1, _) = create_unique(&dir, "a.txt").unwrap();
        assert_eq!(p1, dir.join("a.txt (1)"));
        for i in 2..10_000 {
            std::fs::write(dir.join(format!("a.txt ({i})")), b"").unwrap();
        }
        assert!(create_unique(&dir, "a.txt").is_err());
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
