//! Tools that ask the host for something: scheduled tasks, new agents, packages, MCP servers.
//!
//! Each validates its arguments here (clear errors for the model) and is written as a `system`
//! row to `outbound.db`; the host validates again and decides (scheduling, permissions,
//! approvals). Times the model gives without a zone are in the user's zone.

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde_json::{Value, json};

use super::{Action, Tool, ToolCtx, ToolOutput, opt_str_arg, str_arg};
use crate::agent::model::ToolSpec;
use crate::ids::new_id;

/// Longest task prompt.
pub const PROMPT_BYTES_MAX: usize = 16 * 1024;
/// Longest pre-task script.
pub const SCRIPT_BYTES_MAX: usize = 16 * 1024;
/// Packages per install request.
pub const PACKAGES_MAX: usize = 20;
/// How far ahead a task may be scheduled.
pub const SCHEDULE_AHEAD_DAYS_MAX: i64 = 5 * 366;

/// Scheduling: tasks the host runs on time (offered to every agent).
pub fn scheduling() -> Vec<Box<dyn Tool>> {
    vec![
        Box::new(ScheduleTask),
        Box::new(ListTasks),
        Box::new(UpdateTask),
        Box::new(TaskControl("cancel_task", "Cancel a scheduled task (and its future repetitions).")),
        Box::new(TaskControl("pause_task", "Pause a scheduled task until resumed.")),
        Box::new(TaskControl("resume_task", "Resume a paused task.")),
    ]
}

/// Requests a person may have to approve: a new agent, an MCP server.
pub fn requests() -> Vec<Box<dyn Tool>> {
    vec![Box::new(CreateAgent), Box::new(AddMcpServer)]
}

/// Not offered: the host cannot build per-agent images yet (a tool the host refuses is not
/// offered).
pub fn unsupported() -> Vec<Box<dyn Tool>> {
    vec![Box::new(InstallPackages)]
}

fn spec(name: &str, description: &str, schema: Value) -> ToolSpec {
    ToolSpec { name: name.into(), description: description.into(), input_schema: schema }
}

fn system(ctx: &mut ToolCtx<'_>, action: &str, payload: Value) -> ToolOutput {
    match ctx.actions.act(Action::System { action: action.into(), payload }) {
        Ok(done) => ToolOutput::ok(done),
        Err(e) => ToolOutput::error(e),
    }
}

/// When a task should run: an ISO time (`2026-12-01T09:00:00Z`, `…+01:00`), a local time in the
/// user's zone (`2026-12-01 09:00`), or a delay (`in 2 hours`, `+30m`, `PT15M`). Returns UTC.
pub fn parse_when(s: &str, tz: &TimeZone, now: Timestamp) -> Result<Timestamp, String> {
    let s = s.trim();
    let help = "use an ISO time like 2026-12-01T09:00:00Z, a local time like 2026-12-01 09:00, or a delay like \"in 2 hours\"";
    if let Some(delay) =
        s.strip_prefix("in ").or_else(|| s.strip_prefix('+')).or_else(|| s.starts_with('P').then_some(s))
    {
        let span: Span =
            delay.trim().parse().map_err(|e| format!("cannot read the delay {delay:?} ({e}); {help}"))?;
        return now.checked_add(span).map_err(|e| format!("{delay:?} is out of range ({e})"));
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    let naive = s.replacen(' ', "T", 1);
    let dt: jiff::civil::DateTime =
        naive.parse().map_err(|e| format!("cannot read the time {s:?} ({e}); {help}"))?;
    dt.to_zoned(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| format!("{s:?} does not exist in the user's zone ({e})"))
}

/// Checks a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn validate_cron(expr: &str) -> Result<(), String> {
    crate::cron::Cron::parse(expr).map(|_| ())
}

fn bounded<'v>(input: &'v Value, name: &str, max: usize) -> Result<Option<&'v str>, ToolOutput> {
    let v = opt_str_arg(input, name)?;
    if let Some(s) = v
        && s.len() > max
    {
        return Err(ToolOutput::error(format!("`{name}` is {} bytes; the limit is {max}", s.len())));
    }
    Ok(v)
}

fn task_id(input: &Value) -> Result<&str, ToolOutput> {
    let id = str_arg(input, "task_id")?.trim();
    if id.is_empty()
        || id.len() > 64
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
    {
        return Err(ToolOutput::error("`task_id` must be a task id as list_tasks shows it"));
    }
    Ok(id)
}

/// `process_after` and `recurrence` checked and converted.
fn timing(
    input: &Value,
    ctx: &ToolCtx<'_>,
    required: bool,
) -> Result<(Option<Timestamp>, Option<String>), ToolOutput> {
    let tz = TimeZone::get(ctx.tz).unwrap_or(TimeZone::UTC);
    let now = Timestamp::now();
    let when = match opt_str_arg(input, "process_after")? {
        Some(s) => {
            let t = parse_when(s, &tz, now).map_err(ToolOutput::error)?;
            if t.as_millisecond() - now.as_millisecond() > SCHEDULE_AHEAD_DAYS_MAX * 86_400_000 {
                return Err(ToolOutput::error("that is too far ahead (more than 5 years)"));
            }
            Some(t)
        }
        None if required => return Err(ToolOutput::error("give `process_after`: when the task should run")),
        None => None,
    };
    let recurrence = match opt_str_arg(input, "recurrence")? {
        Some(r) if r.trim().is_empty() => Some(String::new()),
        Some(r) => {
            validate_cron(r.trim()).map_err(ToolOutput::error)?;
            Some(r.trim().to_string())
        }
        None => None,
    };
    Ok((when, recurrence))
}

struct ScheduleTask;

impl Tool for ScheduleTask {
    fn spec(&self) -> ToolSpec {
        spec(
            "schedule_task",
            "Schedule a task: at the given time you receive `prompt` as a <task> and act on it (remind the user, \
             check something, send a report). Optionally repeat with a cron expression in the user's time zone.",
            json!({"type": "object", "properties": {
                "prompt": {"type": "string", "description": "What to do when the task runs."},
                "process_after": {"type": "string", "description": "When: ISO time, local time (user's zone) like 2026-12-01 09:00, or a delay like \"in 20 minutes\"."},
                "recurrence": {"type": "string", "description": "Optional cron (minute hour day month weekday), e.g. \"0 9 * * 1-5\"."},
                "script": {"type": "string", "description": "Optional bash script run first; its last output line must be JSON with a boolean wakeAgent."}
            }, "required": ["prompt", "process_after"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("process_after").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let prompt = match str_arg(input, "prompt") {
            Ok(p) if !p.trim().is_empty() && p.len() <= PROMPT_BYTES_MAX => p.to_string(),
            Ok(_) => return ToolOutput::error(format!("`prompt` must be 1 to {PROMPT_BYTES_MAX} bytes")),
            Err(e) => return e,
        };
        let script = match bounded(input, "script", SCRIPT_BYTES_MAX) {
            Ok(s) => s.map(str::to_string),
            Err(e) => return e,
        };
        let (when, recurrence) = match timing(input, ctx, true) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let when = when.expect("required");
        let task_id = new_id("task");
        system(
            ctx,
            "schedule_task",
            json!({
                "taskId": task_id,
                "prompt": prompt,
                "script": script,
                "processAfter": when.to_string(),
                "processAfterMs": when.as_millisecond(),
                "recurrence": recurrence.filter(|r| !r.is_empty()),
            }),
        )
    }
}

struct ListTasks;

impl Tool for ListTasks {
    fn spec(&self) -> ToolSpec {
        spec(
            "list_tasks",
            "List your scheduled tasks (pending and paused by default).",
            json!({"type": "object", "properties": {
                "status": {"type": "string", "enum": ["pending", "paused", "all"]}
            }}),
        )
    }

    fn summary(&self, _: &Value) -> String {
        "tasks".into()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let status = match opt_str_arg(input, "status") {
            Ok(s) => s.unwrap_or("open"),
            Err(e) => return e,
        };
        let tasks = match ctx.actions.tasks() {
            Ok(t) => t,
            Err(e) => return ToolOutput::error(e),
        };
        let tz = TimeZone::get(ctx.tz).unwrap_or(TimeZone::UTC);
        let lines: Vec<String> = tasks
            .into_iter()
            .filter(|t| match status {
                "all" => true,
                "open" => t.status == "pending" || t.status == "paused",
                s => t.status == s,
            })
            .map(|t| {
                let at = t
                    .process_after
                    .and_then(|ms| Timestamp::from_millisecond(ms).ok())
                    .map(|ts| ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
                    .unwrap_or_else(|| "now".into());
                let recur = t.recurrence.map(|r| format!(" recur=\"{r}\"")).unwrap_or_default();
                let prompt: String = t.prompt.chars().take(80).collect();
                format!("- {} [{}] at {at}{recur} → {prompt}", t.series_id, t.status)
            })
            .collect();
        if lines.is_empty() { ToolOutput::ok("No tasks.") } else { ToolOutput::ok(lines.join("\n")) }
    }
}

struct UpdateTask;

impl Tool for UpdateTask {
    fn spec(&self) -> ToolSpec {
        spec(
            "update_task",
            "Change a scheduled task: its prompt, time, recurrence (\"\" removes it) or script (\"\" removes it).",
            json!({"type": "object", "properties": {
                "task_id": {"type": "string"},
                "prompt": {"type": "string"},
                "process_after": {"type": "string"},
                "recurrence": {"type": "string"},
                "script": {"type": "string"}
            }, "required": ["task_id"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("task_id").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let id = match task_id(input) {
            Ok(id) => id.to_string(),
            Err(e) => return e,
        };
        let (prompt, script) =
            match (bounded(input, "prompt", PROMPT_BYTES_MAX), bounded(input, "script", SCRIPT_BYTES_MAX)) {
                (Ok(p), Ok(s)) => (p.map(str::to_string), s.map(str::to_string)),
                (Err(e), _) | (_, Err(e)) => return e,
            };
        let (when, recurrence) = match timing(input, ctx, false) {
            Ok(t) => t,
            Err(e) => return e,
        };
        if prompt.is_none() && script.is_none() && when.is_none() && recurrence.is_none() {
            return ToolOutput::error("nothing to change: give prompt, process_after, recurrence or script");
        }
        let mut payload = json!({ "taskId": id });
        if let Some(p) = prompt {
            payload["prompt"] = json!(p);
        }
        if let Some(s) = script {
            payload["script"] = json!(s);
        }
        if let Some(t) = when {
            payload["processAfter"] = json!(t.to_string());
            payload["processAfterMs"] = json!(t.as_millisecond());
        }
        if let Some(r) = recurrence {
            payload["recurrence"] = json!(r);
        }
        system(ctx, "update_task", payload)
    }
}

struct TaskControl(&'static str, &'static str);

impl Tool for TaskControl {
    fn spec(&self) -> ToolSpec {
        spec(
            self.0,
            self.1,
            json!({"type": "object", "properties": {"task_id": {"type": "string"}}, "required": ["task_id"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("task_id").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match task_id(input) {
            Ok(id) => system(ctx, self.0, json!({ "taskId": id })),
            Err(e) => e,
        }
    }
}

struct CreateAgent;

impl Tool for CreateAgent {
    fn spec(&self) -> ToolSpec {
        spec(
            "create_agent",
            "Create another agent with its own instructions, which you can then message (it answers you). \
             Done at once when the person you are answering is the owner or an admin; otherwise they are \
             asked to approve in the room and you are told the outcome.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "A short display name."},
                "instructions": {"type": "string", "description": "Its instructions (second person)."}
            }, "required": ["name"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("name").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let name = match str_arg(input, "name") {
            Ok(n) if !n.trim().is_empty() && n.chars().count() <= 64 && !n.chars().any(char::is_control) => {
                n.trim()
            }
            Ok(_) => return ToolOutput::error("`name` must be 1-64 characters without control characters"),
            Err(e) => return e,
        };
        let instructions = match bounded(input, "instructions", 64 * 1024) {
            Ok(i) => i.unwrap_or(""),
            Err(e) => return e,
        };
        system(
            ctx,
            "create_agent",
            json!({ "requestId": new_id("req"), "name": name, "instructions": instructions }),
        )
    }
}

/// Debian package names: `^[a-z0-9][a-z0-9.+-]+$`.
fn valid_apt(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 100
        && p.as_bytes()[0].is_ascii_alphanumeric()
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._+-".contains(&b))
}

/// npm names, optionally scoped: `@scope/name`.
fn valid_npm(p: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    match p.strip_prefix('@') {
        Some(scoped) => scoped.split_once('/').is_some_and(|(s, n)| part(s) && part(n)),
        None => part(p),
    }
}

fn string_list(input: &Value, name: &str) -> Result<Vec<String>, ToolOutput> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| ToolOutput::error(format!("`{name}` must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(ToolOutput::error(format!("`{name}` must be a list of strings"))),
    }
}

struct InstallPackages;

impl Tool for InstallPackages {
    fn spec(&self) -> ToolSpec {
        spec(
            "install_packages",
            "Ask the owner to approve installing system (apt) or npm packages into your image. After approval \
             your container is rebuilt and restarted.",
            json!({"type": "object", "properties": {
                "apt": {"type": "array", "items": {"type": "string"}},
                "npm": {"type": "array", "items": {"type": "string"}},
                "reason": {"type": "string", "description": "Why you need them (shown to the approver)."}
            }}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        let mut all = string_list(input, "apt").unwrap_or_default();
        all.extend(string_list(input, "npm").unwrap_or_default());
        all.join(" ")
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let (apt, npm) = match (string_list(input, "apt"), string_list(input, "npm")) {
            (Ok(a), Ok(n)) => (a, n),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if apt.is_empty() && npm.is_empty() {
            return ToolOutput::error("name at least one package in `apt` or `npm`");
        }
        if apt.len() + npm.len() > PACKAGES_MAX {
            return ToolOutput::error(format!("at most {PACKAGES_MAX} packages per request"));
        }
        if let Some(bad) = apt.iter().find(|p| !valid_apt(p)) {
            return ToolOutput::error(format!("{bad:?} is not a valid apt package name"));
        }
        if let Some(bad) = npm.iter().find(|p| !valid_npm(p)) {
            return ToolOutput::error(format!("{bad:?} is not a valid npm package name"));
        }
        let reason = match bounded(input, "reason", 2000) {
            Ok(r) => r.unwrap_or(""),
            Err(e) => return e,
        };
        system(ctx, "install_packages", json!({ "apt": apt, "npm": npm, "reason": reason }))
    }
}

struct AddMcpServer;

impl Tool for AddMcpServer {
    fn spec(&self) -> ToolSpec {
        spec(
            "add_mcp_server",
            "Ask the owner or an admin to approve an MCP server (a program in your container speaking the \
             Model Context Protocol over stdio). Once approved, its tools are yours from your next turn.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "Short name, letters, digits, - and _."},
                "command": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "object", "additionalProperties": {"type": "string"}}
            }, "required": ["name", "command"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("name").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let name = match str_arg(input, "name") {
            Ok(n)
                if !n.is_empty()
                    && n.len() <= 32
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                n
            }
            Ok(_) => return ToolOutput::error("`name` must be 1-32 letters, digits, - or _"),
            Err(e) => return e,
        };
        let command = match str_arg(input, "command") {
            Ok(c) if !c.trim().is_empty() && c.len() <= 512 => c.trim(),
            Ok(_) => return ToolOutput::error("`command` must be 1-512 bytes"),
            Err(e) => return e,
        };
        let args = match string_list(input, "args") {
            Ok(a) if a.len() <= 64 => a,
            Ok(_) => return ToolOutput::error("at most 64 args"),
            Err(e) => return e,
        };
        let env = match input.get("env") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(m)) if m.len() <= 64 && m.values().all(Value::is_string) => {
                Value::Object(m.clone())
            }
            Some(_) => return ToolOutput::error("`env` must be an object of string values (at most 64)"),
        };
        system(ctx, "add_mcp_server", json!({ "name": name, "command": command, "args": args, "env": env }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_users_zone() {
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let at = |s| parse_when(s, &berlin, now).map(|t| t.to_string());
        assert_eq!(at("2026-12-01 09:00").unwrap(), "2026-12-01T08:00:00Z", "naive = Berlin time");
        assert_eq!(at("2026-12-01T09:00:00Z").unwrap(), "2026-12-01T09:00:00Z");
        assert_eq!(at("2026-12-01T09:00:00+05:00").unwrap(), "2026-12-01T04:00:00Z");
        assert_eq!(at("in 2 hours").unwrap(), "2026-11-21T14:00:00Z");
        assert_eq!(at("+30m").unwrap(), "2026-11-21T12:30:00Z");
        assert_eq!(at("PT15M").unwrap(), "2026-11-21T12:15:00Z");
        let err = at("tomorrow-ish").unwrap_err();
        assert!(err.contains("ISO time"), "{err}");
        assert!(at("2026-03-29 02:30").is_ok(), "a time in a DST gap resolves");
    }

    #[test]
    fn cron_validation() {
        for ok in ["* * * * *", "0 9 * * 1-5", "*/15 0-6 1,15 jan-mar mon", "5 4 * * sun", "0 0 31 12 7"] {
            assert!(validate_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "a b c d e",
            "5-1 * * * *",
        ] {
            assert!(validate_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_names() {
        assert!(
            valid_apt("python3-pip")
                && valid_apt("g++")
                && !valid_apt("-rf")
                && !valid_apt("Foo")
                && !valid_apt("a b")
        );
        assert!(
            valid_npm("left-pad") && valid_npm("@scope/pkg") && !valid_npm("@scope") && !valid_npm("../x")
        );
    }
}
