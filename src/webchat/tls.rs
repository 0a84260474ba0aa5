//! HTTPS and WSS on the public port (rustls 0.23 on ring).
//!
//! Two sources: PEM files (`WEBCHAT_TLS_CERT`, `WEBCHAT_TLS_KEY`), or `WEBCHAT_TLS=auto`, where
//! pincer is its own local certificate authority: it creates a CA once (`data/tls/ca.*`) and
//! issues a certificate for this machine's names and addresses, again whenever they change or
//! the certificate nears its end. A phone trusts the CA once, from the enrolment page `/trust`,
//! and then has a secure context on a bare LAN (service worker, push, microphone). Keys are
//! written with mode 0600. Start-up refuses unreadable, mismatched, expired or not-yet-valid
//! files with what to do; SIGHUP reloads the files without a restart.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::WebchatConfig;

/// Lifetime of an issued machine certificate (within what browsers accept for any leaf).
pub const LEAF_DAYS: i64 = 397;
/// A machine certificate is issued again this close to its end.
pub const RENEW_DAYS: i64 = 30;
/// Lifetime of the local CA.
pub const CA_DAYS: i64 = 10 * 365;
/// `pincer doctor` warns this close to a certificate's end.
pub const WARN_DAYS: i64 = 14;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// pincer's own CA, in this directory.
    Auto {
        dir: PathBuf,
    },
}

impl Source {
    pub fn from_config(cfg: &WebchatConfig, data_dir: &Path) -> Option<Source> {
        if cfg.tls_auto {
            return Some(Source::Auto { dir: data_dir.join("tls") });
        }
        match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(Source::Files { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub names: Vec<String>,
    /// SHA-256 of the DER, as `AB:CD:…`.
    pub fingerprint: String,
}

impl CertInfo {
    pub fn days_left(&self, now_s: i64) -> i64 {
        (self.not_after - now_s).div_euclid(86_400)
    }
}

/// The local CA, for the enrolment page.
#[derive(Debug, Clone)]
pub struct Ca {
    pub pem: String,
    pub der: Vec<u8>,
    pub info: CertInfo,
}

/// The running TLS state: the server config (swapped on reload) and, in auto mode, the CA.
pub struct Tls {
    source: Source,
    names: Names,
    config: RwLock<Arc<ServerConfig>>,
    leaf: RwLock<CertInfo>,
    ca: Option<Ca>,
}

/// The names and addresses a machine certificate covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Tls {
    /// Loads (or in auto mode, creates or renews) the certificate; errors say what to fix.
    pub fn load(source: Source, names: Names) -> anyhow::Result<Tls> {
        let now = crate::ids::now_ms() / 1000;
        let (certs, key, ca) = match &source {
            Source::Files { cert, key } => {
                let (certs, key) = read_files(cert, key)?;
                (certs, key, None)
            }
            Source::Auto { dir } => {
                let ca = ensure_auto(dir, &names, now)?;
                let (certs, key) = read_files(&dir.join("leaf.crt"), &dir.join("leaf.key"))?;
                (certs, key, Some(ca))
            }
        };
        let leaf = check_chain(&source, &certs, &key, now)?;
        let config = server_config(certs, key)?;
        Ok(Tls { source, names, config: RwLock::new(Arc::new(config)), leaf: RwLock::new(leaf), ca })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn ca(&self) -> Option<&Ca> {
        self.ca.as_ref()
    }

    pub fn leaf(&self) -> CertInfo {
        self.leaf.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again (SIGHUP); on failure the running certificate stays.
    pub fn reload(&self) -> anyhow::Result<CertInfo> {
        let fresh = Tls::load(self.source.clone(), self.names.clone())?;
        let info = fresh.leaf();
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = fresh.config();
        *self.leaf.write().unwrap_or_else(|e| e.into_inner()) = info.clone();
        Ok(info)
    }
}

/// What `pincer doctor` reports about HTTPS: the checks `Tls::load` makes, without creating or
/// renewing anything.
pub enum Inspection {
    /// Certificate files that `run` accepts: the leaf's dates and names.
    Files(CertInfo),
    /// pincer's own CA exists; the machine certificate, if there is a usable one (else `run`
    /// issues one).
    Auto { ca: CertInfo, leaf: Option<CertInfo> },
    /// `WEBCHAT_TLS=auto` on a fresh data directory: the CA is made on first start.
    AutoFresh,
}

pub fn inspect(source: &Source) -> anyhow::Result<Inspection> {
    let now = crate::ids::now_ms() / 1000;
    match source {
        Source::Files { cert, key } => {
            let (certs, key) = read_files(cert, key)?;
            let info = check_chain(source, &certs, &key, now)?;
            server_config(certs, key)?;
            Ok(Inspection::Files(info))
        }
        Source::Auto { dir } => {
            let ca_file = dir.join("ca.crt");
            let Ok(pem) = std::fs::read(&ca_file) else { return Ok(Inspection::AutoFresh) };
            let der = CertificateDer::from_pem_slice(&pem)
                .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate ({e})", ca_file.display()))?;
            let ca = cert_info(&der).with_context(|| format!("reading {}", ca_file.display()))?;
            if now >= ca.not_after {
                bail!(
                    "the local CA in {} expired on {}: move data/tls away to make a new one (devices must trust it again)",
                    dir.display(),
                    date(ca.not_after)
                );
            }
            let leaf = read_files(&dir.join("leaf.crt"), &dir.join("leaf.key"))
                .and_then(|(certs, key)| check_chain(source, &certs, &key, now))
                .ok();
            Ok(Inspection::Auto { ca, leaf })
        }
    }
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not work together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_files(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_bytes = std::fs::read(cert).with_context(|| {
        format!("cannot read WEBCHAT_TLS_CERT={}: check the path and its permissions", cert.display())
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate chain ({e})", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)", cert.display());
    }
    let key_bytes = std::fs::read(key).with_context(|| {
        format!("cannot read WEBCHAT_TLS_KEY={}: check the path and its permissions", key.display())
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| anyhow::anyhow!("{} holds no PEM private key ({e})", key.display()))?;
    Ok((certs, key))
}

/// The leaf's dates and names, after checking it matches the key and is valid now.
fn check_chain(
    source: &Source,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    now: i64,
) -> anyhow::Result<CertInfo> {
    let (cert_path, key_path) = match source {
        Source::Files { cert, key } => (cert.display().to_string(), key.display().to_string()),
        Source::Auto { dir } => {
            (dir.join("leaf.crt").display().to_string(), dir.join("leaf.key").display().to_string())
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| anyhow::anyhow!("the key in {key_path} cannot be used ({e})"))?;
    let certified = rustls::sign::CertifiedKey::new(certs.to_vec(), signing);
    if certified.keys_match().is_err() {
        bail!(
            "the key in {key_path} does not belong to the certificate in {cert_path}: give the key the certificate was issued for"
        );
    }
    let info = cert_info(&certs[0]).with_context(|| format!("reading the certificate in {cert_path}"))?;
    if now < info.not_before {
        bail!("the certificate in {cert_path} is not valid before {}", date(info.not_before));
    }
    if now >= info.not_after {
        bail!(
            "the certificate in {cert_path} expired on {}: renew it (or use WEBCHAT_TLS=auto)",
            date(info.not_after)
        );
    }
    Ok(info)
}

/// Dates, names and fingerprint of a DER certificate.
pub fn cert_info(der: &[u8]) -> anyhow::Result<CertInfo> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| anyhow::anyhow!("not a certificate: {e}"))?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(IpAddr::from(<[u8; 4]>::try_from(*ip).expect("4 bytes")).to_string()),
                    16 => names.push(IpAddr::from(<[u8; 16]>::try_from(*ip).expect("16 bytes")).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        names,
        fingerprint: fingerprint(der),
    })
}

/// SHA-256 of DER bytes as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// `YYYY-MM-DD` of epoch seconds.
pub fn date(epoch_s: i64) -> String {
    jiff::Timestamp::from_second(epoch_s)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| epoch_s.to_string())
}

/// The names this machine answers to: `localhost`, its host name (and `<name>.local` for mDNS),
/// the loopback, its non-link-local addresses, and the configured bind address.
pub fn machine_names(bind: IpAddr) -> Names {
    let mut dns = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_ascii_lowercase();
        if !h.is_empty()
            && h != "localhost"
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            dns.push(h.clone());
            if !h.contains('.') {
                dns.push(format!("{h}.local"));
            }
        }
    }
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().expect("valid")];
    ips.extend(local_ipv4());
    ips.extend(local_ipv6());
    if !bind.is_unspecified() {
        ips.push(bind);
    }
    ips.sort();
    ips.dedup();
    dns.dedup();
    Names { dns, ips }
}

/// This machine's addresses in the order another device would most likely reach it: first the
/// source address of the default route (the LAN address, not a container bridge), then the rest.
pub fn reachable_order(ips: &[IpAddr]) -> Vec<IpAddr> {
    // Connecting a UDP socket sends nothing; it only asks the kernel for the route's source.
    let primary = std::net::UdpSocket::bind((IpAddr::from([0, 0, 0, 0]), 0))
        .and_then(|s| s.connect((IpAddr::from([192, 0, 2, 1]), 9)).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    let mut out: Vec<IpAddr> = primary.into_iter().collect();
    out.extend(ips.iter().filter(|ip| Some(**ip) != primary));
    out
}

/// This machine's IPv4 addresses, from the kernel's routing table.
fn local_ipv4() -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else { return Vec::new() };
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+', '`']).trim();
        if let Ok(ip) = t.parse::<std::net::Ipv4Addr>() {
            last = Some(IpAddr::V4(ip));
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
        {
            out.push(ip);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// This machine's global and unique-local IPv6 addresses.
fn local_ipv6() -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else { return Vec::new() };
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|hex| hex.len() == 32)
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(std::net::Ipv6Addr::from)
        .filter(|ip| !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80)
        .map(IpAddr::V6)
        .collect()
}

/// Makes sure `dir` holds the CA and a current machine certificate for `names`; returns the CA.
pub fn ensure_auto(dir: &Path, names: &Names, now: i64) -> anyhow::Result<Ca> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !ca_crt.exists() || !ca_key.exists() {
        let key = rcgen::KeyPair::generate().context("creating the CA key")?;
        let mut params = rcgen::CertificateParams::default();
        let host = machine_names(IpAddr::from([0, 0, 0, 0]))
            .dns
            .get(1)
            .cloned()
            .unwrap_or_else(|| "this machine".into());
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("pincer local CA ({host})"));
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "pincer");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.not_before = time_of(now - 86_400);
        params.not_after = time_of(now + CA_DAYS * 86_400);
        let cert = params.self_signed(&key).context("signing the CA certificate")?;
        write_secret(&ca_key, key.serialize_pem().as_bytes())?;
        write_public(&ca_crt, cert.pem().as_bytes())?;
        // A new CA: any machine certificate of an old one is useless.
        let _ = std::fs::remove_file(dir.join("leaf.crt"));
        log::info!("created the local certificate authority in {}", dir.display());
    }
    let ca_pem = std::fs::read_to_string(&ca_crt).with_context(|| format!("reading {}", ca_crt.display()))?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
        anyhow::anyhow!("{} is damaged ({e}); delete data/tls to make a new CA", ca_crt.display())
    })?;
    let ca_info = cert_info(&ca_der)?;
    let wanted = names_list(names);
    let current = std::fs::read(dir.join("leaf.crt"))
        .ok()
        .and_then(|b| CertificateDer::pem_slice_iter(&b).next().and_then(Result::ok))
        .and_then(|d| cert_info(&d).ok());
    let fresh = current.as_ref().is_some_and(|c| {
        let mut have = c.names.clone();
        have.sort();
        c.days_left(now) > RENEW_DAYS && have == wanted
    });
    if !fresh {
        let ca_key_pem =
            std::fs::read_to_string(&ca_key).with_context(|| format!("reading {}", ca_key.display()))?;
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).context("reading the CA key")?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("reading the CA certificate")?;
        let key = rcgen::KeyPair::generate().context("creating the machine key")?;
        let mut params = rcgen::CertificateParams::new(names.dns.clone()).context("machine names")?;
        params.subject_alt_names.extend(names.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names.dns.get(1).cloned().unwrap_or_else(|| "localhost".into()));
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time_of(now - 3600);
        params.not_after = time_of(now + LEAF_DAYS * 86_400);
        let cert = params.signed_by(&key, &issuer).context("issuing the machine certificate")?;
        write_secret(&dir.join("leaf.key"), key.serialize_pem().as_bytes())?;
        write_public(&dir.join("leaf.crt"), format!("{}{ca_pem}", cert.pem()).as_bytes())?;
        log::info!("issued a certificate for {}", wanted.join(", "));
    }
    Ok(Ca { pem: ca_pem, der: ca_der.to_vec(), info: ca_info })
}

fn names_list(names: &Names) -> Vec<String> {
    let mut v: Vec<String> =
        names.dns.iter().cloned().chain(names.ips.iter().map(IpAddr::to_string)).collect();
    v.sort();
    v
}

fn time_of(epoch_s: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(epoch_s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Writes a key readable by the owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dns: &[&str], ips: &[&str]) -> Names {
        Names {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn now() -> i64 {
        crate::ids::now_ms() / 1000
    }

    #[test]
    fn auto_makes_a_ca_once_and_reissues_when_names_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let n1 = names(&["localhost", "box"], &["127.0.0.1", "192.168.1.5"]);
        let ca = ensure_auto(&dir, &n1, now()).unwrap();
        for key in ["ca.key", "leaf.key"] {
            let mode = std::fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let tls = Tls::load(Source::Auto { dir: dir.clone() }, n1.clone()).unwrap();
        let mut got = tls.leaf().names;
        got.sort();
        assert_eq!(got, ["127.0.0.1", "192.168.1.5", "box", "localhost"]);
        assert!(tls.leaf().days_left(now()) >= LEAF_DAYS - 1);
        assert!(ca.info.days_left(now()) > 3000);
        // Same names: nothing new. New address: a new machine certificate from the same CA.
        let before = std::fs::read(dir.join("leaf.crt")).unwrap();
        ensure_auto(&dir, &n1, now()).unwrap();
        assert_eq!(std::fs::read(dir.join("leaf.crt")).unwrap(), before);
        let n2 = names(&["localhost", "box"], &["127.0.0.1", "192.168.1.9"]);
        let ca2 = ensure_auto(&dir, &n2, now()).unwrap();
        assert_ne!(std::fs::read(dir.join("leaf.crt")).unwrap(), before);
        assert_eq!(ca2.info.fingerprint, ca.info.fingerprint, "the CA stays");
        // Near its end, the machine certificate is renewed.
        let later = now() + (LEAF_DAYS - RENEW_DAYS + 1) * 86_400;
        let mid = std::fs::read(dir.join("leaf.crt")).unwrap();
        ensure_auto(&dir, &n2, later).unwrap();
        assert_ne!(std::fs::read(dir.join("leaf.crt")).unwrap(), mid);
    }

    #[test]
    fn bad_files_are_refused_with_what_to_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let n = names(&["localhost"], &["127.0.0.1"]);
        ensure_auto(&dir, &n, now()).unwrap();
        let load = |cert: &str, key: &str| {
            Tls::load(Source::Files { cert: dir.join(cert), key: dir.join(key) }, n.clone())
                .err()
                .map(|e| format!("{e:#}"))
        };
        assert_eq!(load("leaf.crt", "leaf.key"), None);
        assert!(load("missing.crt", "leaf.key").unwrap().contains("cannot read WEBCHAT_TLS_CERT"));
        assert!(load("leaf.crt", "missing.key").unwrap().contains("cannot read WEBCHAT_TLS_KEY"));
        assert!(load("leaf.crt", "ca.key").unwrap().contains("does not belong to the certificate"));
        std::fs::write(dir.join("junk.crt"), "not a certificate").unwrap();
        assert!(load("junk.crt", "leaf.key").unwrap().contains("no certificate"));
        // Expired: a machine certificate issued long ago.
        let old = tmp.path().join("old");
        ensure_auto(&old, &n, now() - 2 * LEAF_DAYS * 86_400).unwrap();
        let err =
            Tls::load(Source::Files { cert: old.join("leaf.crt"), key: old.join("leaf.key") }, n.clone())
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap();
        assert!(err.contains("expired on"), "{err}");
    }

    #[test]
    fn this_machine_has_names() {
        let n = machine_names("0.0.0.0".parse().unwrap());
        assert_eq!(n.dns[0], "localhost");
        assert!(n.ips.contains(&"127.0.0.1".parse().unwrap()));
        assert!(!n.ips.iter().any(|ip| ip.is_unspecified()));
    }
}
