//! `pincer service install|uninstall [--user]`: a systemd unit that starts `pincer run` on boot
//! from the install's directory (where its `.env` is read), restarts it if it fails, and keeps it
//! in a sandbox that can still reach the docker socket.
//!
//! A system unit runs pincer as the owner of the install's directory, with the `docker` group;
//! it may write only the data and agents' directories. A user unit gets what an unprivileged
//! systemd allows (no mount sandboxing), and `loginctl enable-linger` starts it at boot.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Config;

pub const UNIT_NAME: &str = "pincer.service";

/// Where a unit goes.
pub struct Target {
    pub user: bool,
    pub dir: PathBuf,
}

impl Target {
    pub fn detect(user: bool) -> anyhow::Result<Target> {
        let dir = if user {
            let base = match std::env::var_os("XDG_CONFIG_HOME") {
                Some(x) if !x.is_empty() => PathBuf::from(x),
                _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
            };
            base.join("systemd/user")
        } else {
            PathBuf::from("/etc/systemd/system")
        };
        Ok(Target { user, dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(UNIT_NAME)
    }
}

/// The unit's text for this install.
pub fn unit(cfg: &Config, exe: &Path, user: bool) -> anyhow::Result<String> {
    let work = std::fs::canonicalize(&cfg.work_dir).unwrap_or_else(|_| cfg.work_dir.clone());
    let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { work.join(p) };
    let (data, groups) = (abs(&cfg.data_dir), abs(&cfg.groups_dir));
    for p in [&work, &data, &groups, &exe.to_path_buf()] {
        let s = p.to_string_lossy();
        if s.contains(char::is_whitespace) || s.contains(['"', '\'', '\\', '%', '$']) {
            bail!(
                "the path {s:?} has spaces or special characters a unit file cannot hold: move the install"
            );
        }
    }
    let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let mut u = String::new();
    u.push_str("# Written by `pincer service install`; remove with `pincer service uninstall`.\n");
    u.push_str("[Unit]\nDescription=pincer, a personal AI-agent host\n");
    u.push_str(&format!("Documentation=file://{}/README.md\n", work.display()));
    if user {
        u.push_str("After=network-online.target\n");
    } else {
        u.push_str(
            "After=network-online.target docker.service\nWants=network-online.target docker.service\n",
        );
    }
    u.push_str("\n[Service]\nType=simple\n");
    // pincer reads .env from its working directory itself (an EnvironmentFile= would parse it
    // differently and win over it).
    u.push_str(&format!("WorkingDirectory={}\n", work.display()));
    u.push_str(&format!("ExecStart={} run\n", exe.display()));
    u.push_str("Restart=on-failure\nRestartSec=5\n");
    // SIGTERM to pincer alone: it stops its containers and delivers what is pending.
    u.push_str("KillMode=mixed\nTimeoutStopSec=60\n");
    u.push_str("NoNewPrivileges=yes\n");
    if !user {
        let (name, group) = owner_of(&work)?;
        u.push_str(&format!("User={name}\nGroup={group}\n"));
        if group_exists("docker") {
            u.push_str("SupplementaryGroups=docker\n");
        }
        u.push_str("ProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=yes\n");
        u.push_str(&format!("ReadWritePaths={} {}\n", data.display(), groups.display()));
        u.push_str("ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectControlGroups=yes\n");
        u.push_str("RestrictSUIDSGID=yes\nLockPersonality=yes\n");
    }
    u.push_str("\n[Install]\n");
    u.push_str(if user { "WantedBy=default.target\n" } else { "WantedBy=multi-user.target\n" });
    Ok(u)
}

/// Writes the unit; returns its path.
pub fn install(target: &Target, unit: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&target.dir).with_context(|| format!("creating {}", target.dir.display()))?;
    let path = target.path();
    let tmp = target.dir.join(format!(".{UNIT_NAME}.tmp"));
    std::fs::write(&tmp, unit).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied && !target.user {
            anyhow::anyhow!(
                "cannot write {}: a system unit needs root (run it with sudo), or use --user for a user unit",
                path.display()
            )
        } else {
            anyhow::anyhow!("writing {}: {e}", path.display())
        }
    })?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Removes the unit; returns its path.
pub fn uninstall(target: &Target) -> anyhow::Result<PathBuf> {
    let path = target.path();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("there is no {} to remove", path.display())
        }
        Err(e) => bail!("removing {}: {e}", path.display()),
    }
}

pub fn enable_hint(t: &Target) -> String {
    if t.user {
        "Start it now and at every boot:\n  systemctl --user daemon-reload\n  systemctl --user enable --now pincer\n  \
         loginctl enable-linger \"$USER\"   # start at boot, before you log in\nLogs: journalctl --user -u pincer -f\n"
            .into()
    } else {
        "Start it now and at every boot:\n  systemctl daemon-reload\n  systemctl enable --now pincer\nLogs: journalctl -u pincer -f\n"
            .into()
    }
}

pub fn disable_hint(t: &Target) -> String {
    let u = if t.user { " --user" } else { "" };
    format!("If it was running: systemctl{u} disable --now pincer; then systemctl{u} daemon-reload\n")
}

/// The user and group names owning `dir`.
fn owner_of(dir: &Path) -> anyhow::Result<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let name = name_of("/etc/passwd", meta.uid()).with_context(|| {
        format!("the owner of {} (uid {}) has no name in /etc/passwd", dir.display(), meta.uid())
    })?;
    let group = name_of("/etc/group", meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    Ok((name, group))
}

/// The name with id `id` in a passwd/group-format file.
fn name_of(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

fn group_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/group").is_ok_and(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(root: &Path) -> Config {
        Config::from_map(root, &std::collections::BTreeMap::new()).unwrap()
    }

    /// `systemd-analyze verify` (Debian's systemd package) accepts both units.
    #[test]
    fn units_pass_systemd_analyze_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("pincer");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for user in [false, true] {
            let text = unit(&cfg(tmp.path()), &exe, user).unwrap();
            assert!(
                text.contains(&format!("WorkingDirectory={}", tmp.path().canonicalize().unwrap().display()))
            );
            assert!(
                text.contains(" run\n")
                    && text.contains("Restart=on-failure")
                    && text.contains("NoNewPrivileges=yes")
            );
            if !user {
                assert!(text.contains("ProtectSystem=strict") && text.contains("ReadWritePaths="), "{text}");
            }
            let dir = tmp.path().join(if user { "user" } else { "system" });
            std::fs::create_dir_all(&dir).unwrap();
            let path = install(&Target { user, dir }, &text).unwrap();
            // The system manager's checks for both: a user manager cannot start in every sandbox.
            let out = std::process::Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&path)
                .env("SYSTEMD_LOG_LEVEL", "notice")
                .output()
                .expect("systemd-analyze (Debian package systemd; `make deps` installs it)");
            let said =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            // Problems with the unit name it (`pincer.service:5: Unknown key …`).
            let problems: Vec<&str> = said.lines().filter(|l| l.contains(UNIT_NAME)).collect();
            assert!(out.status.success() && problems.is_empty(), "user={user}: {said}\n{text}");
        }
    }

    #[test]
    fn paths_a_unit_cannot_hold_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("my pincer");
        std::fs::create_dir_all(&odd).unwrap();
        let e = unit(&cfg(&odd), Path::new("/usr/bin/pincer"), true).unwrap_err().to_string();
        assert!(e.contains("spaces or special characters"), "{e}");
    }
}
