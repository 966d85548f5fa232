//! The accept loop: takes each peer, checks it against the allow-lists and
//! `socket.max_connections` (a refused peer is counted, and recorded at most once per
//! uid per interval, without waiting for the writer), and starts its connection task
//! with a slot that comes back however the task ends, a panic included.

use super::shutdown::{Shutdown, TaskGroup};
use super::{connection, listener, Context};
use crate::store::connections;
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::supervise;
use crate::time::Timestamp;
use listener::Listener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) async fn accept_loop(
    executor: &Arc<smol::Executor<'static>>,
    listener: &Listener,
    ctx: Arc<Context>,
    tasks: &TaskGroup,
    shutdown: Shutdown,
) {
    loop {
        let Some(accepted) = shutdown.until(listener.listener.accept()).await else {
            return;
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("accept failed: {e}");
                // EMFILE and friends: give the system a moment instead of spinning.
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        crate::failpoint::panic_if_triggered("accept");
        // Limits as configured now (a reload changes them for the next peer).
        let settings = ctx.live.get();
        let socket = &settings.config.socket;
        let peer = listener::peer_of(&stream);
        let max_connections = socket.max_connections as usize;
        let refused = match refusal(socket, &peer) {
            Some(why) => Some((Category::Security, Severity::Critical, why)),
            None if ctx.open_connections.load(Ordering::Relaxed) >= max_connections => Some((
                Category::Connection,
                Severity::High,
                format!("{max_connections} connections already open (socket.max_connections)"),
            )),
            None => None,
        };
        if let Some((category, severity, why)) = refused {
            drop(stream);
            refuse(&ctx, socket, peer, category, severity, why);
            continue;
        }
        let Some(guard) = tasks.guard() else { return };
        let limits = connection::Limits {
            max_message_bytes: usize::try_from(socket.max_message_bytes).unwrap_or(usize::MAX),
            write_timeout: socket.write_timeout.0,
        };
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        // The id is ours to give, so a slow database never delays serving a new peer.
        let id = ctx.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::take(ctx.clone());
        ctx.metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        executor
            .spawn(async move {
                use futures_lite::FutureExt;
                let served = std::panic::AssertUnwindSafe(connection::serve(
                    stream, id, peer, &ctx, limits, shutdown,
                ))
                .catch_unwind()
                .await;
                // The stream is closed (dropped while unwinding): the slot is free
                // before the close is on record.
                drop(slot);
                if let Err(payload) = served {
                    let why = supervise::panic_message(payload.as_ref());
                    drop(payload);
                    connection_panicked(&ctx, id, why).await;
                }
                drop(guard);
            })
            .detach();
    }
}

/// A connection's place in `open_connections`, given back however its task ends.
struct Slot(Arc<Context>);

impl Slot {
    fn take(ctx: Arc<Context>) -> Slot {
        ctx.open_connections.fetch_add(1, Ordering::Relaxed);
        Slot(ctx)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection task panicked: its stream is already closed (dropped while unwinding);
/// record the panic and the close the task could not write.
async fn connection_panicked(ctx: &Context, id: i64, why: String) {
    let reason = format!("internal error: the connection task panicked ({why})");
    ctx.record(
        ErrorRecord::new(Category::Internal, Severity::Critical, reason.clone()).connection(id),
    )
    .await;
    // Counters of the lost session are unknown; the close itself must be on record.
    let traffic = connections::Traffic::default();
    let _ = ctx
        .writer
        .submit("a connection close", move |c| {
            connections::close_if_open(c, id, &reason, traffic, Timestamp::now())
        })
        .await;
}

/// Counts a refused peer and records it (at most once per uid per
/// `socket.refusal_record_every`), never waiting for the writer: a full queue drops
/// the row, not the accept loop's pace.
fn refuse(
    ctx: &Context,
    socket: &crate::config::SocketConfig,
    peer: connections::Peer,
    category: Category,
    severity: Severity,
    why: String,
) {
    ctx.metrics
        .connections_refused
        .fetch_add(1, Ordering::Relaxed);
    let unrecorded = ctx
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .should_record(
            peer.uid,
            socket.refusal_record_every.0,
            std::time::Instant::now(),
        );
    let Some(unrecorded) = unrecorded else {
        log::debug!("connection refused: {why} (recorded lately)");
        return;
    };
    let message = if unrecorded > 0 {
        format!(
            "connection refused: {why} ({unrecorded} more refusals of this uid since the last row)"
        )
    } else {
        format!("connection refused: {why}")
    };
    log::warn!("{message}");
    let who = serde_json::json!({"pid": peer.pid, "uid": peer.uid, "gid": peer.gid});
    let record = ErrorRecord::new(category, severity, message).context(who);
    let now = Timestamp::now();
    if !ctx.writer.try_submit("an error", move |c| {
        errors::insert(c, &record, now).map(drop)
    }) {
        log::warn!("the refusal was not recorded: the writer's queue is full");
    }
}

/// Why a peer may not connect, if the allow-lists say so.
fn refusal(socket: &crate::config::SocketConfig, peer: &connections::Peer) -> Option<String> {
    let (pid, uid, gid) = (peer.pid.unwrap_or(-1), peer.uid, peer.gid);
    // The agent's own uid (its CLI's `status`/`metrics` probes) is always allowed.
    if uid == Some(nix::unistd::geteuid().as_raw()) {
        return None;
    }
    if !socket.allowed_uids.is_empty() && !uid.is_some_and(|u| socket.allowed_uids.contains(&u)) {
        return Some(format!(
            "peer pid {pid} uid {uid:?} is not in socket.allowed_uids"
        ));
    }
    if !socket.allowed_gids.is_empty() && !gid.is_some_and(|g| socket.allowed_gids.contains(&g)) {
        return Some(format!(
            "peer pid {pid} gid {gid:?} is not in socket.allowed_gids"
        ));
    }
    None
}
