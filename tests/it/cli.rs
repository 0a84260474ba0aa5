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

    let backup = dirs.root().join("backup.db");
    let (code, _, err) = run(&dirs, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{err}");
    let copy = rusqlite::Connection::open(&backup).unwrap();
    let n: i64 = copy.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
    let (code, _, err) = run(&dirs, &["backup", backup.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "an existing file is not overwritten");
    assert!(err.contains("already exists"), "{err}");
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
