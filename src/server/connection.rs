//! One crawler connection: read bytes, split them into frames, handle each frame in
//! arrival order, write the replies.
//!
//! Reads and handling alternate strictly, so messages of one connection are applied in
//! order and replies never interleave. A connection is never closed for being idle
//! (spec §1.2). On shutdown the write side is shut first, then whatever the peer had
//! already sent is read and recorded until it closes or the drain deadline passes.

use super::handler::{handle_frame, job_progress};
use super::row_limit::RowLimit;
use super::shutdown::Shutdown;
use super::Context;
use crate::protocol::frame::FrameDecoder;
use crate::store::connections::{self, Peer, Traffic};
use crate::store::errors::{Category, ErrorRecord, Severity};
use crate::store::jobs::ProgressReport;
use crate::store::Lane;
use crate::time::Timestamp;
use async_net::unix::UnixStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;
use std::time::Duration;

/// Bytes taken from a socket per turn; smaller turns let a claim through sooner.
const READ_CHUNK: usize = 16 * 1024;
/// How long shutdown keeps reading what the peer already sent.
const DRAIN_FOR: Duration = Duration::from_secs(2);

pub struct Limits {
    pub max_message_bytes: usize,
    /// A peer that does not take a reply within this time is cut off.
    pub write_timeout: Duration,
}

/// One connection's state, owned by its task.
pub struct Session {
    pub id: i64,
    /// This connection's ordered way into the writer.
    pub lane: Lane,
    /// A `job_request` was already seen on this connection.
    pub asked_before: bool,
    pub traffic: Traffic,
    /// Shutting down: record what arrives, hand out nothing.
    pub draining: bool,
    /// Progress reports not yet handed to the writer (see `handler::job_progress`).
    pub progress: Vec<ProgressReport>,
    /// Caps this connection's `errors` rows for bad messages.
    pub bad_rows: RowLimit,
}

enum Event {
    Read(std::io::Result<usize>),
    Shutdown,
    /// The agent's budget of unfinished input is spent and this connection holds most.
    OverBudget(usize),
}

/// Serves connection `id` (allocated by the accept loop) until it ends.
pub async fn serve(
    mut stream: UnixStream,
    id: i64,
    peer: Peer,
    ctx: &Context,
    limits: Limits,
    shutdown: Shutdown,
) {
    let now = Timestamp::now();
    ctx.clocks.heard(id);
    // Through the connection's lane: its claims need this row to exist first.
    let lane = ctx.writer.lane();
    let _ = lane
        .submit("a new connection", move |c| {
            connections::open(c, id, peer, now)
        })
        .await;
    log::info!(
        "connection {id} opened (pid {}, uid {})",
        peer.pid.map_or("?".into(), |p| p.to_string()),
        peer.uid.map_or("?".into(), |u| u.to_string())
    );
    let mut session = Session {
        id,
        lane,
        asked_before: false,
        traffic: Traffic::default(),
        draining: false,
        progress: Vec::new(),
        bad_rows: RowLimit::new(std::time::Instant::now()),
    };
    let budget = ctx.input_budget.join(id);
    let mut decoder = FrameDecoder::new(limits.max_message_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut drain_until = None;
    let reason = loop {
        let read =
            futures_lite::future::or(async { Event::Read(stream.read(&mut buf).await) }, async {
                match budget.evicted.recv().await {
                    Ok(total) => Event::OverBudget(total),
                    Err(_) => std::future::pending().await,
                }
            });
        let event = match drain_until {
            None => shutdown.until(read).await,
            Some(deadline) => crate::race::until(deadline, read).await,
        }
        .unwrap_or(Event::Shutdown);
        let n = match event {
            Event::Shutdown if drain_until.is_some() => {
                break "agent shutdown (drain timed out)".to_string()
            }
            Event::Shutdown => {
                // Half-close: the crawler sees EOF and closes; we keep reading until then.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                session.draining = true;
                drain_until = Some(std::time::Instant::now() + DRAIN_FOR);
                continue;
            }
            Event::Read(Ok(0)) if drain_until.is_some() => break "agent shutdown".to_string(),
            Event::Read(Ok(0)) => break "closed by peer".to_string(),
            Event::Read(Ok(n)) => n,
            Event::Read(Err(e)) => break format!("read error: {e}"),
            Event::OverBudget(total) => break over_budget(ctx, id, &decoder, total).await,
        };
        session.traffic.bytes_in += n as u64;
        ctx.metrics
            .bytes_in
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        decoder.push(&buf[..n]);
        let mut failed_write = None;
        while let Some(frame) = decoder.next_frame() {
            if let crate::protocol::frame::Frame::Object(bytes) = &frame {
                crate::failpoint::panic_if_contains("connection", bytes);
            }
            let Some(reply) = handle_frame(ctx, &mut session, frame).await else {
                continue;
            };
            if session.draining {
                continue;
            }
            match crate::race::within(limits.write_timeout, stream.write_all(&reply)).await {
                Some(Ok(())) => {
                    session.traffic.bytes_out += reply.len() as u64;
                    session.traffic.messages_out += 1;
                }
                Some(Err(e)) => failed_write = Some(format!("write error: {e}")),
                None => {
                    failed_write = Some(format!(
                        "peer did not read a reply within {:?}",
                        limits.write_timeout
                    ))
                }
            }
            if failed_write.is_some() {
                break;
            }
        }
        job_progress::flush(&mut session).await;
        if budget.hold(decoder.held()) {
            break over_budget(ctx, id, &decoder, ctx.input_budget.total()).await;
        }
        // A read that finds data never waits, so a peer that always has more would keep
        // this executor thread to itself; let the other connections (a claim) go first.
        futures_lite::future::yield_now().await;
        if let Some(reason) = failed_write {
            ctx.record(
                ErrorRecord::new(Category::Connection, Severity::Medium, reason.clone())
                    .connection(id),
            )
            .await;
            break reason;
        }
    };
    if decoder.is_mid_object() && decoder.buffered() > 0 {
        ctx.record(
            ErrorRecord::new(
                Category::Protocol,
                Severity::Medium,
                format!(
                    "connection ended inside a message; {} bytes of it kept here",
                    decoder.buffered()
                ),
            )
            .connection(id)
            .context(json!({"partial": decoder.partial_sample(64 * 1024)})),
        )
        .await;
    }
    if let Some(more) = session.bad_rows.take_suppressed() {
        super::handler::bad_message_summary(ctx, id, more).await;
    }
    drop(budget);
    log::info!("connection {id} closed: {reason}");
    ctx.clocks.closed(id);
    let traffic = session.traffic;
    let _ = session
        .lane
        .submit("a connection close", move |c| {
            connections::close(c, id, &reason, traffic, Timestamp::now())
        })
        .await;
}

/// Records that connection `id` is closed to bring the agent's unfinished input
/// (`total` bytes, all connections) back under `socket.input_budget_bytes`; the reason.
async fn over_budget(ctx: &Context, id: i64, decoder: &FrameDecoder, total: usize) -> String {
    let reason = format!(
        "closed: unfinished input of all connections ({total} bytes) passed socket.input_budget_bytes ({}), and this connection held the most ({} bytes)",
        ctx.input_budget.limit(),
        decoder.held()
    );
    ctx.record(
        ErrorRecord::new(Category::Connection, Severity::High, reason.clone())
            .connection(id)
            .context(json!({"held": decoder.held(), "total": total})),
    )
    .await;
    reason
}
