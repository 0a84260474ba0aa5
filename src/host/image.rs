//! Building the agent image with no registry access (`pincer image build`).
//!
//! The image is `FROM scratch`: `container/Dockerfile` over a root filesystem assembled here from
//! the static `pincer-agent`, a static busybox (core utilities, `sh`), a static bash (the agent's
//! shell tool) and the host's CA bundle (for tools that fetch over HTTPS). Every input is hashed
//! and the hash is stored as an image label, so an unchanged tree is not rebuilt.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::docker::Docker;
use crate::process;

/// Image label holding the hash of the build inputs.
pub const INPUTS_LABEL: &str = "pincer.inputs";

const DOCKERFILE: &str = include_str!("../../container/Dockerfile");
const ETC_FILES: &[(&str, &str)] = &[
    ("etc/passwd", include_str!("../../container/rootfs/etc/passwd")),
    ("etc/group", include_str!("../../container/rootfs/etc/group")),
    ("etc/nsswitch.conf", include_str!("../../container/rootfs/etc/nsswitch.conf")),
];

/// Where the host programs copied into the image are looked for.
const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];
const BASH_PATHS: &[&str] = &["/bin/bash-static", "/usr/bin/bash-static"];
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Default location of the static runner, relative to the project root.
pub const AGENT_STATIC_PATH: &str = "target/x86_64-unknown-linux-gnu/release/pincer-agent";

#[derive(Debug)]
pub struct BuildOptions {
    pub image: String,
    pub agent: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub force: bool,
}

#[derive(Debug, PartialEq)]
pub enum Built {
    UpToDate,
    Built,
}

/// Builds the image unless one with the same inputs exists.
pub fn build(docker: &Docker, opts: &BuildOptions) -> anyhow::Result<Built> {
    let agent = find_agent(opts)?;
    let busybox = first_existing(BUSYBOX_PATHS).context(
        "no static busybox found (looked in /bin/busybox, /usr/bin/busybox); install it with: apt-get install busybox-static",
    )?;
    let bash = first_existing(BASH_PATHS)
        .context("no static bash found; install it with: apt-get install bash-static")?;
    for (what, path) in [("busybox", &busybox), ("bash", &bash)] {
        if !is_static_elf(path)? {
            bail!(
                "{} is not statically linked, so it cannot run in the agent image; install the {what}-static package",
                path.display()
            );
        }
    }
    let ctx_dir = std::env::temp_dir().join(format!("pincer-image-{}", crate::ids::random_hex::<6>()));
    let res = (|| {
        assemble(&ctx_dir, &agent, &busybox, &bash)?;
        let hash = hash_tree(&ctx_dir)?;
        if !opts.force
            && let Some(labels) = docker.image_labels(&opts.image)?
            && labels.get(INPUTS_LABEL) == Some(&hash)
        {
            return Ok(Built::UpToDate);
        }
        log::info!("building agent image {} (inputs {hash})", opts.image);
        docker.build(&ctx_dir, &opts.image, &[(INPUTS_LABEL.to_string(), hash)])?;
        Ok(Built::Built)
    })();
    let _ = std::fs::remove_dir_all(&ctx_dir);
    res
}

fn find_agent(opts: &BuildOptions) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match &opts.agent {
        Some(p) => vec![p.clone()],
        None => {
            let mut c = vec![opts.work_dir.join(AGENT_STATIC_PATH)];
            if let Ok(exe) = std::env::current_exe()
                && let Some(dir) = exe.parent()
            {
                c.push(dir.join("pincer-agent"));
            }
            c
        }
    };
    for p in &candidates {
        if p.is_file() && is_static_elf(p)? {
            return Ok(p.clone());
        }
    }
    bail!(
        "no statically linked pincer-agent found (looked at {}); build it with `make agent`, or pass --agent PATH",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// True for an ELF executable without an interpreter (`PT_INTERP`): it needs no dynamic loader.
pub fn is_static_elf(path: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Ok(false); // Not a 64-bit little-endian ELF.
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        if off + 4 > bytes.len() {
            return Ok(false);
        }
        if u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

fn assemble(dir: &Path, agent: &Path, busybox: &Path, bash: &Path) -> anyhow::Result<()> {
    let root = dir.join("rootfs");
    for sub in ["bin", "usr/bin", "usr/local/bin", "etc/ssl/certs", "tmp", "workspace/agent", "root"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE)?;
    for (rel, text) in ETC_FILES {
        std::fs::write(root.join(rel), text)?;
    }
    copy_exec(agent, &root.join("usr/local/bin/pincer-agent"))?;
    copy_exec(busybox, &root.join("bin/busybox"))?;
    copy_exec(bash, &root.join("bin/bash"))?;
    if Path::new(CA_BUNDLE).is_file() {
        std::fs::copy(CA_BUNDLE, root.join("etc/ssl/certs/ca-certificates.crt"))?;
    } else {
        log::warn!("{CA_BUNDLE} not found: tools in the agent image will not verify HTTPS servers");
    }
    let list = process::run(&busybox.to_string_lossy(), &["--list"], std::time::Duration::from_secs(10))?;
    for applet in list
        .stdout
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.[".contains(&b)))
    {
        let link = root.join("bin").join(applet);
        if applet == "bash" || applet == "busybox" || link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("busybox", &link)?;
    }
    // /usr/bin/env is where scripts expect `env`.
    std::os::unix::fs::symlink("/bin/busybox", root.join("usr/bin/env"))?;
    Ok(())
}

fn copy_exec(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// SHA-1 over every path, mode and content (or link target) under `dir`, in sorted order.
pub fn hash_tree(dir: &Path) -> anyhow::Result<String> {
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    walk(dir, dir, &mut entries)?;
    let mut h = sha1_smol::Sha1::new();
    for (path, data) in &entries {
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(data);
        h.update(&[0]);
    }
    Ok(h.digest().to_string())
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = format!("{:o}:", meta.permissions().mode());
        if meta.file_type().is_symlink() {
            out.insert(
                rel,
                [b"link:".as_slice(), std::fs::read_link(&path)?.as_os_str().as_encoded_bytes()].concat(),
            );
        } else if meta.is_dir() {
            out.insert(rel, mode.into_bytes());
            walk(root, &path, out)?;
        } else {
            let mut data = mode.into_bytes();
            data.extend(std::fs::read(&path)?);
            out.insert(rel, data);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_sees_content_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let h1 = hash_tree(dir.path()).unwrap();
        assert_eq!(h1, hash_tree(dir.path()).unwrap());
        std::fs::write(dir.path().join("a"), "2").unwrap();
        let h2 = hash_tree(dir.path()).unwrap();
        assert_ne!(h1, h2);
        std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let h3 = hash_tree(dir.path()).unwrap();
        assert_ne!(h2, h3);
        std::os::unix::fs::symlink("a", dir.path().join("l")).unwrap();
        assert_ne!(h3, hash_tree(dir.path()).unwrap());
    }

    #[test]
    fn recognises_static_binaries() {
        // The test binary itself is dynamically linked.
        let exe = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&exe).unwrap());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&dir.path().join("x")).unwrap());
        if let Some(bb) = first_existing(BUSYBOX_PATHS) {
            assert!(is_static_elf(&bb).unwrap(), "busybox-static is static");
        }
    }
}
