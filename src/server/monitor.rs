//! Background duties of the running agent, on timers: mark connections without a
//! heartbeat stale (never close them), recover jobs handed to a connection that is
//! gone and never started, queue stale discoveries again, apply retention.

use super::live::Live;
use super::shutdown::Shutdown;
use super::systemd;
use super::Context;
use crate::store::errors::{self, Category, ErrorRecord, Severity};
use crate::store::jobs;
use crate::store::{alerts, connections, retention, runtime, FileIdentity, Writer};
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_secs(1);
/// How often systemd's STATUS and the `agent_runtime` row are refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub struct Monitor {
    pub database: FileIdentity,
    pub writer: Writer,
    pub live: Arc<Live>,
    pub ctx: Arc<Context>,
}

impl Monitor {
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut last_sweep: Option<Instant> = None;
        let mut last_prune = Instant::now();
        let mut last_status: Option<Instant> = None;
        loop {
            if shutdown.until(smol::Timer::after(TICK)).await.is_none() {
                return;
            }
            crate::failpoint::panic_if_triggered("monitor");
            self.mark_stale().await;
            alerts::submit_check(&self.writer, &self.live.get().config.notify).await;
            if let Some(problem) = self.database.check() {
                log::error!("{problem}");
                let record = ErrorRecord::new(Category::Storage, Severity::Critical, problem);
                let _ = self
                    .writer
                    .submit("an error", move |c| {
                        errors::insert(c, &record, Timestamp::now()).map(drop)
                    })
                    .await;
            }
            let settings = self.live.get();
            if last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                last_status = Some(Instant::now());
                self.report().await;
            }
            // Scans for lost jobs and stale discoveries run often enough to honour
            // rediscover_after, and at least every minute.
            let sweep_every =
                (settings.policy.rediscover_after / 10).clamp(TICK, Duration::from_secs(60));
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                last_sweep = Some(Instant::now());
                self.recover_unstarted().await;
                self.rediscover().await;
            }
            if last_prune.elapsed() >= settings.config.retention.prune_every.0 {
                last_prune = Instant::now();
                self.prune().await;
            }
        }
    }

    /// Tells systemd and the database how the agent is doing.
    async fn report(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let open = self.ctx.open_connections.load(Relaxed) as u64;
        let queued = self.writer.queued() as u64;
        systemd::status(&format!("{open} connection(s), {queued} write(s) queued"));
        let mut counters = self.ctx.metrics.snapshot();
        let stats = &self.writer.stats;
        counters.insert(
            crate::store::read::counters::WRITER_BATCHES.into(),
            stats.batches.load(Relaxed),
        );
        counters.insert(
            crate::store::read::counters::WRITER_OPERATIONS.into(),
            stats.operations.load(Relaxed),
        );
        counters.insert(
            crate::store::read::counters::WRITER_COMMIT_MICROS.into(),
            stats.commit_micros.load(Relaxed),
        );
        counters.insert(
            crate::store::read::counters::WRITER_WAL_HOLD_MICROS.into(),
            stats.wal_hold_micros.load(Relaxed),
        );
        counters.insert(
            crate::store::read::counters::WRITER_LAST_BATCH_SIZE.into(),
            stats.last_batch_size.load(Relaxed),
        );
        let row = runtime::Runtime {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.ctx.started_at.to_string(),
            updated_at: Timestamp::now().to_string(),
            open_connections: open,
            writer_queue: queued,
            counters,
        };
        // Stamped when it commits, not when it was queued: `status` and `metrics` read
        // the row's age as the writer's liveness, and a report that waited behind a
        // stuck batch must not look old once the writer has recovered.
        let mut row = row;
        let _ = self
            .writer
            .submit("runtime figures", move |c| {
                row.updated_at = Timestamp::now().to_string();
                runtime::save(c, &row)
            })
            .await;
    }

    async fn mark_stale(&self) {
        let stale_after = self.live.get().config.heartbeat.stale_after.0;
        let cutoff = Timestamp::now().minus(stale_after);
        let clocks = self.ctx.clocks.clone();
        let _ = self
            .writer
            .submit("stale connections", move |c| {
                let silent_for = |id| clocks.silent_for(id);
                for id in connections::mark_stale_aged(c, cutoff, &silent_for, stale_after)? {
                    log::warn!("connection {id}: no heartbeat for {stale_after:?}; marked stale (kept open)");
                }
                Ok(())
            })
            .await;
    }

    async fn recover_unstarted(&self) {
        let policy = self.live.policy();
        let clocks = self.ctx.clocks.clone();
        let _ = self
            .writer
            .submit("lost job recovery", move |c| {
                let now = Timestamp::now();
                let dispatched_before = now.minus(jobs::UNSTARTED_LOST_AFTER);
                let loss = jobs::Loss::ConnectionClosed { dispatched_before };
                let aged = jobs::Aged {
                    ages: &*clocks,
                    older_than: jobs::UNSTARTED_LOST_AFTER,
                };
                jobs::lose_aged(c, loss, Some(aged), &policy, now).map(drop)
            })
            .await;
    }

    async fn rediscover(&self) {
        let policy = self.live.policy();
        let _ = self
            .writer
            .submit("rediscovery", move |c| {
                let n = jobs::requeue_stale_discoveries(c, &policy, Timestamp::now())?;
                if n > 0 {
                    log::info!(
                        "{n} discovery job(s) queued again (older than discovery.rediscover_after)"
                    );
                }
                Ok(())
            })
            .await;
    }

    async fn prune(&self) {
        let retention = self.live.get().config.retention.clone();
        let _ = self
            .writer
            .submit("retention", move |c| {
                let pruned = retention::prune(c, &retention, Timestamp::now())?;
                if pruned.total() > 0 {
                    log::info!("retention pruned {pruned:?}");
                }
                Ok(())
            })
            .await;
    }
}
