//! Host configuration: environment variables (CONTRACT.md §2) plus an automatic `.env` file.
//!
//! Parsed and validated once at start-up into [`Config`], then passed explicitly. This is the
//! only module that reads the process environment for host settings. A bad value stops start-up
//! with an error naming the key and saying what is accepted; an unknown `PINCER_*`/`WEBCHAT_*`
//! key is an error too (usually a typo), with the closest known key suggested.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Every key the host understands, with a one-line description (printed by `pincer --help`).
pub const KEYS: &[(&str, &str)] = &[
    ("PINCER_DATA_DIR", "central DB, session dirs, uploads (default ./data)"),
    ("PINCER_GROUPS_DIR", "agents' working folders (default ./groups)"),
    ("PINCER_IMAGE", "agent image (default pincer-agent-<hash of project root>:latest)"),
    ("PINCER_DOCKER", "docker CLI to run (default docker)"),
    ("PINCER_PROVIDER", "default model provider: anthropic | openai | mock"),
    ("PINCER_LOG", "log levels: info (the default), or per module, e.g. warn,host::router=debug"),
    (
        "PINCER_LOG_FILE",
        "write the log to this file instead of stderr (its size bounded, then rotated to FILE.1)",
    ),
    ("PINCER_LOG_FILE_MAX_MB", "size of the log file before it is rotated, 1-1024 (default 10)"),
    ("PINCER_MAX_CONTAINERS", "agent containers running at once, 1-256 (default 16)"),
    ("PINCER_CONTAINER_IDLE_S", "an idle agent container exits after this many seconds (default 1800)"),
    (
        "PINCER_CONTEXT_TOKENS",
        "context budget of the model in tokens; older turns are trimmed (default per provider)",
    ),
    ("PINCER_MAX_TOKENS", "output limit of one model call in tokens (default 8192)"),
    (
        "PINCER_MODEL_TIMEOUT_S",
        "a model that sends nothing for this many seconds fails the call, 5-86400 (default 600)",
    ),
    ("TZ", "IANA time zone for schedules and the agent's context (default: the host's zone)"),
    ("ANTHROPIC_API_KEY", "Anthropic API key"),
    ("ANTHROPIC_BASE_URL", "Anthropic-protocol endpoint (default https://api.anthropic.com)"),
    ("ANTHROPIC_MODEL", "Anthropic-protocol model name"),
    ("OPENAI_API_KEY", "OpenAI-protocol API key"),
    ("OPENAI_BASE_URL", "OpenAI-protocol endpoint (llama.cpp, vLLM, Ollama, OpenRouter...)"),
    ("OPENAI_MODEL", "OpenAI-protocol model name"),
    ("WEBCHAT_ENABLED", "serve the webchat: true | false (default true)"),
    ("WEBCHAT_HOST", "bind address (default 127.0.0.1)"),
    ("WEBCHAT_PORT", "port, 0 picks a free one (default 3100)"),
    ("WEBCHAT_TOKEN", "bearer token, at least 24 characters"),
    ("WEBCHAT_SEND_RATE", "messages one user may send per minute, 1-100000 (default 120; bursts of 30 pass)"),
    ("WEBCHAT_UPLOAD_MAX_MB", "largest file one upload may bring, in MiB, 1-4096 (default 100)"),
    ("WEBCHAT_TAILSCALE", "true: identify users with tailscale whois"),
    ("WEBCHAT_TAILSCALE_BIN", "the tailscale CLI used for whois (default tailscale)"),
    ("WEBCHAT_TRUSTED_PROXY_IPS", "comma list of IPs/CIDRs (IPv4 and IPv6), or auto"),
    ("WEBCHAT_TRUSTED_PROXY_HEADER", "identity header from the trusted proxy (default x-forwarded-user)"),
    ("WEBCHAT_TLS", "auto: serve HTTPS with a certificate from pincer's own local CA (trust it from /trust)"),
    ("WEBCHAT_TLS_CERT", "PEM certificate chain: serve HTTPS (reloaded on SIGHUP)"),
    ("WEBCHAT_TLS_KEY", "PEM private key for WEBCHAT_TLS_CERT"),
    ("WEBCHAT_PUSH_ALLOW", "comma list of extra push-service origins to accept (e.g. a self-hosted one)"),
    (
        "PINCER_NOTIFY_URL",
        "also post notifications to this ntfy-style or webhook URL (for those who choose it)",
    ),
    ("WEBCHAT_VAPID_PUBLIC_KEY", "Web Push public key (generated if absent)"),
    ("WEBCHAT_VAPID_PRIVATE_KEY", "Web Push private key (generated if absent)"),
    ("WEBCHAT_VAPID_SUBJECT", "Web Push contact, mailto: or https: URL"),
];

/// Bearer tokens shorter than this are refused (guessable).
pub const WEBCHAT_TOKEN_CHARS_MIN: usize = 24;

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} chars>)", self.0.chars().count())
    }
}

/// Which model protocol an agent speaks by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    Openai,
    Mock,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "anthropic" => Some(Provider::Anthropic),
            "openai" => Some(Provider::Openai),
            "mock" => Some(Provider::Mock),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
            Provider::Mock => "mock",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelEndpoint {
    pub api_key: Option<Secret>,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WebchatConfig {
    pub enabled: bool,
    pub host: IpAddr,
    pub port: u16,
    pub token: Option<Secret>,
    pub tailscale: bool,
    /// The `tailscale` CLI used for `whois`.
    pub tailscale_bin: String,
    pub trusted_proxies: crate::net::TrustedProxies,
    pub trusted_proxy_header: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `WEBCHAT_TLS=auto`: HTTPS with a certificate from pincer's own local CA.
    pub tls_auto: bool,
    pub vapid_public_key: Option<String>,
    pub vapid_private_key: Option<Secret>,
    pub vapid_subject: Option<String>,
    /// Extra push-service origins (`WEBCHAT_PUSH_ALLOW`).
    pub push_allow: Vec<String>,
    /// `PINCER_NOTIFY_URL`.
    pub notify_url: Option<String>,
    /// Messages one user may send per minute (a burst of [`SEND_BURST`] passes at once).
    pub send_per_min: u64,
    /// Largest body of an upload (`WEBCHAT_UPLOAD_MAX_MB`, plus room for the form around it).
    pub upload_bytes_max: usize,
    /// Largest file of an upload.
    pub upload_file_bytes_max: u64,
}

/// Bytes an upload's form may add around its file (boundaries, headers, caption).
pub const UPLOAD_FORM_BYTES: usize = 128 * 1024;

/// Messages a user may send at once before `WEBCHAT_SEND_RATE` applies.
pub const SEND_BURST: u64 = 30;

impl WebchatConfig {
    /// True when some explicit authentication method is configured; then loopback requests no
    /// longer pass automatically.
    pub fn has_explicit_auth(&self) -> bool {
        self.token.is_some() || self.tailscale || self.trusted_proxies.is_set()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The directory `.env` was looked up in and relative paths are resolved against.
    pub work_dir: PathBuf,
    pub data_dir: PathBuf,
    pub groups_dir: PathBuf,
    pub image: String,
    pub docker: String,
    pub provider: Provider,
    pub log_levels: crate::logger::Levels,
    /// `PINCER_LOG_FILE`, with its size bound in bytes.
    pub log_file: Option<(PathBuf, u64)>,
    pub max_containers: usize,
    pub container_idle_s: u64,
    pub context_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Seconds a model may send nothing (before its answer starts, and between its bytes).
    pub model_timeout_s: u64,
    pub tz: String,
    pub anthropic: ModelEndpoint,
    pub openai: ModelEndpoint,
    pub webchat: WebchatConfig,
}

impl Config {
    /// Loads from the process environment plus `<work_dir>/.env` (the process environment wins).
    pub fn load(work_dir: &Path) -> anyhow::Result<Config> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let dotenv = work_dir.join(".env");
        match std::fs::read_to_string(&dotenv) {
            Ok(text) => {
                for (k, v) in parse_dotenv(&text).with_context(|| format!("reading {}", dotenv.display()))? {
                    env.insert(k, v);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", dotenv.display())),
        }
        #[allow(clippy::disallowed_methods)]
        for (k, v) in std::env::vars_os() {
            if let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) {
                env.insert(k, v);
            }
        }
        Config::from_map(work_dir, &env)
    }

    /// Builds a config from explicit key/values (used by `load` and by tests).
    pub fn from_map(work_dir: &Path, env: &BTreeMap<String, String>) -> anyhow::Result<Config> {
        check_unknown_keys(env)?;
        let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let path = |k: &str, default: &str| -> PathBuf {
            let p = PathBuf::from(get(k).unwrap_or(default));
            if p.is_absolute() { p } else { work_dir.join(p) }
        };

        let anthropic = ModelEndpoint {
            api_key: get("ANTHROPIC_API_KEY").map(|s| Secret(s.to_string())),
            base_url: get("ANTHROPIC_BASE_URL").map(|s| parse_url("ANTHROPIC_BASE_URL", s)).transpose()?,
            model: get("ANTHROPIC_MODEL").map(str::to_string),
        };
        let openai = ModelEndpoint {
            api_key: get("OPENAI_API_KEY").map(|s| Secret(s.to_string())),
            base_url: get("OPENAI_BASE_URL").map(|s| parse_url("OPENAI_BASE_URL", s)).transpose()?,
            model: get("OPENAI_MODEL").map(str::to_string),
        };
        let provider = match get("PINCER_PROVIDER") {
            Some(s) => Provider::parse(s).with_context(|| {
                format!("invalid PINCER_PROVIDER={s:?}: expected anthropic, openai or mock")
            })?,
            None if anthropic.api_key.is_some() => Provider::Anthropic,
            None if openai.base_url.is_some() => Provider::Openai,
            None => Provider::Mock,
        };

        let mut webchat = WebchatConfig {
            enabled: parse_bool(env, "WEBCHAT_ENABLED", true)?,
            host: match get("WEBCHAT_HOST") {
                None => IpAddr::from([127, 0, 0, 1]),
                Some("localhost") => IpAddr::from([127, 0, 0, 1]),
                Some(s) => s.parse().ok().with_context(|| {
                    format!(
                        "invalid WEBCHAT_HOST={s:?}: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::"
                    )
                })?,
            },
            port: match get("WEBCHAT_PORT") {
                None => 3100,
                Some(s) => s.parse().ok().with_context(|| {
                    format!(
                        "invalid WEBCHAT_PORT={s:?}: expected a port number 0-65535 (0 picks a free port)"
                    )
                })?,
            },
            token: match get("WEBCHAT_TOKEN") {
                None => None,
                Some(t) if t.chars().count() < WEBCHAT_TOKEN_CHARS_MIN => bail!(
                    "invalid WEBCHAT_TOKEN: it has {} characters, at least {WEBCHAT_TOKEN_CHARS_MIN} are required \
                     (generate one with: head -c 24 /dev/urandom | base64)",
                    t.chars().count()
                ),
                Some(t) => Some(Secret(t.to_string())),
            },
            tailscale: parse_bool(env, "WEBCHAT_TAILSCALE", false)?,
            tailscale_bin: get("WEBCHAT_TAILSCALE_BIN").unwrap_or("tailscale").to_string(),
            trusted_proxies: match get("WEBCHAT_TRUSTED_PROXY_IPS") {
                None => crate::net::TrustedProxies::None,
                Some(s) => crate::net::TrustedProxies::parse(s).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid WEBCHAT_TRUSTED_PROXY_IPS: {e}; expected a comma list of IP addresses or CIDR ranges (10.0.0.0/8, fd00::/8) or auto"
                    )
                })?,
            },
            trusted_proxy_header: get("WEBCHAT_TRUSTED_PROXY_HEADER")
                .unwrap_or("x-forwarded-user")
                .to_ascii_lowercase(),
            tls_cert: get("WEBCHAT_TLS_CERT").map(|_| path("WEBCHAT_TLS_CERT", "")),
            tls_key: get("WEBCHAT_TLS_KEY").map(|_| path("WEBCHAT_TLS_KEY", "")),
            tls_auto: match get("WEBCHAT_TLS") {
                None => false,
                Some("auto") => true,
                Some(other) => bail!(
                    "invalid WEBCHAT_TLS={other:?}: the only value is auto (pincer's own CA); for your own certificate set WEBCHAT_TLS_CERT and WEBCHAT_TLS_KEY"
                ),
            },
            vapid_public_key: get("WEBCHAT_VAPID_PUBLIC_KEY").map(str::to_string),
            vapid_private_key: get("WEBCHAT_VAPID_PRIVATE_KEY").map(|s| Secret(s.to_string())),
            vapid_subject: get("WEBCHAT_VAPID_SUBJECT").map(str::to_string),
            push_allow: match get("WEBCHAT_PUSH_ALLOW") {
                None => Vec::new(),
                Some(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(|o| {
                        let o = o.trim_end_matches('/');
                        let ok = (o.starts_with("https://") || o.starts_with("http://"))
                            && !o.split_once("://").map_or("", |(_, h)| h).contains('/');
                        if ok {
                            Ok(o.to_ascii_lowercase())
                        } else {
                            Err(anyhow::anyhow!(
                                "invalid WEBCHAT_PUSH_ALLOW entry {o:?}: expected an origin such as https://push.example.org"
                            ))
                        }
                    })
                    .collect::<anyhow::Result<_>>()?,
            },
            notify_url: get("PINCER_NOTIFY_URL").map(|s| parse_url("PINCER_NOTIFY_URL", s)).transpose()?,
            send_per_min: parse_range(env, "WEBCHAT_SEND_RATE", 120, 1, 100_000)?,
            upload_bytes_max: 0,
            upload_file_bytes_max: parse_range(env, "WEBCHAT_UPLOAD_MAX_MB", 100, 1, 4096)? << 20,
        };
        webchat.upload_bytes_max = webchat.upload_file_bytes_max as usize + UPLOAD_FORM_BYTES;
        if webchat.tls_auto && webchat.tls_cert.is_some() {
            bail!(
                "WEBCHAT_TLS=auto and WEBCHAT_TLS_CERT are both set: choose pincer's own CA or your certificate, not both"
            );
        }
        if webchat.tls_cert.is_some() != webchat.tls_key.is_some() {
            bail!("invalid WEBCHAT_TLS_CERT/WEBCHAT_TLS_KEY: set both (PEM certificate and key) or neither");
        }
        // Beyond the loopback, people need a way in that is not the loopback auto-pass: a token,
        // Tailscale or a proxy, or HTTPS, over which invitation links (made on this machine)
        // sign them in. Plain HTTP with none of these would only ever answer 401, or worse.
        let tls = webchat.tls_auto || webchat.tls_cert.is_some();
        if webchat.enabled && !webchat.host.is_loopback() && !webchat.has_explicit_auth() && !tls {
            bail!(
                "refusing to serve the webchat on WEBCHAT_HOST={} without a way to sign in: set WEBCHAT_TOKEN \
                 (24+ characters), WEBCHAT_TAILSCALE=true or WEBCHAT_TRUSTED_PROXY_IPS, or WEBCHAT_TLS=auto \
                 (then invite people from this machine), or bind to 127.0.0.1",
                webchat.host
            );
        }

        let tz = match get("TZ") {
            Some(tz) => {
                let tz = tz.trim_start_matches(':');
                if !is_valid_tz(tz) {
                    bail!("invalid TZ={tz:?}: expected an IANA time zone name such as Europe/Berlin or UTC");
                }
                tz.to_string()
            }
            None => host_tz(),
        };

        Ok(Config {
            work_dir: work_dir.to_path_buf(),
            data_dir: path("PINCER_DATA_DIR", "data"),
            groups_dir: path("PINCER_GROUPS_DIR", "groups"),
            image: match get("PINCER_IMAGE") {
                Some(s) => parse_image(s)?,
                None => default_image(work_dir),
            },
            docker: get("PINCER_DOCKER").unwrap_or("docker").to_string(),
            provider,
            log_levels: match get("PINCER_LOG") {
                None => crate::logger::Levels::all(log::LevelFilter::Info),
                Some(s) => crate::logger::Levels::parse(s).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid PINCER_LOG={s:?}: {e}; use a level (error, warn, info, debug, trace) or \
                         module=level pairs, e.g. warn,host::router=debug"
                    )
                })?,
            },
            log_file: match get("PINCER_LOG_FILE") {
                None => None,
                Some(_) => Some((
                    path("PINCER_LOG_FILE", ""),
                    parse_range(env, "PINCER_LOG_FILE_MAX_MB", 10, 1, 1024)? << 20,
                )),
            },
            max_containers: parse_range(env, "PINCER_MAX_CONTAINERS", 16, 1, 256)? as usize,
            container_idle_s: parse_range(env, "PINCER_CONTAINER_IDLE_S", 1800, 10, 7 * 86_400)?,
            context_tokens: get("PINCER_CONTEXT_TOKENS")
                .map(|_| parse_range(env, "PINCER_CONTEXT_TOKENS", 0, 1000, 10_000_000))
                .transpose()?,
            max_tokens: get("PINCER_MAX_TOKENS")
                .map(|_| parse_range(env, "PINCER_MAX_TOKENS", 0, 16, 1_000_000))
                .transpose()?,
            model_timeout_s: parse_range(env, "PINCER_MODEL_TIMEOUT_S", 600, 5, 86_400)?,
            tz,
            anthropic,
            openai,
            webchat,
        })
    }

    /// The model endpoint of a provider, if any.
    pub fn endpoint(&self, p: Provider) -> Option<&ModelEndpoint> {
        match p {
            Provider::Anthropic => Some(&self.anthropic),
            Provider::Openai => Some(&self.openai),
            Provider::Mock => None,
        }
    }
}

/// `pincer-agent-<first 8 hex of sha1(absolute project root)>:latest`.
/// Where room files are stored: what people upload and what agents send.
pub fn uploads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("webchat").join("uploads")
}

pub fn default_image(work_dir: &Path) -> String {
    let root = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    let hex = sha1_smol::Sha1::from(root.as_os_str().as_encoded_bytes()).digest().to_string();
    format!("pincer-agent-{}:latest", &hex[..8])
}

fn check_unknown_keys(env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for key in env.keys() {
        let ours = key.starts_with("PINCER_") || key.starts_with("WEBCHAT_");
        if !ours || KEYS.iter().any(|(k, _)| k == key) {
            continue;
        }
        let closest = KEYS
            .iter()
            .map(|(k, _)| (edit_distance(key, k), *k))
            .min()
            .filter(|(d, _)| *d <= 3)
            .map(|(_, k)| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        bail!("unknown configuration key {key}{closest}; run `pincer --help` for the list of keys");
    }
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_bool(env: &BTreeMap<String, String>, key: &str, default: bool) -> anyhow::Result<bool> {
    match env.get(key).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) if s.is_empty() => Ok(default),
        Some(s) => match s.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => bail!("invalid {key}={s:?}: expected true or false"),
        },
    }
}

fn parse_range(
    env: &BTreeMap<String, String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> anyhow::Result<u64> {
    match env.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => bail!("invalid {key}={s:?}: expected a whole number from {min} to {max}"),
        },
    }
}

fn parse_url(key: &str, s: &str) -> anyhow::Result<String> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        bail!("invalid {key}={s:?}: expected an http:// or https:// URL such as http://127.0.0.1:8080/v1");
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn parse_image(s: &str) -> anyhow::Result<String> {
    let ok = s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        bail!("invalid PINCER_IMAGE={s:?}: expected a docker image reference such as my-agent:latest");
    }
    Ok(s.to_string())
}

/// Parses `.env` text: `KEY=value` lines, `#` comments, optional `export `, single or double
/// quotes (double quotes understand `\n`, `\"` and `\\`).
pub fn parse_dotenv(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=value, got {raw:?}", idx + 1);
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("line {}: invalid key {key:?}", idx + 1);
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            let Some(inner) = inner.strip_suffix('"') else {
                bail!("line {}: unterminated double quote in {key}", idx + 1);
            };
            unescape_double(inner)
        } else if let Some(inner) = value.strip_prefix('\'') {
            let Some(inner) = inner.strip_suffix('\'') else {
                bail!("line {}: unterminated single quote in {key}", idx + 1);
            };
            inner.to_string()
        } else {
            // An unquoted value ends at ` #` (inline comment).
            value.split(" #").next().unwrap_or("").trim_end().to_string()
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A time zone name is valid when it is UTC or names a file in the host's zoneinfo database.
pub fn is_valid_tz(tz: &str) -> bool {
    if tz == "UTC" || tz == "Etc/UTC" {
        return true;
    }
    let safe = !tz.is_empty()
        && tz.len() <= 64
        && !tz.starts_with('/')
        && !tz.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && tz.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    safe && Path::new("/usr/share/zoneinfo").join(tz).is_file()
}

/// The host's zone from `/etc/timezone` or the `/etc/localtime` link, else UTC.
fn host_tz() -> String {
    if let Ok(s) = std::fs::read_to_string("/etc/timezone") {
        let s = s.trim();
        if is_valid_tz(s) {
            return s.to_string();
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy();
        if let Some((_, name)) = target.split_once("zoneinfo/")
            && is_valid_tz(name)
        {
            return name.to_string();
        }
    }
    "UTC".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_map(Path::new("/srv/pincer"), &env)
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/pincer/data"));
        assert_eq!(c.groups_dir, PathBuf::from("/srv/pincer/groups"));
        assert_eq!(c.webchat.port, 3100);
        assert_eq!(c.webchat.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.provider, Provider::Mock);
        assert!(c.image.starts_with("pincer-agent-") && c.image.ends_with(":latest"));
        assert_eq!(c.image.len(), "pincer-agent-12345678:latest".len());
    }

    #[test]
    fn provider_defaults_follow_credentials() {
        assert_eq!(load(&[("ANTHROPIC_API_KEY", "k")]).unwrap().provider, Provider::Anthropic);
        assert_eq!(load(&[("OPENAI_BASE_URL", "http://x:1/v1")]).unwrap().provider, Provider::Openai);
        let c = load(&[("ANTHROPIC_API_KEY", "k"), ("PINCER_PROVIDER", "mock")]).unwrap();
        assert_eq!(c.provider, Provider::Mock);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (pairs, needle) in [
            (vec![("WEBCHAT_PORT", "abc")], "WEBCHAT_PORT"),
            (vec![("WEBCHAT_HOST", "nope")], "WEBCHAT_HOST"),
            (vec![("WEBCHAT_TOKEN", "short")], "WEBCHAT_TOKEN"),
            (vec![("PINCER_PROVIDER", "gpt")], "PINCER_PROVIDER"),
            (vec![("PINCER_PORT", "1")], "PINCER_PORT"),
            (vec![("WEBCHAT_ENABLED", "maybe")], "WEBCHAT_ENABLED"),
            (vec![("TZ", "Mars/Olympus")], "TZ"),
            (vec![("OPENAI_BASE_URL", "localhost:8080")], "OPENAI_BASE_URL"),
            (vec![("PINCER_MAX_CONTAINERS", "0")], "PINCER_MAX_CONTAINERS"),
            (vec![("PINCER_CONTEXT_TOKENS", "lots")], "PINCER_CONTEXT_TOKENS"),
            (vec![("PINCER_MAX_TOKENS", "5")], "PINCER_MAX_TOKENS"),
            (vec![("WEBCHAT_TRUSTED_PROXY_IPS", "10.0.0.0/99")], "WEBCHAT_TRUSTED_PROXY_IPS"),
            (vec![("WEBCHAT_TLS_CERT", "c.pem")], "WEBCHAT_TLS"),
        ] {
            let err = format!("{:#}", load(&pairs).unwrap_err());
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let err = format!("{:#}", load(&[("WEBCHAT_PROT", "1")]).unwrap_err());
        assert!(err.contains("WEBCHAT_PROT") && err.contains("did you mean WEBCHAT_PORT"), "{err}");
    }

    #[test]
    fn refuses_public_bind_without_auth() {
        let err = format!("{:#}", load(&[("WEBCHAT_HOST", "0.0.0.0")]).unwrap_err());
        assert!(err.contains("refusing"), "{err}");
        let token = "x".repeat(24);
        assert!(load(&[("WEBCHAT_HOST", "0.0.0.0"), ("WEBCHAT_TOKEN", &token)]).is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = load(&[("ANTHROPIC_API_KEY", "sk-ant-very-secret")]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
    }

    #[test]
    fn dotenv_parsing() {
        let text = "# comment\nexport A=1\nB = \"two\\nlines\"\nC='raw \\n'\nD=val # note\n\nE=\n";
        let got = parse_dotenv(text).unwrap();
        let want = [("A", "1"), ("B", "two\nlines"), ("C", "raw \\n"), ("D", "val"), ("E", "")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(parse_dotenv("NOEQUALS\n").is_err());
        assert!(parse_dotenv("A=\"open\n").is_err());
    }
}
