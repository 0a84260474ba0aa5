//! The webchat channel: the PWA's HTTP API and WebSocket on one public port.
//!
//! Shape (see ARCHITECTURE.md): [`front`] owns the public listener and its connection limits;
//! each connection's thread speaks HTTP/1.1 ([`http`], over the shared [`crate::http1`] framing)
//! and answers through the plain-function API ([`api`]), or after an upgrade becomes a WebSocket
//! ([`ws`]) that can be pushed to at any time. [`adapter`] is the channel adapter delivery uses;
//! [`hub`] fans events out.

pub mod adapter;
pub mod agents;
pub mod api;
pub mod approvals;
pub mod assets;
pub mod auth;
pub mod destinations;
pub mod drafter;
pub mod endpoints;
pub mod files;
pub mod front;
pub mod history;
pub mod http;
pub mod hub;
pub mod indexer;
pub mod login;
pub mod models;
pub mod multipart;
pub mod people;
pub mod pins;
pub mod push;
pub mod rate;
pub mod redact;
pub mod render;
pub mod resumable;
pub mod rooms;
pub mod search;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod transport;
pub mod trust;
pub mod upload;
pub mod wire;
pub mod ws;
pub mod wsloop;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use self::auth::Peer;
use self::hub::Hub;
use self::store::Store;
use self::wire::{ApiError, User};
use crate::config::Config;
use crate::db;
use crate::db::central::{self, Room, RoomMessage};
use crate::host::links::Links;
use crate::host::router::RouterMsg;
use crate::host::sweep::SweepMsg;
use crate::ids::now_ms;
use crate::link::ToAgent;
use crate::mailbox::Mailbox;

/// Everything request handlers and socket threads share.
pub struct Ctx {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub router: Mailbox<RouterMsg>,
    /// To have the timers of a session's tasks looked at again (a task resumed).
    pub sweep: Mailbox<SweepMsg>,
    /// To tell containers to stop a turn.
    pub links: Arc<Links>,
    pub containers: Arc<crate::host::containers::Containers>,
    pub channels: crate::host::channels::Channels,
    /// Identity from what a request carries.
    pub auth: auth::Auth,
    /// Failed sign-ins per client address.
    pub guard: login::LoginGuard,
    /// Name of the session cookie.
    pub cookie: String,
    /// HTTPS, when configured.
    pub tls: Option<Arc<tls::Tls>>,
    /// This machine's names and addresses (for links a phone can open).
    pub machine: tls::Names,
    /// The port the public listener got.
    pub port: std::sync::OnceLock<u16>,
    /// Web Push and the webhook.
    pub notifier: Arc<push::Notifier>,
    /// Messages per user (`WEBCHAT_SEND_RATE`).
    sends: rate::Limiter<String>,
    /// Where room files are stored (`data/webchat/uploads`).
    pub uploads: std::path::PathBuf,
    /// Uploads under way per person.
    pub uploading: upload::Active,
    /// Users already registered in the DB by this process.
    known_users: Mutex<HashSet<String>>,
    pub started: Instant,
}

/// What the webchat reaches of the host's threads.
pub struct HostHandles {
    pub router: Mailbox<RouterMsg>,
    pub sweep: Mailbox<SweepMsg>,
    pub links: Arc<Links>,
    /// For decisions that restart an agent's containers.
    pub containers: Arc<crate::host::containers::Containers>,
    /// For decisions shown in a room (an approval card).
    pub channels: crate::host::channels::Channels,
}

impl Ctx {
    pub fn new(
        cfg: Config,
        store: Arc<Store>,
        hub: Arc<Hub>,
        host: HostHandles,
        tls: Option<Arc<tls::Tls>>,
        notifier: Arc<push::Notifier>,
    ) -> Ctx {
        let per_min = cfg.webchat.send_per_min as f64;
        let sends = rate::Limiter::new(rate::Rate {
            per_s: per_min / 60.0,
            burst: (crate::config::SEND_BURST as f64).max(per_min / 60.0),
        });
        let install = crate::host::containers::RunnerConfig::install_id(&cfg.data_dir);
        Ctx {
            uploads: crate::config::uploads_dir(&cfg.data_dir),
            uploading: upload::Active::default(),
            auth: auth::Auth::new(&cfg.webchat),
            guard: login::LoginGuard::default(),
            cookie: login::cookie_name(&install),
            machine: tls::machine_names(cfg.webchat.host),
            tls,
            port: std::sync::OnceLock::new(),
            notifier,
            sends,
            cfg,
            store,
            hub,
            router: host.router,
            sweep: host.sweep,
            links: host.links,
            containers: host.containers,
            channels: host.channels,
            known_users: Mutex::new(HashSet::new()),
            started: Instant::now(),
        }
    }

    /// Identifies the caller: a signed-in session (cookie), else whatever the request carries
    /// ([`auth::Auth::identify`]). Registers new users; an operator identity is always an owner
    /// and any other first identity becomes the owner of a fresh install.
    pub fn authenticate(
        &self,
        peer: &Peer,
        header: &dyn Fn(&str) -> Option<String>,
        protocols: &[String],
    ) -> Result<User, ApiError> {
        if let Some(user) = self.session_user(header)? {
            return Ok(user);
        }
        let Some(id) = self.auth.identify(peer, header, protocols) else {
            let how = if self.cfg.webchat.has_explicit_auth() {
                "sign in (POST /api/login with the token, or an invitation link), or send Authorization: Bearer <WEBCHAT_TOKEN>"
            } else {
                "connect from this machine (127.0.0.1 or localhost), or sign in"
            };
            return Err(ApiError(401, format!("not authenticated: {how}")));
        };
        let conn = self.store.conn()?;
        self.register(&conn, &id)?;
        self.user(&conn, &id.user_id, &id.display_name, id.source, None)
    }

    /// The user of a live session cookie, if the request has one.
    fn session_user(&self, header: &dyn Fn(&str) -> Option<String>) -> Result<Option<User>, ApiError> {
        let Some(cookies) = header("cookie") else { return Ok(None) };
        let Some(secret) = login::cookie_value(&cookies, &self.cookie) else { return Ok(None) };
        let conn = self.store.conn()?;
        let now = now_ms();
        let Some(session) = db::people::live_session(&conn, &login::hash(secret), now)? else {
            return Ok(None);
        };
        if now - session.last_seen >= login::SESSION_TOUCH_MS {
            db::people::touch_session(&conn, &session.id, now)?;
        }
        let Some(row) = db::people::user(&conn, &session.user_id)? else { return Ok(None) };
        Ok(Some(self.user(&conn, &row.id, &row.display_name, "session", Some(session.id))?))
    }

    /// Makes sure an identity has its user row (and an operator its owner role).
    pub fn register_identity(&self, conn: &db::Connection, id: &auth::Identity) -> Result<(), ApiError> {
        self.register(conn, id)
    }

    fn register(&self, conn: &db::Connection, id: &auth::Identity) -> Result<(), ApiError> {
        let known = self.known_users.lock().unwrap_or_else(|e| e.into_inner()).contains(&id.user_id);
        if known {
            return Ok(());
        }
        // Registered before it counts as known, so a concurrent first request of the same user
        // never sees it half set up (both may register; that is idempotent).
        let now = now_ms();
        central::upsert_user(conn, &id.user_id, "webchat", &id.display_name, now)?;
        // Whoever holds WEBCHAT_TOKEN or sits at the machine itself controls the install: such
        // an identity is always an owner, so configuring a method never locks the operator out.
        // Any other first identity becomes owner only on a fresh install.
        let granted = if id.operator {
            central::grant_owner(conn, &id.user_id, now)?
        } else {
            central::bootstrap_owner(conn, &id.user_id, now)?
        };
        if granted {
            log::info!("{} ({}) is an owner of this install", id.user_id, id.display_name);
        }
        self.known_users.lock().unwrap_or_else(|e| e.into_inner()).insert(id.user_id.clone());
        Ok(())
    }

    /// Forgets that a user was registered (it was removed).
    pub fn forget_user(&self, user_id: &str) {
        self.known_users.lock().unwrap_or_else(|e| e.into_inner()).remove(user_id);
    }

    fn user(
        &self,
        conn: &db::Connection,
        id: &str,
        display_name: &str,
        via: &'static str,
        session: Option<String>,
    ) -> Result<User, ApiError> {
        let owner = central::is_owner(conn, id)?;
        let admin = owner || db::people::is_admin_of(conn, id, None)?;
        Ok(User { id: id.to_string(), display_name: display_name.to_string(), owner, admin, via, session })
    }

    /// The room if the user may use it; 404 otherwise (no hint whether it exists).
    pub fn room_for(&self, user: &User, room_id: &str) -> Result<Room, ApiError> {
        self.store
            .accessible_room(room_id, &user.id, user.owner)?
            .ok_or_else(|| ApiError(404, format!("no room {room_id:?} (or you have no access to it)")))
    }

    /// True for a configured trusted proxy's address (it carries many clients).
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.auth.is_trusted_proxy(ip)
    }

    /// Stores a user's message, broadcasts it and wakes the router. Idempotent by `client_id`
    /// (a repeated send is not counted against the user's rate).
    pub fn send(
        &self,
        user: &User,
        room: &Room,
        text: &str,
        client_id: Option<&str>,
    ) -> Result<(RoomMessage, bool), SendRefusal> {
        api::validate_text(text)?;
        if let Some(id) = client_id {
            api::validate_client_id(id)?;
            if let Some(m) = self.store.message_by_client_id(&room.id, &user.id, id)? {
                return Ok((m, false));
            }
        }
        self.take_send(user)?;
        self.store_and_route(user, room, text, client_id, &json!([]))
    }

    /// Counts a message against the person's send rate.
    pub fn take_send(&self, user: &User) -> Result<(), SendRefusal> {
        self.sends.take(&user.id, Instant::now()).map_err(SendRefusal::Limited)
    }

    /// Stores a person's checked message (with `files` already in the room), shows it, and
    /// queues it for the router.
    pub fn store_and_route(
        &self,
        user: &User,
        room: &Room,
        text: &str,
        client_id: Option<&str>,
        files: &serde_json::Value,
    ) -> Result<(RoomMessage, bool), SendRefusal> {
        let (message, created) =
            self.store.user_message(room, &user.id, &user.display_name, text, client_id, files)?;
        if created {
            self.hub.broadcast(&room.id, &message_event(&message, None), None);
            self.router.post(RouterMsg::Route);
        }
        Ok((message, created))
    }

    /// Asks every running turn of the room's agents to stop.
    pub fn stop_room(&self, room: &Room) -> Result<usize, ApiError> {
        let conn = self.store.conn()?;
        let mut n = 0;
        for s in central::sessions_of_room(&conn, &room.id)? {
            if self.links.send(&s.id, &ToAgent::Stop) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Pushes each connected client its current room list.
    pub fn rooms_changed(&self) {
        for (client, user_id) in self.hub.users() {
            let owner =
                self.store.conn().ok().and_then(|c| central::is_owner(&c, &user_id).ok()).unwrap_or(false);
            if let Ok(rooms) = self.store.rooms_for(&user_id, owner) {
                self.hub.send(client, &json!({ "type": "rooms", "rooms": rooms }).to_string());
            }
        }
    }
}

/// Why a message was not stored.
#[derive(Debug)]
pub enum SendRefusal {
    /// Over the user's send rate; retry after this long.
    Limited(Duration),
    Refused(ApiError),
}

impl<E: Into<ApiError>> From<E> for SendRefusal {
    fn from(e: E) -> SendRefusal {
        SendRefusal::Refused(e.into())
    }
}

/// `{"type":"message","room_id",...,"message":Message}`.
pub fn message_event(m: &RoomMessage, stream_id: Option<&str>) -> String {
    let mut ev = json!({ "type": "message", "room_id": m.room_id, "message": redact::message(m) });
    if let Some(s) = stream_id {
        ev["stream_id"] = json!(s);
    }
    ev.to_string()
}

/// The running webchat: stop it with [`Webchat::shutdown`].
pub struct Webchat {
    pub addr: SocketAddr,
    front: front::Front,
    ctx: Arc<Ctx>,
}

impl Webchat {
    /// Binds the public port and starts serving.
    pub fn start(ctx: Arc<Ctx>) -> anyhow::Result<Webchat> {
        let wc = &ctx.cfg.webchat;
        let bind = SocketAddr::new(wc.host, wc.port);
        let listener = TcpListener::bind(bind).with_context(|| {
            format!("cannot listen on {bind}: is another pincer (or something else) using the port? Set WEBCHAT_PORT to change it")
        })?;
        let addr = listener.local_addr()?;
        let _ = ctx.port.set(addr.port());
        let acceptor = match &ctx.tls {
            Some(tls) => transport::Acceptor::tls(tls.clone()),
            None => transport::Acceptor::plain(),
        };
        let front = front::start(ctx.clone(), listener, acceptor)?;
        Ok(Webchat { addr, front, ctx })
    }

    /// Stops accepting connections (the first step of a graceful shutdown).
    pub fn stop_accepting(&mut self) {
        self.front.stop_accepting();
    }

    /// Closes every connection and joins the threads.
    pub fn shutdown(mut self) {
        self.front.stop_accepting();
        self.ctx.hub.close_all();
        self.front.join();
    }
}
