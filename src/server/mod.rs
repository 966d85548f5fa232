//! `crawler-agent serve`: the server end of the crawler's socket.
//!
//! [`run`] binds the socket (or adopts one from systemd socket activation), opens the
//! store, and runs the accept loop, one task per connection ([`connection`]), each
//! applying its messages through the [`handler`], plus the [`monitor`]. SIGHUP
//! reloads the configuration ([`live`]). SIGTERM or SIGINT fire the [`shutdown`]
//! signal: accepting stops, connections are half-closed and drained, the writer
//! commits everything and checkpoints, the socket file is removed, and the process
//! exits 0. Under systemd it reports readiness, status, reloads and stopping, and
//! pings the watchdog from the writer thread ([`systemd`]).

pub mod accept;
pub mod clocks;
pub mod connection;
pub mod handler;
pub mod input_budget;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod metrics_http;
pub mod monitor;
pub mod notifier;
pub mod refusals;
pub mod row_limit;
pub mod shutdown;
pub mod systemd;

use crate::config::{Flags, Loaded};
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::store::{connections, Store, Writer};
use crate::supervise;
use crate::time::Timestamp;
use crate::tokens::Tokens;
use listener::Listener;
use live::Live;
use shutdown::{Shutdown, TaskGroup};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// What every connection and task of the running agent shares.
pub struct Context {
    pub writer: Writer,
    pub tokens: Tokens,
    /// Connection ids are allocated here, not by the database (see `connection`).
    pub next_connection_id: std::sync::atomic::AtomicI64,
    /// The running configuration (reloaded on SIGHUP).
    pub live: Arc<Live>,
    /// Connections being served now.
    pub open_connections: AtomicUsize,
    pub metrics: metrics::Metrics,
    pub started_at: Timestamp,
    /// Unfinished input held by all connections together (`socket.input_budget_bytes`).
    pub input_budget: input_budget::InputBudget,
    /// Which refused uids were recorded lately (`socket.refusal_record_every`).
    pub refusals: std::sync::Mutex<refusals::Refusals>,
    /// Monotonic dispatch and heartbeat times of this run (orphans, restarts, stale).
    pub clocks: Arc<clocks::Clocks>,
}

impl Context {
    /// Stores an error row without waiting, and logs it.
    pub async fn record(&self, e: ErrorRecord) {
        let conn = e
            .connection_id
            .map_or(String::new(), |c| format!("connection {c}: "));
        match e.severity {
            Some(Severity::Low) => log::info!("{conn}{}", e.message),
            _ => log::warn!("{conn}{}", e.message),
        }
        let now = Timestamp::now();
        let _ = self
            .writer
            .submit("an error", move |c| errors::insert(c, &e, now).map(drop))
            .await;
    }
}

/// Runs the agent until SIGTERM/SIGINT; SIGHUP reloads the configuration.
pub fn run(loaded: &Loaded, flags: &Flags) -> anyhow::Result<()> {
    let (trigger, shutdown) = Shutdown::new();
    let (reload_tx, reload_rx) = async_channel::bounded::<()>(1);
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
    // SIGXFSZ is caught so that a file size limit makes writes fail (and be retried
    // by the writer) instead of killing the process.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGXFSZ])?;
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut size_limit_reported: Option<std::time::Instant> = None;
            for sig in signals.forever() {
                match sig {
                    SIGXFSZ => {
                        if size_limit_reported.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                            log::error!("file size limit reached (SIGXFSZ); database writes fail until it is raised");
                            size_limit_reported = Some(std::time::Instant::now());
                        }
                    }
                    SIGHUP => {
                        let _ = reload_tx.try_send(());
                    }
                    _ => {
                        log::info!("signal {sig} received; shutting down");
                        trigger.fire();
                        break;
                    }
                }
            }
        })?;
    let result = serve_until(loaded, flags, shutdown, reload_rx);
    signal_handle.close();
    result
}

/// Serves until `shutdown` fires; a message on `reload` re-reads the configuration.
pub fn serve_until(
    loaded: &Loaded,
    flags: &Flags,
    shutdown: Shutdown,
    reload: async_channel::Receiver<()>,
) -> anyhow::Result<()> {
    let config = &loaded.config;
    // First: a second agent on this database must not touch its socket or its file.
    let _lock = crate::store::lock::AgentLock::acquire(&loaded.database, &loaded.socket)?;
    let metrics_endpoint = match config.metrics_listen().map_err(anyhow::Error::msg)? {
        Some(addr) => {
            let tcp = smol::block_on(async_net::TcpListener::bind(addr))
                .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: {e}"))?;
            log::info!("metrics on http://{addr}/metrics");
            Some(metrics_http::Endpoint {
                listener: tcp,
                database: loaded.database.clone(),
                settings: crate::store::Settings::from(&config.storage),
                read_pool_size: config.storage.read_pool_size,
                max_connections: config.metrics.max_connections as usize,
                header_timeout: config.metrics.header_timeout.0,
            })
        }
        None => None,
    };
    let listener = match systemd::inherited_listener() {
        Some(inherited) => Listener::adopt(inherited, &loaded.socket)?,
        None => Listener::bind(
            &loaded.socket,
            config.socket_mode().map_err(anyhow::Error::msg)?,
            &config.socket.group,
        )?,
    };
    let watchdog = systemd::watchdog_interval().map(|every| {
        (
            every,
            Box::new(systemd::watchdog_ping) as Box<dyn Fn() + Send>,
        )
    });
    let store = match Store::open_with(&loaded.database, &config.storage, watchdog) {
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
    for warning in config.below_spec() {
        log::warn!("{warning}");
    }
    if let Some(file) = &loaded.file {
        log::info!("config {}", file.display());
    }

    let live = Arc::new(Live::new(loaded.clone(), flags.clone()));
    let ctx = Arc::new(Context {
        tokens: Tokens::new(store.writer.clone(), config.tokens.clone()),
        writer: store.writer.clone(),
        next_connection_id: next_connection_id.into(),
        live: live.clone(),
        open_connections: AtomicUsize::new(0),
        metrics: metrics::Metrics::default(),
        started_at: Timestamp::now(),
        input_budget: input_budget::InputBudget::new(config.socket.input_budget_bytes),
        refusals: Default::default(),
        clocks: Arc::default(),
    });
    let monitor = monitor::Monitor {
        database: crate::store::FileIdentity::of(&loaded.database),
        writer: store.writer.clone(),
        live: live.clone(),
        ctx: ctx.clone(),
    };
    let executor = Arc::new(smol::Executor::new());
    let (stop_worker, worker_stop) = async_channel::bounded::<()>(1);
    let worker = {
        let executor = executor.clone();
        std::thread::Builder::new()
            .name("executor".into())
            .spawn(move || smol::block_on(executor.run(async { worker_stop.recv().await.ok() })))?
    };
    systemd::ready(&format!("listening on {}", listener.path().display()));
    smol::block_on(executor.run(async {
        // The monitor, the reload task, the notifier and the accept loop are
        // process-wide: a panic in one ends the process (see `supervise`) rather than
        // leave a half-alive agent.
        let monitor_task = executor.spawn(supervise::essential_task(
            "the monitor",
            monitor.run(shutdown.clone()),
        ));
        let reload_task = executor.spawn(supervise::essential_task(
            "the reload task",
            reload_on_signal(reload, ctx.clone(), shutdown.clone()),
        ));
        let notify_task = executor.spawn(supervise::essential_task(
            "the notifier",
            notifier::run(store.writer.clone(), live.clone(), shutdown.clone()),
        ));
        let metrics_task =
            metrics_endpoint.map(|e| executor.spawn(e.run(executor.clone(), shutdown.clone())));
        let tasks = TaskGroup::new();
        supervise::essential_task(
            "the accept loop",
            accept::accept_loop(&executor, &listener, ctx, &tasks, shutdown.clone()),
        )
        .await;
        systemd::stopping();
        log::info!(
            "no longer accepting; draining {} connection(s)",
            tasks.running()
        );
        tasks.wait().await;
        monitor_task.await;
        reload_task.await;
        notify_task.await;
        if let Some(task) = metrics_task {
            task.await;
        }
    }));
    stop_worker.close();
    let _ = worker.join();
    store.close();
    listener.remove_file();
    log::info!("stopped cleanly");
    Ok(())
}

async fn reload_on_signal(
    reload: async_channel::Receiver<()>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) {
    while let Some(Ok(())) = shutdown.until(reload.recv()).await {
        systemd::reloading();
        match ctx.live.reload() {
            Ok(report) => {
                if report.applied.is_empty() && report.need_restart.is_empty() {
                    log::info!("configuration reloaded: nothing changed");
                }
                for change in &report.applied {
                    log::info!("configuration reloaded: {change}");
                }
                for change in &report.need_restart {
                    log::warn!("configuration change needs a restart to take effect: {change}");
                }
                systemd::reloaded("configuration reloaded");
            }
            Err(e) => {
                let message = format!(
                    "configuration reload rejected, the running configuration is kept: {e}"
                );
                log::error!("{message}");
                let record = ErrorRecord::new(Category::Config, Severity::High, message);
                let _ = ctx
                    .writer
                    .submit("an error", move |c| {
                        errors::insert(c, &record, Timestamp::now()).map(drop)
                    })
                    .await;
                systemd::reloaded("configuration reload rejected");
            }
        }
    }
}
