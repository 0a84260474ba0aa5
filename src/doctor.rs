//! `pincer doctor`: one line per check of what `pincer run` needs, each failure with its fix.
//!
//! Every check makes the same decision `run` makes (it calls the same loaders), without side
//! effects: nothing is created, renewed or bound for longer than the check. A line is `ok`
//! (works), `warn` (works, but mind this) or `FAIL` (`run` refuses, or the feature cannot work);
//! the exit status is 1 when any line is FAIL.

use std::net::TcpListener;
use std::time::Duration;

use crate::config::{Config, Provider};
use crate::docker::Docker;
use crate::net::TrustedProxies;
use crate::webchat::{push, tls};

/// How long `tailscale status` may take.
const TAILSCALE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: &str) {
        self.failed |= level == Level::Fail;
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag} {what}: {detail}");
    }
}

/// Runs every check; true when none failed.
pub fn run(work_dir: &std::path::Path) -> bool {
    let mut r = Report { failed: false };
    let cfg = match Config::load(work_dir) {
        Ok(cfg) => {
            r.line(Level::Ok, "config", "environment and .env are valid");
            cfg
        }
        Err(e) => {
            r.line(Level::Fail, "config", &format!("{e:#}"));
            return false;
        }
    };
    data_dir(&mut r, &cfg);
    docker(&mut r, &cfg);
    model(&mut r, &cfg);
    if cfg.webchat.enabled {
        port(&mut r, &cfg);
        sign_in(&mut r, &cfg);
        https(&mut r, &cfg);
        notifications(&mut r, &cfg);
    }
    !r.failed
}

fn data_dir(r: &mut Report, cfg: &Config) {
    match std::fs::create_dir_all(&cfg.data_dir).and_then(|()| {
        let probe = cfg.data_dir.join(".doctor-probe");
        std::fs::write(&probe, b"x")?;
        std::fs::remove_file(probe)
    }) {
        Ok(()) => r.line(Level::Ok, "data dir", &format!("{} is writable", cfg.data_dir.display())),
        Err(e) => r.line(
            Level::Fail,
            "data dir",
            &format!("{}: {e} — fix: set PINCER_DATA_DIR to a writable directory", cfg.data_dir.display()),
        ),
    }
}

fn docker(r: &mut Report, cfg: &Config) {
    let docker = Docker::new(&cfg.docker);
    match docker.server_version() {
        Ok(v) => {
            r.line(Level::Ok, "docker", &format!("engine {v} via `{}`", cfg.docker));
            match docker.image_labels(&cfg.image) {
                Ok(Some(_)) => r.line(Level::Ok, "image", &format!("{} exists", cfg.image)),
                Ok(None) => {
                    r.line(Level::Fail, "image", &format!("{} not found — fix: make image", cfg.image))
                }
                Err(e) => r.line(Level::Fail, "image", &format!("{e:#}")),
            }
        }
        Err(e) => r.line(
            Level::Fail,
            "docker",
            &format!("{e:#} — fix: install Docker and start the engine, or set PINCER_DOCKER"),
        ),
    }
}

fn model(r: &mut Report, cfg: &Config) {
    match cfg.provider {
        Provider::Mock => r.line(
            Level::Ok,
            "model",
            "mock provider (no model configured; set ANTHROPIC_API_KEY or OPENAI_BASE_URL for a real one)",
        ),
        Provider::Anthropic if cfg.anthropic.api_key.is_none() && cfg.anthropic.base_url.is_none() => r.line(
            Level::Fail,
            "model",
            "PINCER_PROVIDER=anthropic but ANTHROPIC_API_KEY is not set — fix: set it in .env",
        ),
        Provider::Openai if cfg.openai.base_url.is_none() && cfg.openai.api_key.is_none() => r.line(
            Level::Fail,
            "model",
            "PINCER_PROVIDER=openai but OPENAI_BASE_URL is not set — fix: set it in .env",
        ),
        p => r.line(Level::Ok, "model", &format!("provider {}", p.as_str())),
    }
}

fn port(r: &mut Report, cfg: &Config) {
    let (host, port) = (cfg.webchat.host, cfg.webchat.port);
    match TcpListener::bind((host, port)) {
        Ok(_) => r.line(Level::Ok, "port", &format!("{host}:{port} is free")),
        Err(e) => r.line(
            Level::Fail,
            "port",
            &format!("{host}:{port}: {e} — fix: stop whatever uses it (another pincer?) or set WEBCHAT_PORT"),
        ),
    }
}

/// Who can sign in, and how; Tailscale is asked whether it is up.
fn sign_in(r: &mut Report, cfg: &Config) {
    let wc = &cfg.webchat;
    let mut ways = Vec::new();
    if wc.token.is_some() {
        ways.push("WEBCHAT_TOKEN".to_string());
    }
    if !wc.has_explicit_auth() {
        ways.push("automatically from this machine".to_string());
    }
    let beyond_loopback = !wc.host.is_loopback();
    if beyond_loopback || wc.trusted_proxies.is_set() || wc.tailscale {
        ways.push("invitation links (People)".to_string());
    }
    if beyond_loopback && !(wc.tls_auto || wc.tls_cert.is_some()) {
        r.line(
            Level::Warn,
            "sign-in",
            &format!(
                "plain HTTP on {}: tokens, cookies and messages cross the network unencrypted — fix: WEBCHAT_TLS=auto",
                wc.host
            ),
        );
    }
    match &wc.trusted_proxies {
        TrustedProxies::None => {}
        TrustedProxies::List(list) => {
            let list: Vec<String> = list.iter().map(|c| c.to_string()).collect();
            ways.push(format!("{} from the proxy at {}", wc.trusted_proxy_header, list.join(", ")));
        }
        TrustedProxies::Auto => {
            ways.push("Azure EasyAuth / Cloudflare Access headers".to_string());
            r.line(
                Level::Warn,
                "proxy",
                "WEBCHAT_TRUSTED_PROXY_IPS=auto believes identity headers from any address: make sure the port is \
                 reachable only through Azure App Service or Cloudflare Access, or list the proxy's addresses instead",
            );
        }
    }
    if wc.tailscale {
        ways.push("Tailscale".to_string());
        tailscale(r, &wc.tailscale_bin);
    }
    r.line(Level::Ok, "sign-in", &ways.join("; "));
}

fn tailscale(r: &mut Report, bin: &str) {
    let out = match crate::process::run(bin, &["status", "--json"], TAILSCALE_TIMEOUT) {
        Ok(out) => out,
        Err(e) => {
            return r.line(
                Level::Fail,
                "tailscale",
                &format!(
                    "`{bin} status` failed: {e} — fix: install and start Tailscale (`tailscale up`), or set WEBCHAT_TAILSCALE_BIN"
                ),
            );
        }
    };
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let state = status["BackendState"].as_str().unwrap_or("unknown");
    if state != "Running" {
        return r.line(
            Level::Fail,
            "tailscale",
            &format!(
                "Tailscale is {state}, so nobody on the tailnet can be recognised — fix: `tailscale up`"
            ),
        );
    }
    let name = status["Self"]["DNSName"].as_str().unwrap_or("").trim_end_matches('.');
    let ips: Vec<&str> =
        status["Self"]["TailscaleIPs"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    r.line(Level::Ok, "tailscale", &format!("running; this machine is {name} ({})", ips.join(", ")));
}

fn https(r: &mut Report, cfg: &Config) {
    let Some(source) = tls::Source::from_config(&cfg.webchat, &cfg.data_dir) else {
        return r.line(
            Level::Ok,
            "tls",
            "not configured: plain HTTP (phones need HTTPS to install the app and get notifications: WEBCHAT_TLS=auto)",
        );
    };
    let now = crate::ids::now_ms() / 1000;
    let leaf_line = |r: &mut Report, what: &str, info: &tls::CertInfo| {
        let days = info.days_left(now);
        let detail = format!(
            "{what} for {}, valid until {} ({days} days), SHA-256 {}",
            info.names.join(", "),
            tls::date(info.not_after),
            info.fingerprint
        );
        let level = if days < tls::WARN_DAYS { Level::Warn } else { Level::Ok };
        r.line(level, "tls", &detail);
    };
    match tls::inspect(&source) {
        Ok(tls::Inspection::Files(info)) => {
            leaf_line(r, "certificate", &info);
            if info.days_left(now) < tls::WARN_DAYS {
                r.line(Level::Warn, "tls", "renew the certificate soon, then send pincer SIGHUP to load it");
            }
        }
        Ok(tls::Inspection::Auto { ca, leaf }) => {
            r.line(
                Level::Ok,
                "tls",
                &format!(
                    "pincer's own CA until {}, SHA-256 {} (devices trust it from /trust)",
                    tls::date(ca.not_after),
                    ca.fingerprint
                ),
            );
            match leaf {
                Some(info) => leaf_line(r, "machine certificate", &info),
                None => r.line(Level::Ok, "tls", "the machine certificate is issued at start"),
            }
        }
        Ok(tls::Inspection::AutoFresh) => r.line(
            Level::Ok,
            "tls",
            "WEBCHAT_TLS=auto: pincer's own CA and certificate are made on first start",
        ),
        Err(e) => r.line(Level::Fail, "tls", &format!("{e:#}")),
    }
}

fn notifications(r: &mut Report, cfg: &Config) {
    let wc = &cfg.webchat;
    match push::Vapid::peek(
        &cfg.data_dir,
        wc.vapid_private_key.as_ref().map(|k| k.expose()),
        wc.vapid_public_key.as_deref(),
        wc.vapid_subject.as_deref(),
    ) {
        Ok(Some(v)) => {
            r.line(Level::Ok, "push", &format!("Web Push keys ready (public key {}…)", &v.public[..16]))
        }
        Ok(None) => r.line(Level::Ok, "push", "Web Push keys are made on first start"),
        Err(e) => r.line(Level::Fail, "push", &format!("{e:#}")),
    }
    if let Some(url) = &wc.notify_url {
        let host = url.split("://").nth(1).and_then(|rest| rest.split(['/', '?']).next()).unwrap_or(url);
        r.line(
            Level::Ok,
            "webhook",
            &format!("notifications can also go to {host} (for people who turn it on)"),
        );
    }
}
