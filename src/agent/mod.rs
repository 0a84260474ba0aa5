//! The agent runner: the program inside every agent container (`pincer-agent`).
//!
//! It polls the session's `inbound.db` (read-only), takes what is pending, asks its model
//! provider for a reply, writes replies to `outbound.db` (its only writer) and tells the host over
//! the link. It never decides routing or permissions: the host re-validates everything it writes.
//!
//! Layout inside the container: `/workspace` is the session directory (the two DBs, the link
//! socket, the heartbeat file), `/workspace/agent` the agent's working folder. `PINCER_WORKSPACE`
//! moves the root so tests can run the runner outside a container.

pub mod claims;
pub mod config;
pub mod history;
pub mod images;
pub mod link;
pub mod mcp;
pub mod model;
pub mod outbox;
pub mod output;
pub mod poll;
pub mod prompt;
pub mod provider;
pub mod tools;
pub mod turn;
pub mod view;

pub use config::AgentConfig;

/// Runs the runner until the host goes away, the container is idle long enough, or a fatal error.
pub fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    poll::run(&cfg)
}
