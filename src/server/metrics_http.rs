//! The optional loopback `/metrics` endpoint (`metrics.listen`): the same families as
//! `crawler-agent metrics`, rendered by [`crate::exposition`], plus the agent's own
//! `process_*` figures, for a Prometheus that scrapes the machine directly.
//!
//! HTTP is `hyper`'s (HTTP/1.1, no keep-alive: one request per connection) on smol.
//! Bounded: at most `metrics.max_connections` connections are open at once (the
//! next ones wait in the kernel's backlog, holding none of our descriptors), a
//! request head must arrive within `metrics.header_timeout` and be at most 16 KiB,
//! and a whole exchange ends within [`EXCHANGE_LIMIT`]. `GET /metrics` answers the
//! text, any other path 404. The endpoint builds one read pool ([`Reader`],
//! `storage.read_pool_size` connections) when it starts; every scrape borrows from it
//! on the blocking pool. It stops accepting, and ends its exchanges, on shutdown.

use super::shutdown::Shutdown;
use crate::exposition;
use crate::store::read::{metrics, Reader};
use crate::store::Settings;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use smol_hyper::rt::{FuturesIo, SmolTimer};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest one exchange may take, head to last byte (a slow reader of the body).
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// Largest request head read (hyper's minimum buffer is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;

pub struct Endpoint {
    pub listener: async_net::TcpListener,
    pub database: PathBuf,
    pub settings: Settings,
    /// Connections in the read pool (`storage.read_pool_size`).
    pub read_pool_size: u32,
    /// `metrics.max_connections`.
    pub max_connections: usize,
    /// `metrics.header_timeout`.
    pub header_timeout: Duration,
}

/// What every exchange shares: the database and the pool scrapes read through (or
/// why the pool could not be built, answered to every scrape).
struct Serving {
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
            max_connections,
            header_timeout,
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
        let this = Arc::new(Serving { database, reader });
        let slots = Arc::new(async_lock::Semaphore::new(max_connections.max(1)));
        loop {
            // A free slot first, then accept: over the cap, connections wait in the
            // kernel's backlog instead of holding a descriptor here.
            let Some(slot) = shutdown.until(slots.acquire_arc()).await else {
                return;
            };
            match shutdown.until(listener.accept()).await {
                None => return,
                Some(Ok((stream, _))) => {
                    let (this, shutdown) = (this.clone(), shutdown.clone());
                    executor
                        .spawn(async move {
                            let exchange = this.exchange(stream, header_timeout);
                            let _ = shutdown
                                .until(crate::race::within(EXCHANGE_LIMIT, exchange))
                                .await;
                            drop(slot);
                        })
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
    /// One connection: one request, one response, then close.
    async fn exchange(self: Arc<Self>, stream: async_net::TcpStream, header_timeout: Duration) {
        let service = hyper::service::service_fn(move |request| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.respond(request).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(SmolTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(false)
            .max_buf_size(MAX_HEAD)
            .serve_connection(FuturesIo::new(stream), service)
            .await;
        if let Err(e) = served {
            log::debug!("metrics endpoint: {e}");
        }
    }

    async fn respond(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, content_type: &str, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            if let Ok(value) = content_type.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        };
        if request.uri().path() != "/metrics" {
            return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
        }
        if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            );
        }
        match self.scrape().await {
            Ok(body) => reply(StatusCode::OK, exposition::CONTENT_TYPE, body),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("metrics unavailable: {e}\n"),
            ),
        }
    }

    /// The exposition, read through the pool on the blocking pool.
    async fn scrape(&self) -> Result<String, String> {
        let reader = self.reader.clone()?;
        let database = self.database.clone();
        smol::unblock(move || {
            let conn = reader.conn().map_err(|e| e.to_string())?;
            let families = metrics::families(&conn, &database, true).map_err(|e| e.to_string())?;
            let process = exposition::process::families(std::process::id() as i32);
            Ok(exposition::render(families, process))
        })
        .await
    }
}
