//! The `errors` table: every problem, with a category, a severity and its context.

use crate::time::Timestamp;
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Protocol,
    Validation,
    Job,
    Storage,
    Connection,
    Security,
    Config,
    Token,
    /// A bug in the agent: an operation or a connection task panicked.
    Internal,
}

impl Category {
    /// Every category, for metrics that show each one even at 0.
    pub const ALL: [Category; 9] = [
        Category::Protocol,
        Category::Validation,
        Category::Job,
        Category::Storage,
        Category::Connection,
        Category::Security,
        Category::Config,
        Category::Token,
        Category::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Protocol => "protocol",
            Category::Validation => "validation",
            Category::Job => "job",
            Category::Storage => "storage",
            Category::Connection => "connection",
            Category::Security => "security",
            Category::Config => "config",
            Category::Token => "token",
            Category::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, for metrics that show each one even at 0.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One row of `errors`. Build with [`ErrorRecord::new`] and the `with_*` setters.
#[derive(Debug, Clone, Default)]
pub struct ErrorRecord {
    pub category: Option<Category>,
    pub severity: Option<Severity>,
    pub message: String,
    pub job_id: Option<String>,
    pub connection_id: Option<i64>,
    pub error_type: Option<String>,
    pub is_recoverable: Option<bool>,
    pub stack_trace: Option<String>,
    /// JSON text.
    pub context: Option<String>,
    /// JSON text.
    pub partial_counts: Option<String>,
    /// JSON text.
    pub resume_state: Option<String>,
}

impl ErrorRecord {
    pub fn new(category: Category, severity: Severity, message: impl Into<String>) -> Self {
        ErrorRecord {
            category: Some(category),
            severity: Some(severity),
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn job(mut self, job_id: &str) -> Self {
        self.job_id = Some(job_id.to_string());
        self
    }

    pub fn connection(mut self, id: i64) -> Self {
        self.connection_id = Some(id);
        self
    }

    pub fn context(mut self, context: Value) -> Self {
        self.context = Some(context.to_string());
        self
    }
}

pub fn insert(conn: &Connection, e: &ErrorRecord, at: Timestamp) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO errors (at, category, severity, message, job_id, connection_id, error_type,
                             is_recoverable, stack_trace, context, partial_counts, resume_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        at,
        e.category.unwrap_or(Category::Protocol).as_str(),
        e.severity.unwrap_or(Severity::Medium).as_str(),
        e.message,
        e.job_id,
        e.connection_id,
        e.error_type,
        e.is_recoverable,
        e.stack_trace,
        e.context,
        e.partial_counts,
        e.resume_state,
    ])?;
    Ok(conn.last_insert_rowid())
}
