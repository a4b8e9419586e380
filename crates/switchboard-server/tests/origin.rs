//! `--allowed-origins` over real sockets: WebSocket handshakes and socket.io polling with
//! and without an `Origin`, from allowed, refused and the server's own origin.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use common::Server;
use switchboard_server::{OriginRule, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn server(origins: Option<&[&str]>) -> Server {
    Server::start(ServerConfig {
        allowed_origins: origins.map(|list| {
            list.iter()
                .map(|o| OriginRule::parse(o).unwrap())
                .collect::<Vec<_>>()
                .into()
        }),
        ..ServerConfig::default()
    })
    .await
}

/// A WebSocket handshake to the Ant Media endpoint with `origin`: the HTTP status.
async fn ws_status(addr: SocketAddr, origin: Option<&str>) -> u16 {
    let mut req = format!("ws://{addr}/LiveApp/websocket")
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, res)) => res.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// A raw GET with an `Origin`: the whole response head.
async fn head(addr: SocketAddr, path: &str, origin: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn only_allowed_origins_and_the_servers_own_reach_the_dialects() {
    let server = server(Some(&["https://app.example.com", "https://*.example.org"])).await;
    let addr = server.addr;
    assert_eq!(ws_status(addr, Some("https://app.example.com")).await, 101);
    assert_eq!(ws_status(addr, Some("https://meet.example.org")).await, 101);
    assert_eq!(
        ws_status(addr, Some(&format!("http://{addr}"))).await,
        101,
        "same origin"
    );
    assert_eq!(
        ws_status(addr, None).await,
        101,
        "native clients send no Origin"
    );
    for evil in [
        "https://evil.example.net",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "null",
    ] {
        assert_eq!(ws_status(addr, Some(evil)).await, 403, "{evil}");
    }
    // socket.io polling: the allowed origin is echoed (not `*`), a refused one gets 403.
    let ok = head(
        addr,
        "/socket.io/?EIO=4&transport=polling",
        "https://app.example.com",
    )
    .await;
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    assert!(
        ok.contains("access-control-allow-origin: https://app.example.com"),
        "{ok}"
    );
    assert!(ok.contains("vary: origin"), "{ok}");
    let refused = head(
        addr,
        "/socket.io/?EIO=4&transport=polling",
        "https://evil.example.net",
    )
    .await;
    assert!(refused.starts_with("http/1.1 403"), "{refused}");
    let refused = head(addr, "/peerjs/peerjs/id", "https://evil.example.net").await;
    assert!(refused.starts_with("http/1.1 403"), "{refused}");
    // The page and the SDK stay public.
    let page = head(addr, "/sdk/switchboard.js", "https://evil.example.net").await;
    assert!(page.starts_with("http/1.1 200"), "{page}");
    let (_, body) = common::http_get(addr, "/api/v1/stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["http"]["refused_origin"], 6);
}

#[tokio::test]
async fn without_an_allow_list_every_origin_passes_with_cors_star() {
    let server = server(None).await;
    assert_eq!(
        ws_status(server.addr, Some("https://anywhere.example")).await,
        101
    );
    let h = head(
        server.addr,
        "/socket.io/?EIO=4&transport=polling",
        "https://anywhere.example",
    )
    .await;
    assert!(h.contains("access-control-allow-origin: *"), "{h}");
}
