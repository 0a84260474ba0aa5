//! Scheduled tasks, host side: the agent's requests (`schedule_task`, `update_task`,
//! `cancel_task`, `pause_task`, `resume_task`) become rows of the session's `inbound.db`, and a
//! recurring task's next run is scheduled when a run ends.
//!
//! A task is a series of `kind = 'task'` rows sharing a `series_id`; the newest row of a series
//! is its state (pending, paused, completed, failed). A run is a pending row whose
//! `process_after` (epoch ms) has come: the sweep wakes the agent for it like for any message.
//! The next run of a recurring task follows its schedule (cron in the configured zone), counted
//! from when the finished run was due, not from when it ended. Runs missed while pincer was not
//! running are not replayed: one catch-up run is made at once, and its prompt says how many were
//! missed. Everything here is a function of `now` and idempotent (a request applied twice after a
//! crash changes nothing the second time).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::cron::Cron;
use crate::db::Connection;
use crate::db::inbound::{self, Address, NewInbound};

/// Longest task prompt (as the runner's tool checks it).
pub const PROMPT_BYTES_MAX: usize = 16 * 1024;
/// Longest pre-task script.
pub const SCRIPT_BYTES_MAX: usize = 16 * 1024;
/// Open tasks (pending or paused series) one session may have.
pub const OPEN_TASKS_MAX: usize = 200;
/// How far ahead a run may be scheduled.
pub const AHEAD_MS_MAX: i64 = 5 * 366 * 86_400_000;
/// Missed runs counted for the catch-up note (more are reported as "more than").
pub const MISSED_COUNT_MAX: u32 = 1000;

/// What applying a request did, for the log and the delivery record.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub series_id: String,
    /// When the task runs next (None: it is paused, cancelled or has no run left).
    pub next_run: Option<i64>,
}

/// Whether `action` is one of the task requests handled here.
pub fn is_task_action(action: &str) -> bool {
    matches!(action, "schedule_task" | "update_task" | "cancel_task" | "pause_task" | "resume_task")
}

/// Applies a task request from the session's agent. `route` is where the task's runs are
/// answered (the session's conversation). An `Err` says why it was refused, in words for the
/// agent and the room.
pub fn apply(
    inb: &Connection,
    action: &str,
    payload: &Value,
    route: &Address,
    now: i64,
    tz: &TimeZone,
) -> Result<Applied, String> {
    let db = |e: rusqlite::Error| format!("the session's database: {e}");
    let text = |key: &str, max: usize| -> Result<Option<String>, String> {
        match payload.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(format!("`{key}` is longer than {max} bytes")),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    };
    let recurrence = match text("recurrence", 200)? {
        Some(r) if r.trim().is_empty() => Some(String::new()),
        Some(r) => {
            let r = r.trim().to_string();
            let cron = Cron::parse(&r)?;
            let from = Timestamp::from_millisecond(now).unwrap_or(Timestamp::UNIX_EPOCH);
            if cron.next_after(from, tz).is_none() {
                return Err(format!(
                    "the schedule {r:?} never runs (no such date within {} years)",
                    crate::cron::HORIZON_DAYS / 366
                ));
            }
            Some(r)
        }
        None => None,
    };
    let when = match payload.get("processAfterMs") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ms = v.as_i64().ok_or("`processAfterMs` must be epoch milliseconds")?;
            if ms - now > AHEAD_MS_MAX {
                return Err("that is too far ahead (more than 5 years)".into());
            }
            Some(ms)
        }
    };
    let series = || -> Result<String, String> {
        let id = payload.get("taskId").and_then(Value::as_str).unwrap_or("").trim();
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        {
            return Err("`taskId` must be a task id as list_tasks shows it".into());
        }
        Ok(id.to_string())
    };
    match action {
        "schedule_task" => {
            let id = series()?;
            let prompt = text("prompt", PROMPT_BYTES_MAX)?
                .filter(|p| !p.trim().is_empty())
                .ok_or("`prompt` is required: what the task should do")?;
            let script = text("script", SCRIPT_BYTES_MAX)?.filter(|s| !s.trim().is_empty());
            let when = when.ok_or("`processAfterMs` is required: when the task should run")?;
            if inbound::open_task_count(inb).map_err(db)? >= OPEN_TASKS_MAX as i64 {
                return Err(format!(
                    "this conversation already has {OPEN_TASKS_MAX} open tasks; cancel some first"
                ));
            }
            let content = json!({ "prompt": prompt, "script": script });
            insert_run(inb, &id, &id, when, recurrence.filter(|r| !r.is_empty()).as_deref(), &content, route)
                .map_err(db)?;
            Ok(Applied { series_id: id, next_run: Some(when) })
        }
        "update_task" => {
            let id = series()?;
            let Some(mut task) = inbound::open_task(inb, &id).map_err(db)? else {
                return Err(format!("no open task {id:?} (list_tasks shows the open ones)"));
            };
            let mut content: Value = serde_json::from_str(&task.content).unwrap_or_else(|_| json!({}));
            if let Some(p) = text("prompt", PROMPT_BYTES_MAX)? {
                if p.trim().is_empty() {
                    return Err("`prompt` cannot be empty".into());
                }
                content["prompt"] = json!(p);
            }
            if let Some(s) = text("script", SCRIPT_BYTES_MAX)? {
                content["script"] = if s.trim().is_empty() { Value::Null } else { json!(s) };
            }
            if let Some(w) = when {
                task.process_after = Some(w);
            }
            if let Some(r) = recurrence {
                task.recurrence = (!r.is_empty()).then_some(r);
            }
            inbound::update_task(
                inb,
                &task.id,
                task.process_after,
                task.recurrence.as_deref(),
                &content.to_string(),
            )
            .map_err(db)?;
            let next_run = (task.status == "pending").then_some(task.process_after).flatten();
            Ok(Applied { series_id: id, next_run })
        }
        "cancel_task" | "pause_task" | "resume_task" => {
            let id = series()?;
            let (from, to) = match action {
                "cancel_task" => (&["pending", "paused"][..], "cancelled"),
                "pause_task" => (&["pending"][..], "paused"),
                _ => (&["paused"][..], "pending"),
            };
            let Some(task) = inbound::open_task(inb, &id).map_err(db)? else {
                return Err(format!("no open task {id:?} (list_tasks shows the open ones)"));
            };
            if !from.contains(&task.status.as_str()) && task.status != to {
                return Err(format!("task {id:?} is {}; it cannot be {}", task.status, past(action)));
            }
            inbound::set_task_status(inb, &task.id, to).map_err(db)?;
            let next_run = (to == "pending").then_some(task.process_after).flatten();
            Ok(Applied { series_id: id, next_run })
        }
        other => Err(format!("the action {other:?} is not a task request")),
    }
}

fn past(action: &str) -> &'static str {
    match action {
        "cancel_task" => "cancelled",
        "pause_task" => "paused",
        _ => "resumed",
    }
}

fn insert_run(
    inb: &Connection,
    id: &str,
    series: &str,
    when: i64,
    recurrence: Option<&str>,
    content: &Value,
    route: &Address,
) -> rusqlite::Result<()> {
    inbound::insert(
        inb,
        &NewInbound {
            id,
            kind: "task",
            // The time the agent sees on the run: when it was due.
            timestamp: when,
            process_after: Some(when),
            recurrence,
            series_id: Some(series),
            source_session_id: None,
            trigger: true,
            platform_id: route.platform_id.as_deref(),
            channel_type: route.channel_type.as_deref(),
            thread_id: route.thread_id.as_deref(),
            content: &content.to_string(),
            on_wake: false,
        },
    )?;
    Ok(())
}

/// A run scheduled by [`advance`].
#[derive(Debug, Clone, PartialEq)]
pub struct NextRun {
    pub series_id: String,
    pub when: i64,
    /// Runs that were due while pincer was not running (this one catches up on them).
    pub missed: u32,
}

/// Schedules the next run of every recurring task whose run has ended (completed or failed):
/// a new pending row in the series, the finished row no longer recurring.
pub fn advance(inb: &Connection, now: i64, tz: &TimeZone) -> rusqlite::Result<Vec<NextRun>> {
    let mut next_runs = Vec::new();
    for done in inbound::ended_recurring_tasks(inb)? {
        let cron = match Cron::parse(done.recurrence.as_deref().unwrap_or("")) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("task {}: its recurrence no longer parses ({e}); it ends here", done.series_id);
                inbound::stop_recurring(inb, &done.id)?;
                continue;
            }
        };
        let due = done.process_after.unwrap_or(done.timestamp);
        let (when, missed) = next_run(&cron, due, now, tz);
        if let Some(when) = when {
            let mut content: Value = serde_json::from_str(&done.content).unwrap_or_else(|_| json!({}));
            match content.as_object_mut() {
                Some(obj) if missed > 0 => {
                    obj.insert("missedRuns".into(), json!(missed));
                }
                Some(obj) => {
                    obj.remove("missedRuns");
                }
                None => {}
            }
            let route = Address {
                channel_type: done.channel_type.clone(),
                platform_id: done.platform_id.clone(),
                thread_id: done.thread_id.clone(),
            };
            // Inserted and un-flagged together: a crash in between would repeat nothing, as
            // the new row's id is derived from the finished one.
            let id = format!("{}-next", done.id);
            insert_run(inb, &id, &done.series_id, when, done.recurrence.as_deref(), &content, &route)?;
            next_runs.push(NextRun { series_id: done.series_id.clone(), when, missed });
        } else {
            log::info!("task {}: its schedule has no further run", done.series_id);
        }
        inbound::stop_recurring(inb, &done.id)?;
    }
    Ok(next_runs)
}

/// What the room is told when a recurring task catches up on runs missed while pincer was down.
pub fn catch_up_notice(run: &NextRun) -> String {
    let n = if run.missed >= MISSED_COUNT_MAX {
        format!("more than {MISSED_COUNT_MAX}")
    } else {
        run.missed.to_string()
    };
    format!(
        "The scheduled task {} missed {n} run(s) while pincer was not running; it runs once now instead of repeating them.",
        run.series_id
    )
}

/// The run after one that was due at `due`: the schedule's next time, or, when that has passed
/// already (pincer was not running), one catch-up run now with the number of runs missed.
pub fn next_run(cron: &Cron, due: i64, now: i64, tz: &TimeZone) -> (Option<i64>, u32) {
    let ts = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let Some(mut next) = cron.next_after(ts(due), tz) else { return (None, 0) };
    if next.as_millisecond() > now {
        return (Some(next.as_millisecond()), 0);
    }
    let mut missed = 0;
    while next.as_millisecond() <= now && missed < MISSED_COUNT_MAX {
        missed += 1;
        match cron.next_after(next, tz) {
            Some(n) => next = n,
            None => break,
        }
    }
    (Some(now), missed)
}

/// A task as people see it (API, CLI): the newest row of its series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskView {
    pub id: String,
    pub series_id: String,
    pub prompt: String,
    pub next_run: Option<i64>,
    pub recurrence: Option<String>,
    pub status: String,
}

/// The session's tasks, soonest first (finished one-shot tasks included, newest state only).
pub fn list(inb: &Connection) -> rusqlite::Result<Vec<TaskView>> {
    Ok(inbound::tasks(inb)?
        .into_iter()
        .map(|t| {
            let content: Value = serde_json::from_str(&t.content).unwrap_or_default();
            TaskView {
                id: t.series_id.clone(),
                series_id: t.series_id,
                prompt: content.get("prompt").and_then(Value::as_str).unwrap_or_default().to_string(),
                next_run: if t.status == "pending" { t.process_after } else { None },
                recurrence: t.recurrence,
                status: t.status,
            }
        })
        .collect())
}

/// `pause` → `paused`, …
pub fn done_word(action: &str) -> &'static str {
    match action {
        "pause" => "paused",
        "resume" => "resumed",
        _ => "cancelled",
    }
}

/// An agent's tasks across its conversations, each with the session and room it belongs to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentTask {
    #[serde(flatten)]
    pub task: TaskView,
    pub session_id: String,
    pub room_id: Option<String>,
}

pub fn of_agent(
    central: &Connection,
    data_dir: &std::path::Path,
    agent_id: &str,
) -> anyhow::Result<Vec<AgentTask>> {
    let mut out = Vec::new();
    for session in crate::db::central::sessions_of_agent(central, agent_id)? {
        let dir = super::sessions::SessionDir::new(data_dir, agent_id, &session.id);
        if !dir.inbound().exists() {
            continue;
        }
        let inb = dir.open_inbound()?;
        for task in list(&inb)? {
            out.push(AgentTask { task, session_id: session.id.clone(), room_id: session.room_id.clone() });
        }
    }
    out.sort_by_key(|t| (t.task.next_run.is_none(), t.task.next_run));
    Ok(out)
}

/// A person pauses, resumes or cancels one of an agent's tasks (the API, the CLI). Returns the
/// session it belongs to and what it became; `Err` says why not (no such task, or a state it
/// cannot leave that way). The agent is told on its next turn.
pub fn control(
    central: &Connection,
    data_dir: &std::path::Path,
    agent_id: &str,
    series_id: &str,
    action: &str,
    who: &str,
    now: i64,
) -> anyhow::Result<Result<(String, Applied), String>> {
    let request = match action {
        "pause" => "pause_task",
        "resume" => "resume_task",
        "cancel" => "cancel_task",
        other => return Ok(Err(format!("unknown action {other:?}: use pause, resume or cancel"))),
    };
    for session in crate::db::central::sessions_of_agent(central, agent_id)? {
        let dir = super::sessions::SessionDir::new(data_dir, agent_id, &session.id);
        if !dir.inbound().exists() {
            continue;
        }
        let inb = dir.open_inbound()?;
        if !list(&inb)?.iter().any(|t| t.series_id == series_id) {
            continue;
        }
        let applied = match apply(
            &inb,
            request,
            &json!({ "taskId": series_id }),
            &Address::default(),
            now,
            &TimeZone::UTC,
        ) {
            Ok(a) => a,
            Err(why) => return Ok(Err(why)),
        };
        // The agent learns of it with its next turn (context only: it does not wake it).
        let text = format!("{who} {} your task {series_id}.", done_word(action));
        super::sessions::note(&inb, &format!("taskctl-{series_id}-{now}"), &text, false, false, now)?;
        return Ok(Ok((session.id, applied)));
    }
    Ok(Err(format!("the agent has no task {series_id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::civil::DateTime>().unwrap().to_zoned(zone()).unwrap().timestamp().as_millisecond()
    }

    fn session() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("inbound.db"), crate::db::Kind::Inbound).unwrap();
        (dir, conn)
    }

    fn route() -> Address {
        Address { channel_type: Some("webchat".into()), platform_id: Some("r1".into()), thread_id: None }
    }

    fn schedule(
        inb: &Connection,
        id: &str,
        when: i64,
        recurrence: Option<&str>,
        now: i64,
    ) -> Result<Applied, String> {
        let payload = json!({ "taskId": id, "prompt": "water the plants", "processAfterMs": when, "recurrence": recurrence });
        apply(inb, "schedule_task", &payload, &route(), now, &zone())
    }

    /// The agent finished the series' current run.
    fn finish(inb: &Connection, series: &str) {
        let t = inbound::open_task(inb, series).unwrap().unwrap();
        inbound::apply_acks(inb, &[(t.id, "completed".into())]).unwrap();
    }

    fn state(inb: &Connection, series: &str) -> (String, Option<i64>, Option<String>) {
        let t = list(inb).unwrap().into_iter().find(|t| t.series_id == series).unwrap();
        (t.status, t.next_run, t.recurrence)
    }

    #[test]
    fn requests_become_rows_and_are_checked() {
        let (_d, inb) = session();
        let now = ms("2026-12-01 08:00");
        let at9 = ms("2026-12-01 09:00");
        assert_eq!(schedule(&inb, "task-a", at9, None, now).unwrap().next_run, Some(at9));
        // The same request again (a retried delivery) changes nothing.
        schedule(&inb, "task-a", at9, None, now).unwrap();
        assert_eq!(list(&inb).unwrap().len(), 1);
        assert_eq!(inbound::due_count(&inb, now).unwrap(), 0);
        assert_eq!(inbound::due_count(&inb, at9).unwrap(), 1, "due at its time");
        // Pause, resume, update, cancel.
        let control = |action: &str, extra: Value| {
            let mut p = json!({ "taskId": "task-a" });
            p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            apply(&inb, action, &p, &route(), now, &zone())
        };
        control("pause_task", json!({})).unwrap();
        assert_eq!(state(&inb, "task-a").0, "paused");
        assert_eq!(inbound::due_count(&inb, at9).unwrap(), 0, "a paused task does not run");
        assert!(control("pause_task", json!({})).is_ok(), "pausing twice is not an error");
        control("resume_task", json!({})).unwrap();
        let at10 = ms("2026-12-01 10:00");
        control(
            "update_task",
            json!({ "processAfterMs": at10, "recurrence": "0 10 * * *", "prompt": "water them" }),
        )
        .unwrap();
        assert_eq!(state(&inb, "task-a"), ("pending".into(), Some(at10), Some("0 10 * * *".into())));
        assert_eq!(list(&inb).unwrap()[0].prompt, "water them");
        control("cancel_task", json!({})).unwrap();
        assert_eq!(state(&inb, "task-a").0, "cancelled");
        assert_eq!(inbound::due_count(&inb, at10).unwrap(), 0);
        let e = control("resume_task", json!({})).unwrap_err();
        assert!(e.contains("no open task"), "{e}");
        // Refusals say why.
        for (payload, says) in [
            (json!({ "taskId": "t", "prompt": "x" }), "processAfterMs"),
            (json!({ "taskId": "t", "processAfterMs": at9 }), "prompt"),
            (
                json!({ "taskId": "t", "prompt": "x", "processAfterMs": at9, "recurrence": "61 * * * *" }),
                "field 1",
            ),
            (json!({ "taskId": "bad id!", "prompt": "x", "processAfterMs": at9 }), "taskId"),
            (json!({ "taskId": "t", "prompt": "x", "processAfterMs": now + AHEAD_MS_MAX + 1 }), "too far"),
            (
                json!({ "taskId": "t", "prompt": "x", "processAfterMs": at9, "recurrence": "0 0 30 2 *" }),
                "never runs",
            ),
        ] {
            let e = apply(&inb, "schedule_task", &payload, &route(), now, &zone()).unwrap_err();
            assert!(e.contains(says), "{payload}: {e}");
        }
    }

    #[test]
    fn a_recurring_task_runs_on_its_schedule_across_daylight_saving_time() {
        let (_d, inb) = session();
        // Every day at 02:30 in Berlin; the clocks spring forward on 2026-03-29.
        let first = ms("2026-03-28 02:30");
        schedule(&inb, "task-r", first, Some("30 2 * * *"), first - 1000).unwrap();
        let mut runs = Vec::new();
        let mut now = first;
        for _ in 0..3 {
            finish(&inb, "task-r");
            // The run ended a little after it was due; the next follows the schedule.
            now += 60_000;
            let next = advance(&inb, now, &zone()).unwrap();
            assert_eq!(next.len(), 1);
            assert_eq!(next[0].missed, 0);
            runs.push(
                Timestamp::from_millisecond(next[0].when)
                    .unwrap()
                    .to_zoned(zone())
                    .strftime("%m-%d %H:%M %Z")
                    .to_string(),
            );
            now = next[0].when;
        }
        assert_eq!(runs, ["03-29 03:30 CEST", "03-30 02:30 CEST", "03-31 02:30 CEST"]);
        assert!(advance(&inb, now, &zone()).unwrap().is_empty(), "nothing new until a run ends");
        let (status, _, recurrence) = state(&inb, "task-r");
        assert_eq!((status.as_str(), recurrence.as_deref()), ("pending", Some("30 2 * * *")));
    }

    #[test]
    fn runs_missed_while_down_are_not_replayed() {
        let (_d, inb) = session();
        let first = ms("2026-12-01 09:00");
        schedule(&inb, "task-h", first, Some("0 * * * *"), first - 1000).unwrap();
        finish(&inb, "task-h");
        // pincer comes back two and a half hours later: one run at once, saying two were missed.
        let back = ms("2026-12-01 11:30");
        let next = advance(&inb, back, &zone()).unwrap();
        assert_eq!((next[0].when, next[0].missed), (back, 2));
        let t = inbound::open_task(&inb, "task-h").unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&t.content).unwrap()["missedRuns"], 2);
        finish(&inb, "task-h");
        let next = advance(&inb, back + 1000, &zone()).unwrap();
        assert_eq!((next[0].when, next[0].missed), (ms("2026-12-01 12:00"), 0), "then on schedule");
        let t = inbound::open_task(&inb, "task-h").unwrap().unwrap();
        assert!(serde_json::from_str::<Value>(&t.content).unwrap().get("missedRuns").is_none());
    }

    #[test]
    fn a_paused_recurring_task_does_not_advance_and_a_cancelled_one_ends() {
        let (_d, inb) = session();
        let first = ms("2026-12-01 09:00");
        schedule(&inb, "task-p", first, Some("0 9 * * *"), first - 1000).unwrap();
        let p = json!({ "taskId": "task-p" });
        apply(&inb, "cancel_task", &p, &route(), first, &zone()).unwrap();
        assert!(advance(&inb, first + 1000, &zone()).unwrap().is_empty());
        assert_eq!(state(&inb, "task-p").0, "cancelled");
    }
}
