//! Shared harness: start the real agent on a temp directory ([`agent`]), talk to it
//! like the real crawler does ([`crawler`]), read the SQLite file it wrote ([`db`]), and wait for something to happen ([`wait`]).
//!
//! Each test crate uses a different part of it, so unused helpers are expected in any
//! one of them.
#![allow(dead_code)]

pub mod agent;
pub mod crawler;
pub mod db;
pub mod wait;

// The names the tests use, at the paths they had before the split.
#[allow(unused_imports)]
pub use agent::{signal, Agent, BIN};
#[allow(unused_imports)]
pub use crawler::Crawler;
#[allow(unused_imports)]
pub use wait::wait_until;
