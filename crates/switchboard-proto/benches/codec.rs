//! Codec micro-benchmarks: decoding client frames and encoding server messages, for the
//! messages on the relay path (ICE candidates, SDP) of Ant Media P2P and PeerJS.
//! `cargo bench -p switchboard-proto`; results in docs/BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_proto::antmedia::{ClientMessage, decode};
use switchboard_proto::cluster::AmRelayed;
use switchboard_proto::peerjs;

const CANDIDATE: &str = r#"{"command":"takeCandidate","streamId":"room-1","label":0,"id":"0","candidate":"candidate:842163049 1 udp 1677729535 198.51.100.23 54400 typ srflx raddr 10.0.0.2 rport 54400 generation 0 ufrag 7sFv network-cost 999"}"#;

/// A 4 KiB browser offer (audio, video, data), as one JSON string.
fn offer() -> String {
    let mut sdp =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while sdp.len() < 4096 {
        sdp.push_str(
            "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\n",
        );
    }
    serde_json::json!({"command":"takeConfiguration","streamId":"room-1","type":"offer","sdp":sdp})
        .to_string()
}

fn antmedia(c: &mut Criterion) {
    let offer = offer();
    let mut g = c.benchmark_group("antmedia");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode takeCandidate", |b| {
        b.iter(|| decode(black_box(CANDIDATE)))
    });
    g.bench_function("decode takeConfiguration 4 KiB", |b| {
        b.iter(|| decode(black_box(&offer)))
    });
    // What a partner gets: the relayed part of the message, in the same room.
    let relay = |m: ClientMessage| match m {
        ClientMessage::TakeCandidate {
            stream_id,
            label,
            id,
            candidate,
            ..
        } => (
            stream_id,
            AmRelayed::TakeCandidate {
                label,
                id,
                candidate,
            },
        ),
        ClientMessage::TakeConfiguration {
            stream_id,
            kind,
            sdp,
            ..
        } => (stream_id, AmRelayed::TakeConfiguration { kind, sdp }),
        _ => unreachable!("only relayed messages here"),
    };
    let relay = |m| {
        let (room, msg) = relay(m);
        msg.into_server_message(room)
    };
    let cand = relay(decode(CANDIDATE).unwrap());
    let conf = relay(decode(&offer).unwrap());
    g.bench_function("encode takeCandidate", |b| {
        b.iter(|| black_box(&cand).encode())
    });
    g.bench_function("encode takeConfiguration 4 KiB", |b| {
        b.iter(|| black_box(&conf).encode())
    });
    g.bench_function("decode error (not JSON)", |b| {
        b.iter(|| decode(black_box("{nope")))
    });
    g.finish();
}

fn peerjs_codec(c: &mut Criterion) {
    let text = r#"{"type":"CANDIDATE","dst":"peer-b","payload":{"candidate":{"candidate":"candidate:842163049 1 udp 1677729535 198.51.100.23 54400 typ srflx raddr 10.0.0.2 rport 54400 generation 0","sdpMid":"0","sdpMLineIndex":0},"type":"data","connectionId":"dc_1"}}"#;
    let mut g = c.benchmark_group("peerjs");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode CANDIDATE", |b| {
        b.iter(|| peerjs::decode(black_box(text)))
    });
    g.finish();
}

criterion_group!(benches, antmedia, peerjs_codec);
criterion_main!(benches);
