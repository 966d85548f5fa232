//! The Prometheus exposition, written by the Prometheus project's own client
//! (`prometheus-client`): `crawler-agent metrics` and the `/metrics` endpoint both
//! render their text here.
//!
//! What to export is decided elsewhere: the store's read side turns the database into
//! [`Family`] values ([`crate::store::read::metrics`]) and [`process`] reads the
//! standard `process_*` figures of a pid from `/proc`. This module only hands them to
//! a custom collector and encodes the text (OpenMetrics 1.0, which Prometheus and the
//! node_exporter textfile collector read). It does no I/O of its own.

pub mod process;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the text [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The prefix of every metric of the agent (not of `process_*`).
pub const PREFIX: &str = "crawler_agent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Named without `_total`: the encoder appends it.
    Counter,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

pub type Labels = Vec<(&'static str, String)>;

/// One metric family: its name (without the prefix), help text, kind and samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    pub fn new(name: impl Into<String>, kind: Kind, help: &'static str) -> Family {
        Family {
            name: name.into(),
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// A family with one unlabelled sample.
    pub fn one(name: impl Into<String>, kind: Kind, help: &'static str, value: Value) -> Family {
        let mut f = Family::new(name, kind, help);
        f.samples.push((Vec::new(), value));
        f
    }

    pub fn sample(&mut self, labels: Labels, value: Value) {
        self.samples.push((labels, value));
    }
}

/// Families handed to `prometheus-client` at each render.
#[derive(Debug)]
struct Families(Vec<Family>);

fn encode_value(
    kind: Kind,
    value: Value,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match (kind, value) {
        (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(encoder),
        (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(encoder),
        // A counter never goes below zero; a negative reading is clamped.
        (Kind::Counter, Value::Int(v)) => {
            ConstCounter::new(u64::try_from(v).unwrap_or(0)).encode(encoder)
        }
        (Kind::Counter, Value::Float(v)) => ConstCounter::new(v.max(0.0)).encode(encoder),
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let kind = match family.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut metric = encoder.encode_descriptor(&family.name, family.help, None, kind)?;
            for (labels, value) in &family.samples {
                if labels.is_empty() {
                    encode_value(
                        family.kind,
                        *value,
                        metric.encode_family(&Vec::<(&str, &str)>::new())?,
                    )?;
                } else {
                    encode_value(family.kind, *value, metric.encode_family(labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The whole text: the agent's families under [`PREFIX`], then `process_*`.
pub fn render(agent: Vec<Family>, process: Vec<Family>) -> String {
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix(PREFIX)
        .register_collector(Box::new(Families(agent)));
    registry.register_collector(Box::new(Families(process)));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector error would leave a partial text,
    // which the trailing `# EOF` check of a scraper rejects rather than misreads.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        log::warn!("metrics: the exposition could not be encoded");
    }
    out
}
