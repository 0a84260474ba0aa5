//! Integration tests: the real `pincer` binary, real agent containers, real SQLite files.
//!
//! Needs the agent image (`make image`; `make test` builds it first) and a docker engine.

#![allow(clippy::disallowed_methods, reason = "tests start processes and read the environment directly")]
#![allow(unreachable_pub, reason = "helpers are shared between test modules of one binary")]

mod access;
mod agents;
mod api;
mod approvals;
mod backup;
mod chat;
mod cli;
mod containers;
mod faults;
mod history;
mod models;
mod proxy;
mod restart;
mod robust;
mod rooms;
mod senders;
mod status;
mod support;
mod tasks;
mod tls;
mod uploads;
