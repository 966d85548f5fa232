//! `crawler-agent serve`: the server end of the crawler's socket.
//!
//! [`run`] binds the socket, opens the store, and runs the accept loop, one task per
//! connection ([`connection`]), each applying its messages through the [`handler`],
//! plus the [`monitor`]. SIGTERM or SIGINT fire the [`shutdown`] signal: accepting
//! stops, connections are half-closed and drained, the writer commits everything and
//! checkpoints, the socket file is removed, and the process exits 0.

pub mod connection;
pub mod handler;
pub mod listener;
pub mod monitor;
pub mod shutdown;

use crate::config::Loaded;
use crate::policy::Policy;
use crate::store::errors::{Category, ErrorRecord, Severity};
use crate::store::{connections, Store};
use crate::time::Timestamp;
use handler::Context;
use listener::Listener;
use shutdown::{Shutdown, TaskGroup};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(loaded: &Loaded) -> anyhow::Result<()> {
    let (trigger, shutdown) = Shutdown::new();
    use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
    // SIGXFSZ is caught so that a file size limit makes writes fail (and be retried
    // by the writer) instead of killing the process.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGXFSZ])?;
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut size_limit_reported: Option<std::time::Instant> = None;
            for sig in signals.forever() {
                if sig == SIGXFSZ {
                    if size_limit_reported.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                        log::error!("file size limit reached (SIGXFSZ); database writes fail until it is raised");
                        size_limit_reported = Some(std::time::Instant::now());
                    }
                    continue;
                }
                log::info!("signal {sig} received; shutting down");
                trigger.fire();
                break;
            }
        })?;
    let result = serve_until(loaded, shutdown);
    signal_handle.close();
    result
}

/// Serves until `shutdown` fires. Tests and embedders call this directly.
pub fn serve_until(loaded: &Loaded, shutdown: Shutdown) -> anyhow::Result<()> {
    let config = &loaded.config;
    let listener = Listener::bind(
        &loaded.socket,
        config.socket_mode().map_err(anyhow::Error::msg)?,
        &config.socket.group,
    )?;
    let store = match Store::open(&loaded.database, &config.storage) {
        Ok(store) => store,
        Err(e) => {
            listener.remove_file();
            return Err(e.into());
        }
    };
    let (left, next_connection_id) = store.writer.call_blocking(|c| {
        Ok((
            connections::close_leftovers(c, Timestamp::now())?,
            connections::next_id(c)?,
        ))
    })?;
    if left > 0 {
        log::info!("{left} connection(s) left open by the previous run marked closed");
    }
    log::info!("listening on {}", listener.path().display());
    log::info!("database {}", loaded.database.display());
    if let Some(file) = &loaded.file {
        log::info!("config {}", file.display());
    }

    let policy = Arc::new(Policy::from(config));
    let ctx = Arc::new(Context {
        tokens: crate::tokens::Tokens::new(store.writer.clone(), config.tokens.clone()),
        writer: store.writer.clone(),
        next_connection_id: next_connection_id.into(),
        policy: policy.clone(),
        claim_timeout: config.dispatch.claim_timeout.0,
    });
    let monitor = monitor::Monitor {
        database: monitor::FileIdentity::of(&loaded.database),
        writer: store.writer.clone(),
        policy,
        stale_after: config.heartbeat.stale_after.0,
        retention: config.retention.clone(),
    };
    let executor = Arc::new(smol::Executor::new());
    let (stop_worker, worker_stop) = async_channel::bounded::<()>(1);
    let worker = {
        let executor = executor.clone();
        std::thread::Builder::new()
            .name("executor".into())
            .spawn(move || smol::block_on(executor.run(async { worker_stop.recv().await.ok() })))?
    };
    smol::block_on(executor.run(async {
        let monitor_task = executor.spawn(monitor.run(shutdown.clone()));
        let tasks = TaskGroup::new();
        accept_loop(&executor, &listener, ctx, loaded, &tasks, shutdown.clone()).await;
        log::info!(
            "no longer accepting; draining {} connection(s)",
            tasks.running()
        );
        tasks.wait().await;
        monitor_task.await;
    }));
    stop_worker.close();
    let _ = worker.join();
    store.close();
    listener.remove_file();
    log::info!("stopped cleanly");
    Ok(())
}

async fn accept_loop(
    executor: &Arc<smol::Executor<'static>>,
    listener: &Listener,
    ctx: Arc<Context>,
    loaded: &Loaded,
    tasks: &TaskGroup,
    shutdown: Shutdown,
) {
    let socket = &loaded.config.socket;
    let max_connections = socket.max_connections as usize;
    let max_message_bytes = usize::try_from(socket.max_message_bytes).unwrap_or(usize::MAX);
    let write_timeout = socket.write_timeout.0;
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accept = async { Some(listener.listener.accept().await) };
        let stop = async {
            shutdown.wait().await;
            None
        };
        let Some(accepted) = futures_lite::future::or(accept, stop).await else {
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
        let peer = listener::peer_of(&stream);
        let who = serde_json::json!({"pid": peer.pid, "uid": peer.uid, "gid": peer.gid});
        if let Some(why) = refusal(socket, &peer) {
            ctx.record(
                ErrorRecord::new(
                    Category::Security,
                    Severity::Critical,
                    format!("connection refused: {why}"),
                )
                .context(who),
            )
            .await;
            continue;
        }
        if open.load(Ordering::Relaxed) >= max_connections {
            ctx.record(
                ErrorRecord::new(
                    Category::Connection,
                    Severity::High,
                    format!("connection refused: {max_connections} connections already open (socket.max_connections)"),
                )
                .context(who),
            )
            .await;
            continue;
        }
        let Some(guard) = tasks.guard() else { return };
        let (ctx, shutdown, open) = (ctx.clone(), shutdown.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        executor
            .spawn(async move {
                let limits = connection::Limits {
                    max_message_bytes,
                    write_timeout,
                };
                connection::serve(stream, peer, &ctx, limits, shutdown).await;
                open.fetch_sub(1, Ordering::Relaxed);
                drop(guard);
            })
            .detach();
    }
}

/// Why a peer may not connect, if the allow-lists say so.
fn refusal(socket: &crate::config::SocketConfig, peer: &connections::Peer) -> Option<String> {
    let (pid, uid, gid) = (peer.pid.unwrap_or(-1), peer.uid, peer.gid);
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
