//! Hub micro-benchmarks: the cost of one relayed message inside the sans-IO hub (lookup,
//! output), of a join/leave cycle, and of the same for 10,000 rooms.
//! `cargo bench -p switchboard-core`; results in docs/BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_core::{App, Config, ConnId, Hub};
use switchboard_proto::antmedia::decode;

const CANDIDATE: &str = r#"{"command":"takeCandidate","streamId":"r","label":0,"id":"0","candidate":"candidate:842163049 1 udp 1677729535 198.51.100.23 54400 typ srflx raddr 10.0.0.2 rport 54400 generation 0"}"#;

/// A hub with `rooms` full rooms (two peers each); returns it and the first pair's ids.
fn hub_with(rooms: u64) -> Hub {
    let mut hub = Hub::new(Config::default());
    let now = Instant::now();
    let app = App::new("App").unwrap();
    for r in 0..rooms {
        for side in 0..2 {
            let conn = ConnId(2 * r + side + 1);
            hub.handle_am_connect(conn, app.clone(), None, None, None, now);
            let room = if r == 0 {
                "r".to_owned()
            } else {
                format!("room-{r}")
            };
            let join = format!(r#"{{"command":"join","streamId":"{room}"}}"#);
            hub.handle_am_message(conn, decode(&join), now);
        }
    }
    while hub.poll_output().is_some() {}
    hub
}

fn relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(1));
    let now = Instant::now();
    for rooms in [1u64, 10_000] {
        let mut hub = hub_with(rooms);
        let msg = decode(CANDIDATE).unwrap();
        g.bench_function(format!("relay takeCandidate ({rooms} rooms)"), |b| {
            b.iter_batched(
                || msg.clone(),
                |m| {
                    hub.handle_am_message(ConnId(1), Ok(m), now);
                    black_box(hub.poll_output())
                },
                BatchSize::SmallInput,
            )
        });
    }
    let mut hub = hub_with(10_000);
    let app = App::new("App").unwrap();
    let mut next = 1_000_000u64;
    g.bench_function("connect, join, leave, disconnect (10,000 rooms)", |b| {
        b.iter(|| {
            next += 1;
            let conn = ConnId(next);
            hub.handle_am_connect(conn, app.clone(), None, None, None, now);
            hub.handle_am_message(
                conn,
                decode(r#"{"command":"join","streamId":"churn"}"#),
                now,
            );
            hub.handle_am_message(
                conn,
                decode(r#"{"command":"leave","streamId":"churn"}"#),
                now,
            );
            hub.handle_disconnect(conn);
            while hub.poll_output().is_some() {}
        })
    });
    g.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
