//! The command line: help and usage errors, agent and room commands, backup, doctor, and
//! configuration errors that stop start-up.

use serde_json::Value;

use crate::support::*;

fn run(dirs: &Dirs, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = dirs.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_and_usage_errors() {
    let dirs = Dirs::new();
    let (code, out, _) = run(&dirs, &["--help"], &[]);
    assert_eq!(code, Some(0));
    for needle in
        ["run", "doctor", "image build", "agent create", "backup", "WEBCHAT_PORT", "PINCER_DATA_DIR"]
    {
        assert!(out.contains(needle), "help lacks {needle}");
    }
    let (code, out, _) = run(&dirs, &["agent", "create", "--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--with-room"));
    let (code, _, err) = run(&dirs, &["frobnicate"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown command"), "{err}");
    let (code, _, err) = run(&dirs, &["agent", "create"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("NAME"), "{err}");
}

#[test]
fn agents_rooms_and_backup_from_the_command_line() {
    let dirs = Dirs::new();
    let (code, out, err) =
        run(&dirs, &["agent", "create", "Night Owl", "--instructions", "Be nocturnal.", "--with-room"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["agent"]["folder"], "night-owl");
    assert_eq!(created["room"]["id"], "night-owl");
    assert_eq!(std::fs::read_to_string(dirs.groups().join("night-owl/AGENT.md")).unwrap(), "Be nocturnal.");
    let (code, out, _) = run(&dirs, &["agent", "list", "--json"], &[]);
    assert_eq!(code, Some(0));
    let agents: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(agents[0]["name"], "Night Owl");
    let (code, out, _) = run(&dirs, &["room", "list"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("night-owl") && out.contains("Night Owl"), "{out}");

    let backup = dirs.root().join("backup");
    let (code, out, err) = run(&dirs, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("backed up"), "{out}");
    let copy = rusqlite::Connection::open(backup.join("data/pincer.db")).unwrap();
    let n: i64 = copy.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
    let (code, _, err) = run(&dirs, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "a backup is never written over");
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn doctor_reports_each_check() {
    let dirs = Dirs::new();
    let (code, out, _) = run(&dirs, &["doctor"], &[]);
    assert_eq!(code, Some(0), "{out}");
    for check in ["config", "data dir", "docker", "image", "model", "port"] {
        assert!(out.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{check} missing in:\n{out}");
    }
    let (code, out, _) = run(&dirs, &["doctor"], &[("PINCER_IMAGE", "pincer-no-such-image:latest")]);
    assert_eq!(code, Some(1));
    assert!(out.lines().any(|l| l.starts_with("FAIL image") && l.contains("make image")), "{out}");
}

/// Runs `pincer run` expecting it to refuse to start; returns its log.
fn refused(dirs: &Dirs, env: &[(&str, &str)]) -> String {
    let mut cmd = dirs.command(&["run"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut host = Host::spawn(cmd);
    let status = host.wait_exit(std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{env:?} should stop start-up:\n{}", host.log_tail());
    host.log_tail()
}

#[test]
fn bad_configuration_stops_start_up_naming_the_key() {
    let dirs = Dirs::new();
    for (key, value) in [
        ("WEBCHAT_PORT", "eighty"),
        ("PINCER_PROVIDER", "gpt"),
        ("WEBCHAT_TOKEN", "short"),
        ("PINCER_DATA_DIRR", "x"),
        ("WEBCHAT_HOST", "0.0.0.0"),
    ] {
        let log = refused(&dirs, &[(key, value)]);
        assert!(log.contains(key), "{key}: {log}");
    }
    // .env is read too...
    std::fs::write(dirs.root().join(".env"), "PINCER_MAX_CONTAINERS=lots\n").unwrap();
    assert!(refused(&dirs, &[]).contains("PINCER_MAX_CONTAINERS"));
    // ...and the environment wins over it.
    let host = Host::start_with(&dirs, &[("PINCER_MAX_CONTAINERS", "4")]);
    assert_eq!(host.get("/health").0, 200);
}

/// A self-signed certificate for `localhost` valid from `from` to `until` (epoch seconds); returns
/// the PEM files written into `dir`.
fn self_signed(dir: &std::path::Path, name: &str, from: i64, until: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.to_str().unwrap().to_string(), k.to_str().unwrap().to_string())
}

/// The line of `doctor`'s output for `check` with the given level, or a panic showing it all.
fn doctor_line<'a>(out: &'a str, level: &str, check: &str) -> &'a str {
    let prefix = format!("{level:<4} {check}:");
    out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
}

#[test]
fn doctor_checks_sign_in_https_and_push_as_run_would() {
    let dirs = Dirs::new();
    let now = pincer::ids::now_ms() / 1000;
    let day = 86_400;
    let root = dirs.root().to_path_buf();
    let (good_c, good_k) = self_signed(&root, "good", now - day, now + 90 * day + day / 2);
    let (soon_c, soon_k) = self_signed(&root, "soon", now - day, now + 5 * day + day / 2);
    let (old_c, old_k) = self_signed(&root, "old", now - 90 * day, now - day);
    let (_, other_k) = self_signed(&root, "other", now - day, now + 90 * day);

    // Certificate files: the dates and names; near the end a warning; run's refusals are FAILs.
    let (code, out, _) =
        run(&dirs, &["doctor"], &[("WEBCHAT_TLS_CERT", &good_c), ("WEBCHAT_TLS_KEY", &good_k)]);
    assert_eq!(code, Some(0), "{out}");
    let line = doctor_line(&out, "ok", "tls");
    assert!(line.contains("for localhost") && line.contains("(90 days)"), "{line}");
    let (code, out, _) =
        run(&dirs, &["doctor"], &[("WEBCHAT_TLS_CERT", &soon_c), ("WEBCHAT_TLS_KEY", &soon_k)]);
    assert_eq!(code, Some(0), "a warning is not a failure: {out}");
    assert!(doctor_line(&out, "warn", "tls").contains("(5 days)"), "{out}");
    for (cert, key, needle) in [
        (&old_c, &old_k, "expired"),
        (&good_c, &other_k, "does not belong to the certificate"),
        (&root.join("missing.crt").to_str().unwrap().to_string(), &good_k, "cannot read WEBCHAT_TLS_CERT"),
    ] {
        let env = [("WEBCHAT_TLS_CERT", cert.as_str()), ("WEBCHAT_TLS_KEY", key.as_str())];
        let (code, out, _) = run(&dirs, &["doctor"], &env);
        assert_eq!(code, Some(1), "{out}");
        assert!(doctor_line(&out, "FAIL", "tls").contains(needle), "{out}");
        let (code, _, err) = run(&dirs, &["run"], &env);
        assert_eq!(code, Some(1), "run refuses what doctor fails");
        assert!(err.contains(needle), "{err}");
    }

    // Pincer's own CA: made on first start; afterwards its fingerprint and the machine certificate.
    let (code, out, _) = run(&dirs, &["doctor"], &[("WEBCHAT_TLS", "auto")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(doctor_line(&out, "ok", "tls").contains("made on first start"), "{out}");
    assert!(!dirs.data().join("tls").exists(), "doctor creates nothing");
    let names = pincer::webchat::tls::Names {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let ca = pincer::webchat::tls::ensure_auto(&dirs.data().join("tls"), &names, now).unwrap();
    let (code, out, _) = run(&dirs, &["doctor"], &[("WEBCHAT_TLS", "auto")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&ca.info.fingerprint), "the CA's fingerprint, to compare on the phone: {out}");
    assert!(out.lines().any(|l| l.starts_with("ok   tls: machine certificate for localhost")), "{out}");

    // Tailscale is asked whether it runs (a stand-in CLI: Tailscale itself cannot run here).
    let ts = root.join("tailscale");
    let script = |state: &str| {
        format!(
            "#!/bin/sh\n[ \"$1\" = status ] || exit 2\necho '{{\"BackendState\":\"{state}\",\"Self\":{{\"DNSName\":\"box.tail1.ts.net.\",\"TailscaleIPs\":[\"100.101.1.2\"]}}}}'\n"
        )
    };
    for (state, level, needle) in
        [("Running", "ok", "box.tail1.ts.net (100.101.1.2)"), ("Stopped", "FAIL", "tailscale up")]
    {
        std::fs::write(&ts, script(state)).unwrap();
        std::fs::set_permissions(&ts, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let env = [("WEBCHAT_TAILSCALE", "true"), ("WEBCHAT_TAILSCALE_BIN", ts.to_str().unwrap())];
        let (_, out, _) = run(&dirs, &["doctor"], &env);
        assert!(doctor_line(&out, level, "tailscale").contains(needle), "{out}");
        assert!(doctor_line(&out, "ok", "sign-in").contains("Tailscale"), "{out}");
    }
    let (code, out, _) = run(
        &dirs,
        &["doctor"],
        &[("WEBCHAT_TAILSCALE", "true"), ("WEBCHAT_TAILSCALE_BIN", "/nonexistent/tailscale")],
    );
    assert_eq!(code, Some(1));
    assert!(doctor_line(&out, "FAIL", "tailscale").contains("install and start Tailscale"), "{out}");

    // Sign-in: what is configured, and warnings where it is weak.
    let token = ("WEBCHAT_TOKEN", "doctor-token-0123456789abcdef");
    let (_, out, _) = run(&dirs, &["doctor"], &[token, ("WEBCHAT_TRUSTED_PROXY_IPS", "10.0.0.0/8")]);
    let line = doctor_line(&out, "ok", "sign-in");
    assert!(
        line.contains("WEBCHAT_TOKEN") && line.contains("x-forwarded-user from the proxy at 10.0.0.0/8"),
        "{line}"
    );
    assert!(!line.contains("this machine"), "the loopback pass ends with a method set: {line}");
    let (_, out, _) = run(&dirs, &["doctor"], &[("WEBCHAT_TRUSTED_PROXY_IPS", "auto")]);
    assert!(doctor_line(&out, "warn", "proxy").contains("from any address"), "{out}");
    let (_, out, _) = run(&dirs, &["doctor"], &[token, ("WEBCHAT_HOST", "0.0.0.0")]);
    assert!(doctor_line(&out, "warn", "sign-in").contains("unencrypted"), "{out}");

    // Web Push keys: made on first start; a mismatched pair is a FAIL, as for run.
    let (_, out, _) = run(&dirs, &["doctor"], &[]);
    assert!(doctor_line(&out, "ok", "push").contains("made on first start"), "{out}");
    let bad = [
        ("WEBCHAT_VAPID_PRIVATE_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"),
        ("WEBCHAT_VAPID_PUBLIC_KEY", "BAAA"),
    ];
    let (code, out, _) = run(&dirs, &["doctor"], &bad);
    assert_eq!(code, Some(1));
    assert!(doctor_line(&out, "FAIL", "push").contains("does not belong"), "{out}");
    let (code, _, err) = run(&dirs, &["run"], &bad);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not belong"), "{err}");
}
