//! The crawler's wire protocol (spec: `shared/spec/protocol.md`).
//!
//! Bytes become messages in three separate steps, each testable alone:
//! [`frame`] splits the byte stream into JSON objects, [`message`] turns one object
//! into a typed [`message::Inbound`], and [`encode`] writes our replies in the form
//! the crawler's brace-counting parser can split. [`surrogates`] repairs the lone
//! UTF-16 surrogate escapes JavaScript writes and serde_json would reject.

pub mod encode;
pub mod frame;
pub mod message;
pub mod surrogates;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of work a job can be (the crawler's `EntityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Areas,
    Project,
    Group,
    User,
    Issue,
    MergeRequest,
    Commit,
    Branch,
    Pipeline,
    Release,
}

impl EntityType {
    pub const ALL: [EntityType; 10] = [
        EntityType::Areas,
        EntityType::Project,
        EntityType::Group,
        EntityType::User,
        EntityType::Issue,
        EntityType::MergeRequest,
        EntityType::Commit,
        EntityType::Branch,
        EntityType::Pipeline,
        EntityType::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Areas => "areas",
            EntityType::Project => "project",
            EntityType::Group => "group",
            EntityType::User => "user",
            EntityType::Issue => "issue",
            EntityType::MergeRequest => "merge_request",
            EntityType::Commit => "commit",
            EntityType::Branch => "branch",
            EntityType::Pipeline => "pipeline",
            EntityType::Release => "release",
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntityType {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        EntityType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<_> = EntityType::ALL.iter().map(|t| t.as_str()).collect();
                format!("'{text}' is not an entity type ({})", names.join(", "))
            })
    }
}
