//! The host: start-up, the concern threads, and graceful shutdown.
//!
//! Start-up order: lock the data directory, open and migrate the central DB, create the first
//! agent on a fresh install, check docker and the agent image, remove containers a crashed run
//! left behind, start delivery, sweep and router (each on its own mio `Poll`), then the webchat.
//! SIGINT/SIGTERM: stop accepting, stop the router, stop the containers, let delivery finish what
//! they wrote, stop the sweep, close the sockets, join every thread.

pub mod agents;
pub mod channels;
pub mod containers;
pub mod delivery;
pub mod image;
pub mod kick;
pub mod lock;
pub mod proxy;
pub mod router;
pub mod sessions;
pub mod sweep;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use mio::Poll;

use self::channels::Channels;
use self::containers::{Containers, INSTALL_LABEL, RunnerConfig};
use self::delivery::DeliveryHandle;
use self::kick::Kick;
use self::sweep::SweepHandle;
use crate::config::Config;
use crate::db::{self, Kind, central};
use crate::docker::Docker;
use crate::ids::now_ms;
use crate::webchat::{self, Webchat};

/// How long shutdown waits for containers to exit.
pub const CONTAINER_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the central DB.
pub fn central_db(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("pincer.db")
}

/// Creates the data and groups directories and opens (migrating) the central DB.
pub fn open_central(cfg: &Config) -> anyhow::Result<db::Connection> {
    for dir in [&cfg.data_dir, &cfg.groups_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    db::open(&central_db(cfg), Kind::Central)
}

/// Runs the host until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    for dir in [&cfg.data_dir, &cfg.groups_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _lock = lock::acquire(&cfg.data_dir)?;
    let mut conn = open_central(&cfg)?;
    central::reset_container_status(&conn)?;
    agents::ensure_first_agent(&mut conn, &cfg.groups_dir, now_ms())?;

    let docker = Docker::new(&cfg.docker);
    let version = docker.server_version()?;
    if docker.image_labels(&cfg.image)?.is_none() {
        bail!(
            "the agent image {} does not exist: build it with `make image` (or `pincer image build`)",
            cfg.image
        );
    }
    let install = RunnerConfig::install_id(&cfg.data_dir);
    let removed = docker.remove_labelled(INSTALL_LABEL, &install)?;
    if removed > 0 {
        log::info!("removed {removed} agent container(s) left by a previous run");
    }
    log::info!("docker {version}, image {}, data {}", cfg.image, cfg.data_dir.display());

    let router_poll = Poll::new()?;
    let router_kick = Kick::new(router_poll.registry())?;
    let delivery_poll = Poll::new()?;
    let delivery = DeliveryHandle::new(&delivery_poll)?;
    let sweep_poll = Poll::new()?;
    let sweep = SweepHandle::new(&sweep_poll)?;
    let proxy_poll = Poll::new()?;
    let proxy_handle = proxy::ProxyHandle::new(&proxy_poll)?;

    let runner = RunnerConfig {
        docker: docker.clone(),
        image: cfg.image.clone(),
        data_dir: cfg.data_dir.clone(),
        groups_dir: cfg.groups_dir.clone(),
        install,
        user: RunnerConfig::owner_of(&cfg.data_dir)?,
        tz: cfg.tz.clone(),
        default_provider: cfg.provider.as_str().to_string(),
        anthropic_model: cfg.anthropic.model.clone(),
        openai_model: cfg.openai.model.clone(),
        idle_exit_s: cfg.container_idle_s,
        max_containers: cfg.max_containers,
        log_level: cfg.log_level.to_string().to_lowercase(),
        extra_env: [("PINCER_CONTEXT_TOKENS", cfg.context_tokens), ("PINCER_MAX_TOKENS", cfg.max_tokens)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
            .collect(),
    };
    let containers = Arc::new(Containers::new(runner, delivery.clone(), sweep.clone(), proxy_handle.clone()));
    let model_proxy = Arc::new(proxy::Proxy::new(proxy::ProxyConfig::from_config(&cfg)));
    let ph = proxy_handle.clone();
    let proxy_thread = spawn("model-proxy", move || proxy::run(model_proxy, proxy_poll, ph))?;

    let store = Arc::new(webchat::store::Store::new(&central_db(&cfg)));
    let hub = Arc::new(webchat::hub::Hub::default());
    let mut channels = Channels::default();
    channels.register(Arc::new(webchat::adapter::WebchatChannel {
        store: store.clone(),
        hub: hub.clone(),
        uploads: cfg.data_dir.join("webchat").join("uploads"),
    }));

    let mut threads: Vec<(&str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
    let d = delivery::Delivery {
        central: open_central(&cfg)?,
        data_dir: cfg.data_dir.clone(),
        channels: channels.clone(),
        containers: containers.clone(),
    };
    let dh = delivery.clone();
    threads.push(("delivery", spawn("delivery", move || delivery::run(d, delivery_poll, dh))?));
    let s = sweep::Sweep {
        central: open_central(&cfg)?,
        data_dir: cfg.data_dir.clone(),
        containers: containers.clone(),
        delivery: delivery.clone(),
        channels: channels.clone(),
    };
    let sh = sweep.clone();
    let sweep_thread = spawn("sweep", move || sweep::run(s, sweep_poll, sh))?;
    let router_stop = Arc::new(AtomicBool::new(false));
    let r = router::Router::new(
        open_central(&cfg)?,
        cfg.data_dir.clone(),
        containers.clone(),
        sweep.clone(),
        channels.clone(),
    );
    let (rk, rs) = (router_kick.clone(), router_stop.clone());
    let router_thread = spawn("router", move || router::run(r, router_poll, rk, rs))?;
    drop(conn);

    let mut web = if cfg.webchat.enabled {
        let ctx =
            Arc::new(webchat::Ctx::new(cfg.clone(), store, hub, router_kick.clone(), containers.clone()));
        let web = Webchat::start(ctx)?;
        let shown = if web.addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", web.addr.port())
        } else {
            web.addr.to_string()
        };
        log::info!("webchat listening on http://{shown}/");
        Some(web)
    } else {
        log::info!("webchat disabled (WEBCHAT_ENABLED=false)");
        None
    };
    // Route anything stored but not routed before the last shutdown.
    router_kick.kick();

    wait_for_signal()?;
    log::info!("shutting down");
    if let Some(w) = web.as_mut() {
        w.stop_accepting();
    }
    router_stop.store(true, Ordering::SeqCst);
    router_kick.kick();
    join("router", router_thread);
    containers.stop_all(CONTAINER_STOP_TIMEOUT);
    delivery.stop();
    for (name, t) in threads {
        join(name, t);
    }
    sweep.stop();
    join("sweep", sweep_thread);
    proxy_handle.stop();
    join("model-proxy", proxy_thread);
    if let Some(w) = web {
        w.shutdown();
    }
    log::info!("stopped");
    Ok(())
}

fn spawn(
    name: &str,
    f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .with_context(|| format!("starting the {name} thread"))
}

fn join(name: &str, t: JoinHandle<anyhow::Result<()>>) {
    match t.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("{name} thread failed: {e:#}"),
        Err(_) => log::error!("{name} thread panicked"),
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    if let Some(sig) = signals.forever().next() {
        log::info!("received signal {sig}");
    }
    Ok(())
}
