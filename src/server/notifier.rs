//! The notifier: the server task that takes events from the outbox
//! ([`crate::store::events`]) to the sinks of `[notify]`, at least once.
//!
//! Every [`TICK`] the task, through the writer, hands new events to the sinks (with
//! the cooldown and digest of [`crate::store::deliveries`]) and takes the deliveries
//! that are due; it sends each on the blocking pool with `notify.timeout`, then
//! records the outcome: sent, or tried again after a backoff that doubles from 1 s to
//! 1 h (persisted, so it survives restarts), until `notify.max_attempts`. Sinks are
//! read from the running configuration at each tick (SIGHUP applies). What is sent and
//! how lives in [`crate::notify`], which the CLI's `notify test` shares.

use super::live::Live;
use super::shutdown::Shutdown;
use crate::notify::{config, payload, sink};
use crate::store::deliveries::{self, Filter};
use crate::store::Writer;
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// How often the task looks for work.
pub const TICK: Duration = Duration::from_millis(250);
/// Deliveries tried per tick (each bounded by `notify.timeout`).
const PER_TICK: usize = 16;

/// The backoff after `attempts` failed tries: 1 s doubling, at most 1 h.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(12)).min(Duration::from_secs(3600))
}

/// Runs until shutdown.
pub async fn run(writer: Writer, live: Arc<Live>, shutdown: Shutdown) {
    let agent = payload::hostname();
    let mut warned = Vec::new();
    loop {
        let settings = live.get();
        let notify = settings.config.notify.clone();
        let sinks = config::sinks(&notify);
        for s in &sinks {
            if let config::Target::Webhook { url, .. } = &s.target {
                if config::insecure(url) && !warned.contains(&s.name) {
                    log::warn!(
                        "notify sink {}: plain http:// to {}; payloads cross the network unencrypted",
                        s.name,
                        config::host_of(url).unwrap_or("?")
                    );
                    warned.push(s.name.clone());
                }
            }
        }
        let round = {
            let sinks = sinks.clone();
            let cooldown = notify.cooldown.0;
            writer
                .call(move |c| {
                    let now = Timestamp::now();
                    let wants: Vec<_> = sinks.iter().map(|s| move |k: &str| s.wants(k)).collect();
                    let filters: Vec<Filter<'_>> = sinks
                        .iter()
                        .zip(&wants)
                        .map(|(s, w)| Filter {
                            name: &s.name,
                            wants: w,
                        })
                        .collect();
                    deliveries::fan_out(c, &filters, cooldown, now)?;
                    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
                    deliveries::due(c, &names, now, PER_TICK)
                })
                .await
        };
        match round {
            Ok(due) => {
                for d in due {
                    let Some(spec) = sinks.iter().find(|s| s.name == d.sink) else {
                        continue;
                    };
                    let payload = payload::json(&d, &agent);
                    let (target, timeout) = (spec.target.clone(), notify.timeout.0);
                    // On shutdown the try is abandoned unrecorded: still pending, it is
                    // sent again after the restart (at least once).
                    let sending = smol::unblock(move || sink::deliver(&target, &payload, timeout));
                    let Some(outcome) = shutdown.until(sending).await else {
                        return;
                    };
                    let tries = d.attempts + 1;
                    let retry_at = (tries < notify.max_attempts)
                        .then(|| Timestamp::now().plus(backoff(d.attempts)));
                    match &outcome {
                        Ok(()) => log::info!(
                            "notify {}: sent {} event {}",
                            d.sink,
                            d.event.kind,
                            d.event.id
                        ),
                        Err(e) if retry_at.is_some() => {
                            log::warn!(
                            "notify {}: {} event {} not delivered (try {tries}): {e}; trying again",
                            d.sink, d.event.kind, d.event.id
                        )
                        }
                        Err(e) => log::error!(
                            "notify {}: {} event {} given up after {tries} tries: {e}",
                            d.sink,
                            d.event.kind,
                            d.event.id
                        ),
                    }
                    let id = d.id;
                    let _ = writer
                        .call(move |c| {
                            deliveries::finish(
                                c,
                                id,
                                outcome.as_ref().map(|_| ()).map_err(String::as_str),
                                retry_at,
                                Timestamp::now(),
                            )
                        })
                        .await;
                }
            }
            Err(e) => log::warn!("notify: reading the outbox failed: {e}"),
        }
        if shutdown.until(smol::Timer::after(TICK)).await.is_none() {
            return;
        }
    }
}
