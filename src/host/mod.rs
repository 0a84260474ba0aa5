//! The host: start-up, the concern threads, and graceful shutdown. This module is the
//! composition root: it builds every part, gives each thread its mailbox (one closed message
//! enum per thread) and routes the container registry's [`ContainerEvent`]s to delivery and the
//! sweep, so no module below it needs to know another thread.
//!
//! Start-up order: lock the data directory, open and migrate the central DB, create the first
//! agent on a fresh install, probe docker and the agent image (a failure is reported, not fatal:
//! the webchat comes up and agents start once docker is back), adopt or remove the containers an
//! earlier run left (whatever state they are in), start delivery, sweep and router (each on its
//! own mio `Poll`), the exit watcher, then the webchat. SIGINT/SIGTERM: stop accepting, stop the
//! router, stop the containers, let delivery finish what they wrote, stop the sweep, close the
//! sockets, join every thread.

pub mod a2a;
pub mod agents;
pub mod approvals;
pub mod backoff;
pub mod channels;
pub mod containers;
pub mod delivery;
pub mod engage;
pub mod image;
pub mod links;
pub mod lock;
pub mod outcomes;
pub mod pictures;
pub mod proxy;
pub mod rooms;
pub mod router;
pub mod runtime;
pub mod sessions;
pub mod sweep;
pub mod tasks;
pub mod workers;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use mio::Poll;

use self::channels::Channels;
use self::containers::{ContainerEvent, Containers, RunnerConfig};
use self::delivery::DeliveryMsg;
use self::links::{LinkSet, Links};
use self::router::RouterMsg;
use self::runtime::Runtime;
use self::sweep::SweepMsg;
use crate::config::Config;
use crate::db::{self, Kind, central};
use crate::docker::Docker;
use crate::ids::now_ms;
use crate::mailbox::Mailbox;
use crate::webchat::{self, Webchat};

/// How long shutdown waits for containers to exit.
pub const CONTAINER_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Tokens below this in delivery's poll are its own; the link set uses the rest.
const LINK_TOKENS_FROM: usize = 16;

/// Path of the central DB.
pub fn central_db(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("pincer.db")
}

fn ensure_dirs(cfg: &Config) -> anyhow::Result<()> {
    for dir in [&cfg.data_dir, &cfg.groups_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Creates the data and groups directories and opens (migrating) the central DB.
pub fn open_central(cfg: &Config) -> anyhow::Result<db::Connection> {
    ensure_dirs(cfg)?;
    db::open(&central_db(cfg), Kind::Central)
}

/// Runs the host until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    crate::alloc::limit_arenas();
    ensure_dirs(&cfg)?;
    // Before anything touches the data: a second host on it is refused here.
    let _lock = lock::acquire(&cfg.data_dir)?;
    if let Some(copy) =
        crate::backup::before_upgrade(&cfg.data_dir).context("keeping a copy before the upgrade")?
    {
        log::info!(
            "upgrading the central database; its previous version is kept at {} (to roll back: stop pincer, \
             copy it over {}, run the older pincer)",
            copy.display(),
            central_db(&cfg).display()
        );
    }
    let mut conn = open_central(&cfg)?;
    central::reset_container_status(&conn)?;
    agents::ensure_first_agent(&mut conn, &cfg.groups_dir, now_ms())?;

    // Before anything starts: a certificate that cannot work stops start-up with what to fix.
    let tls = match webchat::tls::Source::from_config(&cfg.webchat, &cfg.data_dir) {
        Some(source) if cfg.webchat.enabled => {
            let names = webchat::tls::machine_names(cfg.webchat.host);
            Some(Arc::new(webchat::tls::Tls::load(source, names).context("setting up HTTPS")?))
        }
        _ => None,
    };
    let docker = Docker::new(&cfg.docker);
    let runtime: Arc<dyn Runtime> = Arc::new(docker);
    match runtime.probe() {
        Ok(version) => log::info!("docker {version}, image {}, data {}", cfg.image, cfg.data_dir.display()),
        Err(e) => log::error!("{e:#}; agents start once docker is reachable (`pincer doctor` checks it)"),
    }
    match runtime.image_exists(&cfg.image) {
        Ok(true) => {}
        Ok(false) => log::error!(
            "the agent image {} does not exist: build it with `make image` (or `pincer image build`); agents cannot start until then",
            cfg.image
        ),
        Err(e) => log::debug!("checking the agent image: {e:#}"),
    }
    let install = RunnerConfig::install_id(&cfg.data_dir);

    let router_poll = Poll::new()?;
    let router_mb: Mailbox<RouterMsg> = Mailbox::new(router_poll.registry())?;
    let delivery_poll = Poll::new()?;
    let delivery_mb: Mailbox<DeliveryMsg> = Mailbox::new(delivery_poll.registry())?;
    let sweep_poll = Poll::new()?;
    let sweep_mb: Mailbox<SweepMsg> = Mailbox::new(sweep_poll.registry())?;

    let runner = RunnerConfig {
        image: cfg.image.clone(),
        data_dir: cfg.data_dir.clone(),
        groups_dir: cfg.groups_dir.clone(),
        install: install.clone(),
        user: RunnerConfig::owner_of(&cfg.data_dir)?,
        tz: cfg.tz.clone(),
        default_provider: cfg.provider.as_str().to_string(),
        anthropic_model: cfg.anthropic.model.clone(),
        openai_model: cfg.openai.model.clone(),
        idle_exit_s: cfg.container_idle_s,
        max_containers: cfg.max_containers,
        log_level: cfg.log_levels.for_target("pincer::agent").to_string().to_lowercase(),
        extra_env: [
            ("PINCER_CONTEXT_TOKENS", cfg.context_tokens),
            ("PINCER_MAX_TOKENS", cfg.max_tokens),
            ("PINCER_MODEL_TIMEOUT_S", Some(cfg.model_timeout_s)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
        .collect(),
    };
    let links = Arc::new(Links::default());
    let (dmb, smb) = (delivery_mb.clone(), sweep_mb.clone());
    let route_event = move |ev: ContainerEvent| match ev {
        ContainerEvent::Sockets { session, sockets } => dmb.post(DeliveryMsg::Listen { session, sockets }),
        ContainerEvent::Exited(report) => {
            dmb.post(DeliveryMsg::Gone(report.session_id.clone()));
            smb.post(SweepMsg::Exited(report));
        }
    };
    let containers = Arc::new(Containers::new(runner, runtime.clone(), links.clone(), Box::new(route_event)));
    match containers.adopt(&conn) {
        Ok((0, 0)) => {}
        Ok((adopted, removed)) => {
            log::info!("{adopted} agent container(s) of an earlier run adopted, {removed} removed")
        }
        Err(e) => log::error!("looking for containers of an earlier run: {e:#}"),
    }
    let c = containers.clone();
    let mut watch = runtime.watch(&install, Box::new(move |w| c.watched(w)))?;
    let model_proxy = Arc::new(proxy::Proxy::new(proxy::ProxyConfig::from_config(&cfg), central_db(&cfg)));

    let store = Arc::new(webchat::store::Store::new(&central_db(&cfg)));
    let indexer = Arc::new(webchat::indexer::Indexer::start(&central_db(&cfg))?);
    store.index_with(indexer.clone());
    let hub = Arc::new(webchat::hub::Hub::default());
    let wc = &cfg.webchat;
    let vapid = webchat::push::Vapid::load(
        &cfg.data_dir,
        wc.vapid_private_key.as_ref().map(|k| k.expose()),
        wc.vapid_public_key.as_deref(),
        wc.vapid_subject.as_deref(),
    )?;
    let notifier = Arc::new(webchat::push::Notifier::start(&central_db(&cfg), vapid, wc.notify_url.clone())?);
    let mut channels = Channels::default();
    channels.register(Arc::new(webchat::adapter::WebchatChannel {
        store: store.clone(),
        hub: hub.clone(),
        uploads: crate::config::uploads_dir(&cfg.data_dir),
        streams: Default::default(),
        notifier: Some(notifier.clone()),
    }));

    let outcomes = outcomes::Outcomes::default();
    let d = delivery::Delivery {
        central: open_central(&cfg)?,
        data_dir: cfg.data_dir.clone(),
        groups_dir: cfg.groups_dir.clone(),
        channels: channels.clone(),
        containers: containers.clone(),
        links: LinkSet::new(links.clone(), proxy::handler(model_proxy), LINK_TOKENS_FROM),
        sweep: sweep_mb.clone(),
        tz: zone(&cfg.tz),
        outcomes: outcomes.clone(),
    };
    let dmb = delivery_mb.clone();
    let delivery_thread = spawn("delivery", move || delivery::run(d, delivery_poll, dmb))?;
    let s = sweep::Sweep {
        central: open_central(&cfg)?,
        data_dir: cfg.data_dir.clone(),
        containers: containers.clone(),
        channels: channels.clone(),
        told_engine_down: HashSet::new(),
        tz: zone(&cfg.tz),
        seen: HashMap::new(),
    };
    let smb = sweep_mb.clone();
    let sweep_thread = spawn("sweep", move || sweep::run(s, sweep_poll, smb))?;
    let r = router::Router::new(
        open_central(&cfg)?,
        cfg.data_dir.clone(),
        containers.clone(),
        sweep_mb.clone(),
        channels.clone(),
        outcomes,
    );
    let rmb = router_mb.clone();
    let router_thread = spawn("router", move || router::run(r, router_poll, rmb))?;
    drop(conn);

    let mut web = if cfg.webchat.enabled {
        let ctx = Arc::new(webchat::Ctx::new(
            cfg.clone(),
            store,
            hub,
            webchat::HostHandles {
                router: router_mb.clone(),
                sweep: sweep_mb.clone(),
                links: links.clone(),
                containers: containers.clone(),
                channels: channels.clone(),
            },
            tls.clone(),
            notifier.clone(),
        ));
        let web = Webchat::start(ctx)?;
        let shown = if web.addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", web.addr.port())
        } else {
            web.addr.to_string()
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        log::info!("webchat listening on {scheme}://{shown}/");
        if wc.trusted_proxies == crate::net::TrustedProxies::Auto {
            log::warn!(
                "WEBCHAT_TRUSTED_PROXY_IPS=auto believes Azure EasyAuth / Cloudflare Access identity headers from any \
                 address: the port must be reachable only through that front end"
            );
        }
        if let Some(t) = &tls
            && t.ca().is_some()
        {
            log::info!(
                "to trust pincer's certificate on a phone, open http://<this machine>:{}/trust",
                web.addr.port()
            );
        }
        Some(web)
    } else {
        log::info!("webchat disabled (WEBCHAT_ENABLED=false)");
        None
    };
    // Route anything stored but not routed before the last shutdown.
    router_mb.post(RouterMsg::Route);

    wait_for_signal(tls.as_deref())?;
    log::info!("shutting down");
    if let Some(w) = web.as_mut() {
        w.stop_accepting();
    }
    router_mb.post(RouterMsg::Stop);
    join("router", router_thread);
    containers.stop_all(CONTAINER_STOP_TIMEOUT);
    watch.stop();
    delivery_mb.post(DeliveryMsg::Stop);
    join("delivery", delivery_thread);
    sweep_mb.post(SweepMsg::Stop);
    join("sweep", sweep_thread);
    if let Some(w) = web {
        w.shutdown();
    }
    notifier.stop();
    indexer.stop();
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

/// Waits for SIGINT or SIGTERM; SIGHUP meanwhile reloads the TLS certificate.
fn wait_for_signal(tls: Option<&webchat::tls::Tls>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    for sig in signals.forever() {
        if sig == SIGHUP {
            match tls.map(|t| t.reload()) {
                Some(Ok(info)) => log::info!(
                    "reloaded the TLS certificate: valid until {}, for {}",
                    webchat::tls::date(info.not_after),
                    info.names.join(", ")
                ),
                Some(Err(e)) => {
                    log::error!("reloading the TLS certificate: {e:#}; the previous one stays in use")
                }
                None => log::info!("SIGHUP: nothing to reload (no TLS configured)"),
            }
            continue;
        }
        log::info!("received signal {sig}");
        break;
    }
    Ok(())
}

/// The configured zone (validated at start-up; UTC if it cannot be found after all).
fn zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}
