//! People in the central DB: users, their roles and agent memberships, signed-in sessions and
//! invitations. Typed queries only; who may do what is decided by the callers.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Connection;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    pub id: String,
    pub kind: String,
    pub display_name: String,
    pub created_at: i64,
}

impl UserRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
        Ok(UserRow {
            id: r.get("id")?,
            kind: r.get("kind")?,
            display_name: r.get::<_, Option<String>>("display_name")?.unwrap_or_default(),
            created_at: r.get("created_at")?,
        })
    }
}

/// A role: `owner` (global only) or `admin` (global, or of one agent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleRow {
    pub role: String,
    pub agent_id: Option<String>,
}

pub fn users(conn: &Connection) -> rusqlite::Result<Vec<UserRow>> {
    let mut stmt = conn.prepare("SELECT * FROM users ORDER BY created_at, id")?;
    stmt.query_map([], UserRow::from_row)?.collect()
}

pub fn user(conn: &Connection, id: &str) -> rusqlite::Result<Option<UserRow>> {
    conn.prepare_cached("SELECT * FROM users WHERE id = ?1")?.query_row([id], UserRow::from_row).optional()
}

/// Case-insensitive match on display names (for refusing look-alike names).
pub fn display_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT COALESCE(display_name, '') FROM users")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

pub fn insert_user(
    conn: &Connection,
    id: &str,
    kind: &str,
    display_name: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO users (id, kind, display_name, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, kind, display_name, now])?;
    Ok(())
}

/// Removes a user; their roles, memberships and sessions go with them (foreign keys).
pub fn delete_user(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM users WHERE id = ?1")?.execute([id])? == 1)
}

pub fn roles(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<RoleRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT role, agent_id FROM user_roles WHERE user_id = ?1 ORDER BY role DESC, agent_id",
    )?;
    stmt.query_map([user_id], |r| Ok(RoleRow { role: r.get(0)?, agent_id: r.get(1)? }))?.collect()
}

/// Grants a role; true if it was new.
pub fn grant_role(
    conn: &Connection,
    user_id: &str,
    role: &str,
    agent_id: Option<&str>,
    by: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("INSERT OR IGNORE INTO user_roles (user_id, role, agent_id, granted_by, granted_at) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![user_id, role, agent_id, by, now],
    )? == 1)
}

/// Revokes a role; true if it existed.
pub fn revoke_role(
    conn: &Connection,
    user_id: &str,
    role: &str,
    agent_id: Option<&str>,
) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2 AND agent_id IS ?3")?
        .execute(params![user_id, role, agent_id])?
        == 1)
}

pub fn owner_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(DISTINCT user_id) FROM user_roles WHERE role = 'owner'")?
        .query_row([], |r| r.get(0))
}

/// Owner or global admin; with `agent_id`, an admin of that agent counts too.
pub fn is_admin_of(conn: &Connection, user_id: &str, agent_id: Option<&str>) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM user_roles WHERE user_id = ?1
             AND (agent_id IS NULL OR (?2 IS NOT NULL AND agent_id = ?2)))",
    )?
    .query_row(params![user_id, agent_id], |r| r.get(0))
}

pub fn memberships(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT agent_id FROM agent_members WHERE user_id = ?1 ORDER BY agent_id")?;
    stmt.query_map([user_id], |r| r.get(0))?.collect()
}

pub fn add_member(
    conn: &Connection,
    user_id: &str,
    agent_id: &str,
    by: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("INSERT OR IGNORE INTO agent_members (user_id, agent_id, added_by, added_at) VALUES (?1, ?2, ?3, ?4)")?.execute(params![user_id, agent_id, by, now],
    )? == 1)
}

pub fn remove_member(conn: &Connection, user_id: &str, agent_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM agent_members WHERE user_id = ?1 AND agent_id = ?2")?
        .execute(params![user_id, agent_id])?
        == 1)
}

// ---------------------------------------------------------------------------------------------
// Signed-in sessions

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthSession {
    pub id: String,
    pub user_id: String,
    pub device: String,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl AuthSession {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<AuthSession> {
        Ok(AuthSession {
            id: r.get("id")?,
            user_id: r.get("user_id")?,
            device: r.get("device")?,
            ip: r.get("ip")?,
            created_at: r.get("created_at")?,
            last_seen: r.get("last_seen")?,
            expires_at: r.get("expires_at")?,
            revoked_at: r.get("revoked_at")?,
        })
    }
}

const SESSION_COLUMNS: &str = "id, user_id, device, ip, created_at, last_seen, expires_at, revoked_at";

pub fn insert_session(conn: &Connection, s: &AuthSession, secret_hash: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO auth_sessions (id, secret_hash, user_id, device, ip, created_at, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        s.id,
        secret_hash,
        s.user_id,
        s.device,
        s.ip,
        s.created_at,
        s.last_seen,
        s.expires_at
    ])?;
    Ok(())
}

/// The live session with this secret hash (not revoked, not expired).
pub fn live_session(conn: &Connection, secret_hash: &str, now: i64) -> rusqlite::Result<Option<AuthSession>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE secret_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2"
    ))?
    .query_row(params![secret_hash, now], AuthSession::from_row)
    .optional()
}

pub fn touch_session(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE auth_sessions SET last_seen = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// A user's sessions that still work, newest first.
pub fn sessions_of(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<Vec<AuthSession>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
         ORDER BY last_seen DESC"
    ))?;
    stmt.query_map(params![user_id, now], AuthSession::from_row)?.collect()
}

pub fn session_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<AuthSession>> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE id = ?1"),
        [id],
        AuthSession::from_row,
    )
    .optional()
}

/// Revokes one session; true if it was live.
pub fn revoke_session(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE auth_sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, now])?
        == 1)
}

/// Revokes every session of a user; how many.
pub fn revoke_sessions_of(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("UPDATE auth_sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL")?
        .execute(params![user_id, now])
}

/// Deletes sessions that ended more than `keep_ms` ago.
pub fn prune_sessions(conn: &Connection, now: i64, keep_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM auth_sessions WHERE COALESCE(revoked_at, expires_at) < ?1")?
        .execute([now - keep_ms])
}

// ---------------------------------------------------------------------------------------------
// Invitations

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invite {
    pub id: String,
    pub name: String,
    pub role: String,
    pub agents: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl Invite {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Invite> {
        let agents: String = r.get("agents")?;
        Ok(Invite {
            id: r.get("id")?,
            name: r.get("name")?,
            role: r.get("role")?,
            agents: serde_json::from_str(&agents).unwrap_or_default(),
            created_by: r.get("created_by")?,
            created_at: r.get("created_at")?,
            expires_at: r.get("expires_at")?,
            used_at: r.get("used_at")?,
            used_by: r.get("used_by")?,
            revoked_at: r.get("revoked_at")?,
        })
    }

    /// Still usable at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

const INVITE_COLUMNS: &str =
    "id, name, role, agents, created_by, created_at, expires_at, used_at, used_by, revoked_at";

pub fn insert_invite(conn: &Connection, i: &Invite, secret_hash: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO invites (id, secret_hash, name, role, agents, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        i.id,
        secret_hash,
        i.name,
        i.role,
        serde_json::to_string(&i.agents).expect("strings serialise"),
        i.created_by,
        i.created_at,
        i.expires_at
    ])?;
    Ok(())
}

pub fn invite_by_secret(conn: &Connection, secret_hash: &str) -> rusqlite::Result<Option<Invite>> {
    conn.query_row(
        &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE secret_hash = ?1"),
        [secret_hash],
        Invite::from_row,
    )
    .optional()
}

pub fn invite(conn: &Connection, id: &str) -> rusqlite::Result<Option<Invite>> {
    conn.query_row(&format!("SELECT {INVITE_COLUMNS} FROM invites WHERE id = ?1"), [id], Invite::from_row)
        .optional()
}

/// Invitations not yet used, revoked or expired.
pub fn open_invites(conn: &Connection, now: i64) -> rusqlite::Result<Vec<Invite>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {INVITE_COLUMNS} FROM invites WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ?1
         ORDER BY created_at DESC"
    ))?;
    stmt.query_map([now], Invite::from_row)?.collect()
}

/// Marks an invitation used; false if it was used (or revoked) meanwhile, so two browsers
/// racing with one link get one account.
pub fn use_invite(conn: &Connection, id: &str, user_id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE invites SET used_at = ?3, used_by = ?2
         WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?3",
        )?
        .execute(params![id, user_id, now])?
        == 1)
}

pub fn revoke_invite(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE invites SET revoked_at = ?2 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
        )?
        .execute(params![id, now])?
        == 1)
}

// ---------------------------------------------------------------------------------------------
// Notifications

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushSub {
    pub endpoint: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub p256dh: String,
    pub auth: String,
    pub created_at: i64,
}

impl PushSub {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<PushSub> {
        Ok(PushSub {
            endpoint: r.get("endpoint")?,
            user_id: r.get("user_id")?,
            session_id: r.get("session_id")?,
            p256dh: r.get("p256dh")?,
            auth: r.get("auth")?,
            created_at: r.get("created_at")?,
        })
    }
}

/// Adds or renews a subscription (an endpoint belongs to one person and device).
/// Stores a subscription (one per endpoint: a browser that signs in as someone else moves it to
/// them) and keeps the person's newest `keep` ones: browsers renew subscriptions, and the old
/// endpoints are not always reported gone.
pub fn upsert_push(conn: &Connection, s: &PushSub, keep: usize) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO push_subscriptions (endpoint, user_id, session_id, p256dh, auth, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, session_id = excluded.session_id,
             p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at, failures = 0",
    )?
    .execute(params![s.endpoint, s.user_id, s.session_id, s.p256dh, s.auth, s.created_at])?;
    conn.prepare_cached("DELETE FROM push_subscriptions WHERE user_id = ?1 AND endpoint NOT IN
             (SELECT endpoint FROM push_subscriptions WHERE user_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2)")?.execute(params![s.user_id, keep as i64],
    )?;
    Ok(())
}

pub fn push_subs(conn: &Connection) -> rusqlite::Result<Vec<PushSub>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM push_subscriptions ORDER BY user_id, created_at")?;
    stmt.query_map([], PushSub::from_row)?.collect()
}

pub fn push_subs_of(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<PushSub>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM push_subscriptions WHERE user_id = ?1 ORDER BY created_at")?;
    stmt.query_map([user_id], PushSub::from_row)?.collect()
}

/// Removes a subscription; with `user_id`, only if it is theirs.
pub fn delete_push(conn: &Connection, endpoint: &str, user_id: Option<&str>) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM push_subscriptions WHERE endpoint = ?1 AND (?2 IS NULL OR user_id = ?2)",
        )?
        .execute(params![endpoint, user_id])?
        == 1)
}

/// Removes the subscriptions made on a signed-in session (it ended).
pub fn delete_push_of_session(conn: &Connection, session_id: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM push_subscriptions WHERE session_id = ?1")?.execute([session_id])
}

pub fn push_result(conn: &Connection, endpoint: &str, ok: bool, now: i64) -> rusqlite::Result<()> {
    if ok {
        conn.prepare_cached("UPDATE push_subscriptions SET last_ok = ?2, failures = 0 WHERE endpoint = ?1")?
            .execute(params![endpoint, now])?;
    } else {
        conn.prepare_cached("UPDATE push_subscriptions SET failures = failures + 1 WHERE endpoint = ?1")?
            .execute([endpoint])?;
    }
    Ok(())
}

pub fn webhook_pref(conn: &Connection, user_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT webhook FROM notify_prefs WHERE user_id = ?1", [user_id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

pub fn set_webhook_pref(conn: &Connection, user_id: &str, on: bool) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO notify_prefs (user_id, webhook) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET webhook = excluded.webhook",
    )?
    .execute(params![user_id, on])?;
    Ok(())
}

/// People who chose to be notified through the webhook too.
pub fn webhook_users(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM notify_prefs WHERE webhook = 1")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}
