//! The optional loopback `/metrics` endpoint (`metrics.listen`): the same text as
//! `crawler-agent metrics`, rendered by the store's read side, for a Prometheus that
//! scrapes the machine directly.
//!
//! A deliberately tiny HTTP/1.0 responder: one request per connection, headers capped
//! at 8 KiB and 5 s, `GET /metrics` or 404. The endpoint builds one read pool
//! ([`Reader`], `storage.read_pool_size` connections) when it starts and every scrape
//! borrows from it, on the blocking pool.

use super::shutdown::Shutdown;
use crate::store::read::{metrics, Reader};
use crate::store::Settings;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Endpoint {
    pub listener: async_net::TcpListener,
    pub database: PathBuf,
    pub settings: Settings,
    /// Connections in the read pool (`storage.read_pool_size`).
    pub read_pool_size: u32,
}

/// The endpoint once running: its socket and the pool every scrape reads through (or
/// why the pool could not be built, answered to every scrape).
struct Serving {
    listener: async_net::TcpListener,
    database: PathBuf,
    reader: Result<Reader, String>,
}

impl Endpoint {
    /// Serves until shutdown. Call once the database exists (after the store opened).
    pub async fn run(self, executor: Arc<smol::Executor<'static>>, shutdown: Shutdown) {
        let Endpoint {
            listener,
            database,
            settings,
            read_pool_size,
        } = self;
        let reader = {
            let database = database.clone();
            smol::unblock(move || {
                Reader::open(&database, &settings, read_pool_size).map_err(|e| e.to_string())
            })
            .await
        };
        if let Err(e) = &reader {
            log::warn!("metrics endpoint: cannot read the database: {e}");
        }
        let this = Arc::new(Serving {
            listener,
            database,
            reader,
        });
        loop {
            match shutdown.until(this.listener.accept()).await {
                None => return,
                Some(Ok((stream, _))) => {
                    let this = this.clone();
                    executor
                        .spawn(async move { this.answer(stream).await })
                        .detach();
                }
                Some(Err(e)) => {
                    log::warn!("metrics endpoint: accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl Serving {
    async fn answer(&self, mut stream: async_net::TcpStream) {
        let read = async {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            head
        };
        let Some(head) = crate::race::within(HEAD_TIMEOUT, read).await else {
            return;
        };
        let line = String::from_utf8_lossy(&head);
        let wanted = line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?");
        let response = if wanted {
            match self.scrape().await {
                Ok(body) => format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                Err(e) => {
                    let body = format!("metrics unavailable: {e}\n");
                    format!("HTTP/1.0 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                }
            }
        } else {
            "HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n".to_string()
        };
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.close().await;
    }

    /// The exposition, read through the pool on the blocking pool.
    async fn scrape(&self) -> Result<String, String> {
        let reader = self.reader.clone()?;
        let database = self.database.clone();
        smol::unblock(move || {
            let conn = reader.conn().map_err(|e| e.to_string())?;
            metrics::render(&conn, &database, true).map_err(|e| e.to_string())
        })
        .await
    }
}
