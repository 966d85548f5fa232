//! The standard `process_*` metrics of one process (resident and virtual memory, CPU
//! seconds, open and maximum descriptors, threads, start time), read from
//! `/proc/PID` with the `procfs` crate. A figure that cannot be read (another user's
//! process, no `/proc`) is left out, never guessed. Other platforms have no `/proc`:
//! there the families are empty.

use super::Family;
#[cfg(target_os = "linux")]
use super::{Kind, Value};

/// The families for `pid`; empty where the platform has no `/proc`.
#[cfg(not(target_os = "linux"))]
pub fn families(_pid: i32) -> Vec<Family> {
    Vec::new()
}

/// The families for `pid`; empty when the process cannot be read.
#[cfg(target_os = "linux")]
pub fn families(pid: i32) -> Vec<Family> {
    let Ok(process) = procfs::process::Process::new(pid) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(stat) = process.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size();
        out.push(Family::one(
            "process_cpu_seconds",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            Value::Float((stat.utime + stat.stime) as f64 / ticks),
        ));
        out.push(Family::one(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            Value::Int(i64::try_from(stat.rss.saturating_mul(page)).unwrap_or(i64::MAX)),
        ));
        out.push(Family::one(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            Value::Int(i64::try_from(stat.vsize).unwrap_or(i64::MAX)),
        ));
        out.push(Family::one(
            "process_threads",
            Kind::Gauge,
            "Number of OS threads in the process.",
            Value::Int(stat.num_threads),
        ));
        if let Ok(boot) = procfs::boot_time_secs() {
            out.push(Family::one(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                Value::Float(boot as f64 + stat.starttime as f64 / ticks),
            ));
        }
    }
    if let Ok(n) = process.fd_count() {
        out.push(Family::one(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
        ));
    }
    if let Ok(limits) = process.limits() {
        if let procfs::process::LimitValue::Value(n) = limits.max_open_files.soft_limit {
            out.push(Family::one(
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
            ));
        }
    }
    out
}
