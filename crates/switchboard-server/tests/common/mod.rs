//! Test harness: a real server on an ephemeral loopback port and real WebSocket clients.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_server::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for something that must arrive.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(switchboard_server::run(config, listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn default() -> Self {
        Self::start(ServerConfig::default()).await
    }

    pub async fn client(&self, app: &str) -> Client {
        Client::connect(&format!("ws://{}/{app}/websocket", self.addr)).await
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => tokio::time::timeout(WAIT, t).await.unwrap().unwrap(),
            None => Ok(()),
        }
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = connect_async(url).await.unwrap();
        Self { ws }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send(&v.to_string()).await;
    }

    /// The next message, which must be a text frame with a JSON object.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("socket ended")
                .expect("socket error");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Asserts the next message has these fields (and maybe others); returns it.
    pub async fn expect(&mut self, fields: Value) -> Value {
        let got = self.recv().await;
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(got.get(k), Some(v), "field {k} of {got}");
        }
        got
    }

    /// Asserts the next message is exactly `want`.
    pub async fn expect_exact(&mut self, want: Value) {
        assert_eq!(self.recv().await, want);
    }

    /// Proves nothing else was queued for this client: a ping's pong comes next (per
    /// connection FIFO: anything the hub queued before the ping would arrive first).
    pub async fn expect_nothing_else(&mut self) {
        self.send(r#"{"command":"ping"}"#).await;
        let got = self.recv().await;
        assert_eq!(got, json!({"command":"pong"}), "expected nothing but pong");
    }

    /// Waits for the server to close the socket; returns the close code, or `None` if the
    /// connection ended without a close frame.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match m {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn join(&mut self, room: &str) {
        self.send_json(json!({"command":"join","streamId":room}))
            .await;
    }
}

/// Two clients paired in `room` of `app`, with `joined`/`start` consumed.
pub async fn pair(server: &Server, app: &str, room: &str) -> (Client, Client) {
    let mut a = server.client(app).await;
    let mut b = server.client(app).await;
    a.join(room).await;
    a.expect(json!({"definition":"joined"})).await;
    b.join(room).await;
    b.expect(json!({"definition":"joined"})).await;
    a.expect_exact(json!({"command":"start","streamId":room}))
        .await;
    (a, b)
}

/// A raw HTTP/1.1 GET; returns the status line and body.
pub async fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let connection = if extra_headers.contains("Connection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{connection}{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // Read the head, then exactly Content-Length bytes of body (the connection may stay open).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = text.lines().next().unwrap_or_default().to_owned();
                    return (status, text[end + 4..end + 4 + len].to_owned());
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a full response");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read).await.unwrap()
}
