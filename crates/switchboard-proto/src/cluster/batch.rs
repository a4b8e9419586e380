//! The binary batch: how a node publishes messages on another node's channel, and how it
//! reads what it gets (see [`Batch::encode`] for the layout).

use serde::{Deserialize, Serialize};

use super::{Envelope, NodeId, NodeMessage, PjArrived};
use crate::peerjs::PjType;
use crate::{App, StreamId};

/// A message for one client, rendered: the exact text of the WebSocket frame it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Frame(Box<str>);

impl Frame {
    /// `bytes` as a frame; serializers write UTF-8, so the fallback (an empty object, which
    /// every client ignores) is never taken.
    pub(super) fn from_utf8(bytes: Vec<u8>) -> Self {
        Self(
            String::from_utf8(bytes)
                .unwrap_or_else(|_| "{}".to_owned())
                .into_boxed_str(),
        )
    }

    /// Its text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its text, without copying.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0.into_string()
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a frame a node rendered).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The first byte of a binary [`Batch`]: its format's version. JSON starts with `{`.
pub const BATCH_V1: u8 = 1;

/// A record of a binary [`Batch`]: a [`NodeMessage`]'s JSON.
pub(super) const REC_MSG: u8 = b'M';
/// A record of a binary [`Batch`]: an Ant Media relay's app, room, receiver, sender and
/// frame.
pub(super) const REC_AM: u8 = b'A';
/// A record of a binary [`Batch`]: a PeerJS relay's type, ids, `back` and frame.
pub(super) const REC_PJ: u8 = b'P';

/// Several messages from one node in one publication: a node coalesces the messages it
/// sends to one node in one round trip ([`Batch::encode`], binary). The registry's scripts
/// publish JSON instead: `{"msgs":[...],"node":...}`, or one [`Envelope`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The messages, in order.
    pub msgs: Vec<NodeMessage>,
    /// The node that sent them.
    pub node: NodeId,
}

impl Batch {
    /// The publication of `msgs` from `node`, written in place into one buffer sized up
    /// front (no buffer per message, no growing copies). Numbers are little-endian; a
    /// string is its length (`u32`) and its UTF-8 bytes:
    ///
    /// ```text
    /// BATCH_V1 (u8), node id length (u8), node id
    /// then per message, by its first byte:
    ///   'M' JSON                                       any message, as JSON
    ///   'A' app room to (u64) from (u64) frame         NodeMessage::AmRelay / AmFrame
    ///   'P' type src dst back (0, or 1 and u64) frame  NodeMessage::PjRelay / PjFrame
    /// ```
    ///
    /// The frame of an `A` or `P` record is the receiver's `takeConfiguration` /
    /// `takeCandidate` / `peerMessageCommand`, or PeerJS message, rendered; the receiver
    /// reads those records as [`NodeMessage::AmFrame`] and [`NodeMessage::PjFrame`].
    #[must_use]
    pub fn encode<'a>(
        node: &NodeId,
        msgs: impl IntoIterator<Item = &'a NodeMessage> + Clone,
    ) -> Vec<u8> {
        let hint: usize = msgs.clone().into_iter().map(NodeMessage::size_hint).sum();
        let mut out = Vec::with_capacity(hint + 2 + node.as_str().len());
        out.push(BATCH_V1);
        // Node ids are at most MAX_NODE_ID_LEN (64) bytes.
        out.push(u8::try_from(node.as_str().len()).unwrap_or(u8::MAX));
        out.extend_from_slice(node.as_str().as_bytes());
        for m in msgs {
            match m {
                NodeMessage::AmRelay {
                    app,
                    room,
                    to,
                    from,
                    msg,
                } => {
                    am_head(&mut out, app, room, *to, *from);
                    let at = reserve_len(&mut out);
                    msg.write_frame(room, &mut out);
                    put_len(&mut out, at);
                }
                NodeMessage::AmFrame {
                    app,
                    room,
                    to,
                    from,
                    frame,
                } => {
                    am_head(&mut out, app, room, *to, *from);
                    put_str(&mut out, frame.as_str());
                }
                NodeMessage::PjRelay(r) => {
                    pj_head(&mut out, r.kind, &r.src, &r.dst, r.back);
                    let at = reserve_len(&mut out);
                    crate::peerjs::write_relay(
                        &mut out,
                        r.kind,
                        &r.src,
                        &r.dst,
                        r.payload.as_ref(),
                    );
                    put_len(&mut out, at);
                }
                NodeMessage::PjFrame(m) => {
                    pj_head(&mut out, m.kind, &m.src, &m.dst, m.back);
                    put_str(&mut out, m.frame.as_str());
                }
                other => {
                    out.push(REC_MSG);
                    let at = reserve_len(&mut out);
                    // Names, raw JSON values and numbers always serialize.
                    let _ = serde_json::to_writer(&mut out, other);
                    put_len(&mut out, at);
                }
            }
        }
        out
    }

    /// Reads what a node published: a binary batch ([`Batch::encode`]), a JSON batch or one
    /// [`Envelope`].
    ///
    /// # Errors
    /// When it is none of them, in this version's shape (a binary batch of another version
    /// included: [`BatchError::Version`]).
    pub fn read(bytes: &[u8]) -> Result<Self, BatchError> {
        match bytes.first() {
            Some(&BATCH_V1) => Self::read_binary(&bytes[1..]),
            Some(b'{') => {
                let text = std::str::from_utf8(bytes).map_err(|_| BatchError::Malformed)?;
                if text.starts_with(r#"{"msgs":"#) {
                    serde_json::from_str(text).map_err(|_| BatchError::Malformed)
                } else {
                    let env = Envelope::from_json(text).map_err(|_| BatchError::Malformed)?;
                    Ok(Self {
                        msgs: vec![env.msg],
                        node: env.node,
                    })
                }
            }
            Some(&v) if v < b' ' => Err(BatchError::Version(v)),
            _ => Err(BatchError::Malformed),
        }
    }

    fn read_binary(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut r = Reader(bytes);
        let len = r.next_u8().ok_or(BatchError::Malformed)?;
        let node = std::str::from_utf8(r.take(usize::from(len))?)
            .ok()
            .and_then(|n| NodeId::new(n).ok())
            .ok_or(BatchError::Malformed)?;
        let mut msgs = Vec::new();
        while let Some(kind) = r.next_u8() {
            let bad = BatchError::Malformed;
            msgs.push(match kind {
                REC_MSG => serde_json::from_str(r.str()?).map_err(|_| bad)?,
                REC_AM => NodeMessage::AmFrame {
                    app: App::new(r.str()?).map_err(|_| bad)?,
                    room: StreamId::new(r.str()?).map_err(|_| bad)?,
                    to: r.u64()?,
                    from: r.u64()?,
                    frame: Frame(r.str()?.into()),
                },
                REC_PJ => NodeMessage::PjFrame(PjArrived {
                    kind: PjType::parse(r.str()?).ok_or(BatchError::Malformed)?,
                    src: r.str()?.into(),
                    dst: r.str()?.into(),
                    back: match r.next_u8() {
                        Some(0) => None,
                        Some(1) => Some(r.u64()?),
                        _ => return Err(BatchError::Malformed),
                    },
                    frame: Frame(r.str()?.into()),
                }),
                _ => return Err(BatchError::Malformed),
            });
        }
        Ok(Self { msgs, node })
    }
}

/// Why a publication on a node's channel could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Not in a shape this version reads.
    Malformed,
    /// A binary batch of another version (its first byte): a node of another release.
    Version(u8),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed"),
            Self::Version(v) => write!(f, "batch format version {v}, this node reads {BATCH_V1}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// The head of an Ant Media relay's record.
fn am_head(out: &mut Vec<u8>, app: &App, room: &StreamId, to: u64, from: u64) {
    out.push(REC_AM);
    put_str(out, app.as_str());
    put_str(out, room.as_str());
    out.extend_from_slice(&to.to_le_bytes());
    out.extend_from_slice(&from.to_le_bytes());
}

/// The head of a PeerJS relay's record.
fn pj_head(out: &mut Vec<u8>, kind: PjType, src: &str, dst: &str, back: Option<u64>) {
    out.push(REC_PJ);
    put_str(out, kind.as_str());
    put_str(out, src);
    put_str(out, dst);
    match back {
        None => out.push(0),
        Some(conn) => {
            out.push(1);
            out.extend_from_slice(&conn.to_le_bytes());
        }
    }
}

/// A string after its length.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let at = reserve_len(out);
    out.extend_from_slice(s.as_bytes());
    put_len(out, at);
}

/// Leaves room for a length; returns where.
fn reserve_len(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Writes the length of what follows `at` into the four bytes before it.
fn put_len(out: &mut [u8], at: usize) {
    // A publication is far below 4 GiB (client frames are bounded).
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at - 4..at].copy_from_slice(&len.to_le_bytes());
}

/// Reads a binary batch's fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if n > self.0.len() {
            return Err(BatchError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next byte; None at the end.
    fn next_u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let b = self.take(8)?;
        let mut v = [0; 8];
        v.copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    /// A string after its length (UTF-8 checked).
    fn str(&mut self) -> Result<&'a str, BatchError> {
        let n = usize::try_from(self.u32()?).map_err(|_| BatchError::Malformed)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| BatchError::Malformed)
    }
}
