//! pincer: a self-hosted personal AI-agent host.
//!
//! One package, two binaries: `pincer` (the host: config, central DB, router, container runner,
//! delivery, sweep, webchat, CLI) and `pincer-agent` (the runner inside every agent container).
//! Modules shared by both sit at the top; host-only modules are behind the `host` feature so the
//! static agent binary stays small. See ARCHITECTURE.md for the code map.

pub mod agent;
pub mod cron;
pub mod db;
pub mod http1;
pub mod ids;
pub mod link;
pub mod logger;

#[cfg(feature = "host")]
pub mod alloc;
#[cfg(feature = "host")]
pub mod backup;
#[cfg(feature = "host")]
pub mod cli;
#[cfg(feature = "host")]
pub mod config;
#[cfg(feature = "host")]
pub mod disk;
#[cfg(feature = "host")]
pub mod docker;
#[cfg(feature = "host")]
pub mod doctor;
#[cfg(feature = "host")]
pub mod egress;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "host")]
pub mod mailbox;
#[cfg(feature = "host")]
pub mod net;
#[cfg(feature = "host")]
pub mod process;
#[cfg(feature = "host")]
pub mod service;
#[cfg(feature = "host")]
pub mod status;
#[cfg(feature = "host")]
pub mod testing;
#[cfg(feature = "host")]
pub mod webchat;
