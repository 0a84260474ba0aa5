//! Running it every day: `pincer status` on a live install with a real container, `/health`
//! telling ready from degraded (an engine that does not answer) with the reason, and
//! `pincer service install --user` / `uninstall` through the command line.

use serde_json::Value;

use crate::support::*;

#[test]
fn status_shows_a_live_install_and_health_says_ready() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "hello");
    ws.agent_reply("assistant", "echo: hello", COLD);

    let (code, out) = dirs.cli(&["status", "--json"], &[]);
    assert_eq!(code, Some(0), "{out}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["host_pid"].as_u64(), Some(host.pid() as u64), "{s}");
    assert_eq!(s["agents"][0]["folder"], "assistant");
    assert_eq!(s["agents"][0]["sessions"], 1);
    assert_eq!(s["agents"][0]["containers_running"], 1, "the agent's container is up: {s}");
    assert_eq!((s["queued"].as_i64(), s["in_flight"].as_i64()), (Some(0), Some(0)), "{s}");
    assert!(s["disk_bytes"].as_u64().unwrap() > 0);
    let (code, out) = dirs.cli(&["status"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("running (pid {})", host.pid())) && out.contains("Assistant (assistant)"),
        "{out}"
    );

    let (status, health) = host.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ready")), "{health}");
    assert_eq!(health["reasons"], serde_json::json!([]));
}

#[test]
fn health_reports_degraded_when_the_engine_does_not_answer() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("PINCER_DOCKER", "/nonexistent/docker")]);
    let (status, health) = host.get("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")), "{health}");
    let reasons = health["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r.as_str().unwrap().starts_with("docker: ")), "{health}");
    let (code, out) = dirs.cli(&["status"], &[("PINCER_DOCKER", "/nonexistent/docker")]);
    assert_eq!(code, Some(0), "status works without the engine: {out}");
    assert!(out.contains("containers unknown"), "{out}");
}

#[test]
fn a_user_service_is_installed_and_removed() {
    let dirs = Dirs::new();
    let config = dirs.root().join("xdg");
    let env = [("XDG_CONFIG_HOME", config.to_str().unwrap())];
    let (code, out) = dirs.cli(&["service", "install", "--user"], &env);
    assert_eq!(code, Some(0), "{out}");
    let unit = config.join("systemd/user/pincer.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!("WorkingDirectory={}", dirs.root().canonicalize().unwrap().display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ExecStart={} run", std::fs::canonicalize(bin()).unwrap().display())),
        "{text}"
    );
    assert!(out.contains("systemctl --user enable --now pincer") && out.contains("enable-linger"), "{out}");
    let (code, out) = dirs.cli(&["service", "uninstall", "--user"], &env);
    assert_eq!(code, Some(0), "{out}");
    assert!(!unit.exists());
    let (code, out) = dirs.cli(&["service", "uninstall", "--user"], &env);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no ") && out.contains("to remove"), "{out}");
}

#[test]
fn the_log_goes_to_a_file_as_key_value_lines_with_levels_per_module() {
    let dirs = Dirs::new();
    let file = dirs.root().join("log/pincer.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut cmd = dirs.command(&["run"]);
    cmd.env("PINCER_LOG_FILE", &file).env("PINCER_LOG", "warn,host=info,host::router=debug");
    let mut host = Host::spawn(cmd);
    let text = eventually("the log file says the webchat listens", COLD, || {
        std::fs::read_to_string(&file).ok().filter(|t| t.contains("webchat listening on http"))
    });
    let listening = text.lines().find(|l| l.contains("webchat listening on")).unwrap();
    assert!(
        listening.starts_with("ts=")
            && listening.contains(" level=info module=host msg=")
            && listening.ends_with('/'),
        "{listening}"
    );
    for line in text.lines() {
        let level = line.split(" level=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("?");
        let module = line.split(" module=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("?");
        let allowed = module.starts_with("host") && level == "info"
            || module.starts_with("host::router")
            || matches!(level, "warn" | "error");
        assert!(allowed, "not asked for: {line}");
    }
    assert!(host.log_tail().trim().is_empty(), "nothing on stderr: {}", host.log_tail());
    host.stop();
    let (code, out) = dirs.cli(&["run"], &[("PINCER_LOG", "loud")]);
    assert_eq!(code, Some(1));
    assert!(out.contains("invalid PINCER_LOG") && out.contains("module=level"), "{out}");
}
