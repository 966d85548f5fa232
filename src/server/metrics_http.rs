//! The optional loopback `/metrics` endpoint (`metrics.listen`): the same text as
//! `crawler-agent metrics`, for a Prometheus that scrapes the machine directly.
//!
//! A deliberately tiny HTTP/1.0 responder: one request per connection, headers capped
//! at 8 KiB and 5 s, `GET /metrics` or 404. The database is read on the blocking pool.

use super::shutdown::Shutdown;
use crate::store::{self, Settings};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Endpoint {
    pub listener: async_net::TcpListener,
    pub database: PathBuf,
    pub settings: Settings,
}

impl Endpoint {
    pub async fn run(self, executor: Arc<smol::Executor<'static>>, shutdown: Shutdown) {
        let this = Arc::new(self);
        loop {
            let accept = async { Some(this.listener.accept().await) };
            let stop = async {
                shutdown.wait().await;
                None
            };
            match futures_lite::future::or(accept, stop).await {
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
            Some(head)
        };
        let timeout = async {
            smol::Timer::after(Duration::from_secs(5)).await;
            None
        };
        let Some(head) = futures_lite::future::or(read, timeout).await else {
            return;
        };
        let line = String::from_utf8_lossy(&head);
        let wanted = line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?");
        let response = if wanted {
            let (database, settings) = (self.database.clone(), self.settings.clone());
            let text = smol::unblock(move || {
                let conn =
                    store::open_read_only(&database, &settings).map_err(|e| e.to_string())?;
                crate::cli::metrics::render(&conn, &database, true).map_err(|e| e.to_string())
            })
            .await;
            match text {
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
}
