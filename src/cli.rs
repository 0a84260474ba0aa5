//! The command line: `pincer run | doctor | status | service ... | image build | agent ... |
//! room ... | backup | restore`.
//!
//! Hand-rolled parsing (a handful of commands and flags). Exit codes: 0 ok, 1 failure, 2 usage.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use crate::config::{self, Config};
use crate::db::central;
use crate::docker::Docker;
use crate::host::{self, agents, image};
use crate::ids::now_ms;

pub const USAGE: &str = "\
pincer — a self-hosted personal AI-agent host

Usage: pincer <command> [options]

Commands:
  run                          start the host (webchat on WEBCHAT_HOST:WEBCHAT_PORT)
  doctor                       check docker, the image, the model, data dir, port, sign-in, HTTPS, push
  status [--json]              what the install is doing: agents, containers, queues, approvals, tasks
  service install [--user]     write a systemd unit that starts pincer on boot (then prints how to enable it)
  service uninstall [--user]   remove that unit
  image build [--agent PATH] [--force]
                               build the agent image (no registry access needed)
  agent create NAME [--instructions TEXT] [--with-room]
                               create an agent (and its own room); prints JSON
  agent list [--json]          list agents
  agent link AGENT OTHER [--name NAME] [--both]
                               let AGENT message agent OTHER (--both: and back)
  agent unlink AGENT NAME      remove one of AGENT's destinations
  room list [--json]           list rooms
  room policy ROOM strict|request_approval|public
                               who the room's agents answer
  user list [--json]           list people and their roles
  task list [--json]           list agents' scheduled tasks
  task pause|resume|cancel ID  control a scheduled task
  user grant ID ROLE [--agent AGENT]
                               give someone a role: owner, admin, or member (of --agent)
  backup DIR                   consistent online snapshot of the whole install into DIR
  restore DIR                  bring an install back from a backup (pincer stopped)

Run `pincer <command> --help` for a command's options. Configuration comes from the environment
and a .env file in the current directory (the environment wins); keys:
";

/// Exit status of a command.
pub enum Exit {
    Ok,
    Failure,
    Usage,
}

pub fn usage() -> String {
    let mut out = USAGE.to_string();
    for (k, desc) in config::KEYS {
        out.push_str(&format!("  {k:<30} {desc}\n"));
    }
    out
}

/// Parses and runs a command line (without the program name).
pub fn main(args: &[String]) -> Exit {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = match strs.as_slice() {
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{}", usage());
            return Exit::Ok;
        }
        ["--version" | "-V"] => {
            println!("pincer {}", env!("CARGO_PKG_VERSION"));
            return Exit::Ok;
        }
        [cmd, .., "--help" | "-h"] => return help(cmd, strs.get(1).copied()),
        ["run"] => with_config(host::run),
        ["doctor"] => return doctor(),
        ["status"] => with_config(|cfg| {
            crate::status::print(&crate::status::gather(&cfg)?);
            Ok(())
        }),
        ["status", "--json"] => with_config(|cfg| {
            println!("{}", serde_json::to_string_pretty(&crate::status::gather(&cfg)?)?);
            Ok(())
        }),
        ["service", "install", rest @ ..] => service(true, rest),
        ["service", "uninstall", rest @ ..] => service(false, rest),
        ["image", "build", rest @ ..] => image_build(rest),
        ["agent", "create", rest @ ..] => agent_create(rest),
        ["agent", "list", rest @ ..] => listing(rest, List::Agents),
        ["agent", "link", rest @ ..] => agent_link(rest),
        ["agent", "unlink", agent, name] => agent_unlink(agent, name),
        ["room", "list", rest @ ..] => listing(rest, List::Rooms),
        ["room", "policy", room, policy] => room_policy(room, policy),
        ["user", "list", rest @ ..] => listing(rest, List::Users),
        ["user", "grant", rest @ ..] => user_grant(rest),
        ["task", "list", rest @ ..] => task_list(rest),
        ["task", action @ ("pause" | "resume" | "cancel"), id] => task_control(action, id),
        ["backup", dir] => with_config(|cfg| backup(&cfg, Path::new(dir))),
        ["restore", dir] => with_config(|cfg| restore(&cfg, Path::new(dir))),
        _ => Err(UsageError(format!("unknown command `{}`", strs.join(" "))).into()),
    };
    match res {
        Ok(()) => Exit::Ok,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("pincer: {e}\nRun `pincer --help` for usage.");
            Exit::Usage
        }
        Err(e) => {
            eprintln!("pincer: {e:#}");
            Exit::Failure
        }
    }
}

#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage_err<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

fn help(cmd: &str, sub: Option<&str>) -> Exit {
    let text = match (cmd, sub) {
        ("run", _) => {
            "Usage: pincer run\n\nStarts the host in the foreground. Logs `webchat listening on http://HOST:PORT/` once ready.\nStop with Ctrl-C (SIGINT) or SIGTERM: running agent containers are stopped and pending replies delivered.\n"
        }
        ("doctor", _) => {
            "Usage: pincer doctor\n\nChecks docker, the agent image, model credentials, the data directory, the webchat port, how people\nsign in (and whether Tailscale is up), the HTTPS certificate (dates, names, key) and the Web Push keys.\nPrints one line per check: ok, warn, or FAIL with a fix; exits 1 if any check fails. Changes nothing.\n"
        }
        ("image", _) => {
            "Usage: pincer image build [--agent PATH] [--force]\n\n  --agent PATH   the static pincer-agent to put in the image\n                 (default: target/x86_64-unknown-linux-gnu/release/pincer-agent)\n  --force        build even if an image with the same inputs exists\n"
        }
        ("agent", Some("create")) => {
            "Usage: pincer agent create NAME [--instructions TEXT] [--with-room]\n\n  --instructions TEXT   written to groups/<folder>/AGENT.md\n  --with-room           also create a webchat room wired to the agent\n"
        }
        ("agent", _) => {
            "Usage: pincer agent create NAME [--instructions TEXT] [--with-room]\n       pincer agent list [--json]\n       pincer agent link AGENT OTHER [--name NAME] [--both]\n       pincer agent unlink AGENT NAME\n\nAGENT and OTHER are agent ids or names. A link lets AGENT send messages to OTHER (by NAME, by default\nOTHER's name); OTHER's answers come back to the conversation that asked.\n"
        }
        ("room", _) => {
            "Usage: pincer room list [--json]\n       pincer room policy ROOM strict|request_approval|public\n\nstrict: only people with access to an agent see the room and are answered by it (the default).\nrequest_approval: everyone signed in sees the room; a message from someone without access is held\nand the owner or the agent's admins are asked to let them in. public: every agent answers everyone.\n"
        }
        ("task", _) => {
            "Usage: pincer task list [--json]\n       pincer task pause|resume|cancel TASK_ID\n\nLists the tasks agents have scheduled (soonest first), or pauses, resumes or cancels one (the\nagent is told on its next turn). A running pincer picks a resumed task's time up within a minute.\n"
        }
        ("user", _) => {
            "Usage: pincer user list [--json]\n       pincer user grant ID owner|admin|member [--agent AGENT]\n\nFor an install whose owner cannot sign in (e.g. after switching to Tailscale or a proxy): the person\nsigns in once, shows up in `user list`, and `user grant ID owner` makes them an owner. `admin` with\n--agent administers that agent only; `member` needs --agent (the agent they may use). Open pages\npick the change up when they reconnect.\n"
        }
        ("backup", _) => {
            "Usage: pincer backup DIR\n\nWrites a consistent snapshot of the whole install into DIR (new or empty): the central database,\nevery session's databases, the agents' folders, uploads, and the HTTPS and push keys, with a\nmanifest of checksums. Safe while pincer runs. Certificate files configured outside the data\ndirectory (WEBCHAT_TLS_CERT/KEY) are not included.\n"
        }
        ("status", _) => {
            "Usage: pincer status [--json]\n\nWhat the install is doing, read without changing anything: whether pincer runs, each agent's sessions,\nrunning containers, unanswered messages and disk use; messages waiting; pending approvals; scheduled\ntasks; push and HTTPS. Works whether pincer runs or not.\n"
        }
        ("service", _) => {
            "Usage: pincer service install [--user]\n       pincer service uninstall [--user]\n\nWrites (or removes) a systemd unit that starts `pincer run` on boot from this directory, with its\n.env, restarting it if it fails, sandboxed, with access to the docker socket. Without --user it is a\nsystem unit in /etc/systemd/system (run as root; pincer runs as the user who owns this directory);\nwith --user a user unit in ~/.config/systemd/user. Prints the commands that enable it.\n"
        }
        ("restore", _) => {
            "Usage: pincer restore DIR\n\nBrings an install back from a backup made by `pincer backup DIR`, with pincer stopped. Every file is\nchecked against the manifest first; a damaged backup, or one from a newer pincer, is refused and\nnothing changes. An install already in the data or agents' directory is moved aside to\n<dir>.replaced-<time> (never deleted).\n"
        }
        _ => {
            eprintln!("pincer: unknown command `{cmd}`\nRun `pincer --help` for usage.");
            return Exit::Usage;
        }
    };
    print!("{text}");
    Exit::Ok
}

fn work_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("reading the current directory")
}

fn with_config(f: impl FnOnce(Config) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let cfg = Config::load(&work_dir()?)?;
    let sink = match &cfg.log_file {
        Some((path, max_bytes)) => crate::logger::Sink::File { path: path.clone(), max_bytes: *max_bytes },
        None => crate::logger::Sink::Stderr,
    };
    crate::logger::init_with(cfg.log_levels.clone(), sink);
    crate::logger::set_masker(|line| crate::webchat::redact::redact(line).into_owned());
    f(cfg)
}

fn image_build(args: &[&str]) -> anyhow::Result<()> {
    let mut agent = None;
    let mut force = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--agent" => {
                agent =
                    Some(PathBuf::from(it.next().ok_or_else(|| UsageError("--agent needs a PATH".into()))?))
            }
            "--force" => force = true,
            other => return usage_err(format!("unknown option `{other}` for image build")),
        }
    }
    with_config(|cfg| {
        let docker = Docker::new(&cfg.docker);
        docker.server_version()?;
        let opts =
            image::BuildOptions { image: cfg.image.clone(), agent, work_dir: cfg.work_dir.clone(), force };
        match image::build(&docker, &opts)? {
            image::Built::UpToDate => println!("agent image {} is up to date", cfg.image),
            image::Built::Built => println!("built agent image {}", cfg.image),
        }
        Ok(())
    })
}

fn agent_create(args: &[&str]) -> anyhow::Result<()> {
    let mut name = None;
    let mut instructions = None;
    let mut with_room = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--instructions" => {
                instructions =
                    Some(it.next().ok_or_else(|| UsageError("--instructions needs TEXT".into()))?.to_string())
            }
            "--with-room" => with_room = true,
            s if s.starts_with("--") => {
                return usage_err(format!("unknown option `{s}` for agent create"));
            }
            s if name.is_none() => name = Some(s.to_string()),
            s => {
                return usage_err(format!("unexpected argument `{s}` (quote a name with spaces)"));
            }
        }
    }
    let Some(name) = name else {
        return usage_err("agent create needs a NAME");
    };
    with_config(|cfg| {
        let mut conn = host::open_central(&cfg)?;
        let created =
            agents::create(&mut conn, &cfg.groups_dir, &name, instructions.as_deref(), with_room, now_ms())?;
        println!("{}", serde_json::to_string_pretty(&created)?);
        Ok(())
    })
}

enum List {
    Agents,
    Rooms,
    Users,
}

fn listing(args: &[&str], what: List) -> anyhow::Result<()> {
    let json_out = match args {
        [] => false,
        ["--json"] => true,
        [other, ..] => return usage_err(format!("unknown option `{other}`")),
    };
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        match what {
            List::Agents => {
                let agents = central::agents(&conn)?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&agents)?);
                } else {
                    println!("{:<28} {:<24} {:<24} PROVIDER", "ID", "NAME", "FOLDER");
                    for a in agents {
                        let provider = a.provider.as_deref().unwrap_or(cfg.provider.as_str()).to_string();
                        println!("{:<28} {:<24} {:<24} {provider}", a.id, a.name, a.folder);
                    }
                }
            }
            List::Users => {
                let mut out = Vec::new();
                for u in crate::db::people::users(&conn)? {
                    let roles: Vec<String> = crate::db::people::roles(&conn, &u.id)?
                        .into_iter()
                        .map(|r| match r.agent_id {
                            Some(a) => format!("{}:{a}", r.role),
                            None => r.role,
                        })
                        .chain(
                            crate::db::people::memberships(&conn, &u.id)?
                                .into_iter()
                                .map(|a| format!("member:{a}")),
                        )
                        .collect();
                    out.push((u, roles));
                }
                if json_out {
                    let list: Vec<_> = out
                        .iter()
                        .map(|(u, roles)| json!({ "id": u.id, "displayName": u.display_name, "roles": roles, "created_at": u.created_at }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!("{:<40} {:<24} ROLES", "ID", "NAME");
                    for (u, roles) in out {
                        println!("{:<40} {:<24} {}", u.id, u.display_name, roles.join(", "));
                    }
                }
            }
            List::Rooms => {
                let rooms = central::rooms(&conn, "webchat")?;
                if json_out {
                    let out: Vec<_> = rooms
                        .iter()
                        .map(|r| {
                            let agents: Vec<String> =
                                central::agents_of_room(&conn, &r.id).unwrap_or_default().into_iter().map(|a| a.id).collect();
                            json!({ "id": r.id, "name": r.name, "channel_type": r.channel_type, "agents": agents, "created_at": r.created_at })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    println!("{:<28} {:<24} AGENTS", "ID", "NAME");
                    for r in rooms {
                        let names: Vec<String> =
                            central::agents_of_room(&conn, &r.id)?.into_iter().map(|a| a.name).collect();
                        println!("{:<28} {:<24} {}", r.id, r.name, names.join(", "));
                    }
                }
            }
        }
        Ok(())
    })
}

/// An agent by id or (case-insensitive) name.
fn find_agent(conn: &crate::db::Connection, key: &str) -> anyhow::Result<central::Agent> {
    central::agents(conn)?
        .into_iter()
        .find(|a| a.id == key || host::agents::same_name(&a.name, key))
        .with_context(|| format!("no agent {key:?}: `pincer agent list` shows them"))
}

fn agent_link(args: &[&str]) -> anyhow::Result<()> {
    let (mut name, mut both, mut rest) = (None, false, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--name" => name = Some(*it.next().ok_or_else(|| UsageError("--name needs a value".into()))?),
            "--both" => both = true,
            other if other.starts_with("--") => return usage_err(format!("unknown option `{other}`")),
            other => rest.push(other),
        }
    }
    let [from, to] = rest[..] else {
        return usage_err("usage: pincer agent link AGENT OTHER [--name NAME] [--both]");
    };
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        let (a, b) = (find_agent(&conn, from)?, find_agent(&conn, to)?);
        let now = now_ms();
        let n = host::agents::link(&conn, &cfg.data_dir, &a.id, &b.id, name, now)?;
        println!("{} can message {} as {n:?}", a.name, b.name);
        if both {
            let m = host::agents::link(&conn, &cfg.data_dir, &b.id, &a.id, None, now)?;
            println!("{} can message {} as {m:?}", b.name, a.name);
        }
        Ok(())
    })
}

fn agent_unlink(agent: &str, name: &str) -> anyhow::Result<()> {
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        let a = find_agent(&conn, agent)?;
        if !host::agents::unlink(&conn, &cfg.data_dir, &a.id, name)? {
            bail!("{} has no destination {name:?}", a.name);
        }
        println!("{} no longer has the destination {name:?}", a.name);
        Ok(())
    })
}

fn room_policy(room: &str, policy: &str) -> anyhow::Result<()> {
    if !matches!(policy, "strict" | "request_approval" | "public") {
        return usage_err(format!("unknown policy `{policy}`: use strict, request_approval or public"));
    }
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        if !central::set_room_policy(&conn, room, policy)? {
            bail!("no room {room:?}: `pincer room list` shows them");
        }
        println!("room {room}: {policy}");
        Ok(())
    })
}

fn task_list(args: &[&str]) -> anyhow::Result<()> {
    let json_out = match args {
        [] => false,
        ["--json"] => true,
        [other, ..] => return usage_err(format!("unknown option `{other}`")),
    };
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        let tz = jiff::tz::TimeZone::get(&cfg.tz).unwrap_or(jiff::tz::TimeZone::UTC);
        let mut all = Vec::new();
        for agent in central::agents(&conn)? {
            for t in host::tasks::of_agent(&conn, &cfg.data_dir, &agent.id)? {
                all.push((agent.name.clone(), agent.id.clone(), t));
            }
        }
        if json_out {
            let list: Vec<_> = all
                .iter()
                .map(|(_, agent_id, t)| {
                    let mut v = serde_json::to_value(t).unwrap_or_default();
                    v["agent_id"] = json!(agent_id);
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        println!("{:<34} {:<16} {:<10} {:<22} {:<14} PROMPT", "ID", "AGENT", "STATUS", "NEXT RUN", "REPEATS");
        for (agent, _, t) in all {
            let next = t
                .task
                .next_run
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|ts| ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
                .unwrap_or_else(|| "-".into());
            let prompt: String = t.task.prompt.chars().take(60).collect();
            println!(
                "{:<34} {:<16} {:<10} {:<22} {:<14} {}",
                t.task.series_id,
                agent,
                t.task.status,
                next,
                t.task.recurrence.as_deref().unwrap_or("-"),
                prompt.replace('\n', " ")
            );
        }
        Ok(())
    })
}

fn task_control(action: &str, id: &str) -> anyhow::Result<()> {
    with_config(|cfg| {
        let conn = host::open_central(&cfg)?;
        for agent in central::agents(&conn)? {
            if !host::tasks::of_agent(&conn, &cfg.data_dir, &agent.id)?.iter().any(|t| t.task.series_id == id)
            {
                continue;
            }
            return match host::tasks::control(
                &conn,
                &cfg.data_dir,
                &agent.id,
                id,
                action,
                "The operator",
                now_ms(),
            )? {
                Ok(_) => {
                    println!("task {id} of {}: {}", agent.name, host::tasks::done_word(action));
                    Ok(())
                }
                Err(why) => bail!("{why}"),
            };
        }
        bail!("no task {id:?}: `pincer task list` shows the tasks")
    })
}

fn user_grant(args: &[&str]) -> anyhow::Result<()> {
    let (id, role, agent) = match args {
        [id, role] => (*id, *role, None),
        [id, role, "--agent", agent] => (*id, *role, Some(*agent)),
        _ => return usage_err("usage: pincer user grant ID owner|admin|member [--agent AGENT]"),
    };
    with_config(|cfg| {
        use crate::db::people;
        let conn = host::open_central(&cfg)?;
        if people::user(&conn, id)?.is_none() {
            bail!("no person {id:?}: they sign in once first; `pincer user list` shows who has");
        }
        if let Some(a) = agent
            && central::agent(&conn, a)?.is_none()
        {
            bail!("no agent {a:?}: `pincer agent list` shows the agents");
        }
        let now = now_ms();
        let changed = match (role, agent) {
            ("owner", None) => people::grant_role(&conn, id, "owner", None, "cli", now)?,
            ("admin", agent) => people::grant_role(&conn, id, "admin", agent, "cli", now)?,
            ("member", Some(a)) => people::add_member(&conn, id, a, "cli", now)?,
            ("owner", Some(_)) => bail!("owner is for the whole install: leave out --agent"),
            ("member", None) => bail!("member needs --agent AGENT: the agent they may use"),
            (other, _) => bail!("unknown role {other:?}: use owner, admin or member"),
        };
        if changed {
            println!(
                "{id} is now {role}{}; open pages pick it up when they reconnect",
                agent.map(|a| format!(" of {a}")).unwrap_or_default()
            );
        } else {
            println!("{id} already was {role}{}", agent.map(|a| format!(" of {a}")).unwrap_or_default());
        }
        Ok(())
    })
}

fn backup(cfg: &Config, dir: &Path) -> anyhow::Result<()> {
    let m = crate::backup::backup(cfg, dir)?;
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    println!("backed up {} files ({bytes} bytes) to {}", m.files.len(), dir.display());
    Ok(())
}

fn service(install: bool, args: &[&str]) -> anyhow::Result<()> {
    let user = match args {
        [] => false,
        ["--user"] => true,
        [other, ..] => return usage_err(format!("unknown option `{other}`")),
    };
    let dir = work_dir()?;
    let cfg = Config::load(&dir)?;
    let target = crate::service::Target::detect(user)?;
    if install {
        let unit = crate::service::unit(&cfg, &std::env::current_exe()?, user)?;
        let path = crate::service::install(&target, &unit)?;
        println!(
            "wrote {}

{}",
            path.display(),
            crate::service::enable_hint(&target)
        );
    } else {
        let path = crate::service::uninstall(&target)?;
        println!(
            "removed {}

{}",
            path.display(),
            crate::service::disable_hint(&target)
        );
    }
    Ok(())
}

fn restore(cfg: &Config, dir: &Path) -> anyhow::Result<()> {
    let (m, kept) = crate::backup::restore(cfg, dir)?;
    for k in kept {
        println!("the install that was there is kept at {}", k.display());
    }
    println!(
        "restored {} files from the backup of {} into {} and {}",
        m.files.len(),
        jiff::Timestamp::from_millisecond(m.created_at).map(|t| t.to_string()).unwrap_or_default(),
        cfg.data_dir.display(),
        cfg.groups_dir.display()
    );
    Ok(())
}

/// `pincer doctor`: one line per check, a fix for each failure.
fn doctor() -> Exit {
    match work_dir() {
        Ok(dir) if crate::doctor::run(&dir) => Exit::Ok,
        Ok(_) => Exit::Failure,
        Err(e) => {
            println!("FAIL config: {e:#}");
            Exit::Failure
        }
    }
}
