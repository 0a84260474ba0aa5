#!/usr/bin/env python3
"""Real-browser test of the webchat page (www/) against a real host with real agent containers.

Two phases, each on its own `pincer run` (PINCER_BIN, else target/debug/pincer) with a fresh data
dir and a free port, driven through headless Chromium, checking what a person would see.

1. Mock provider: rooms, the mock banner, sending and echo replies, inert hostile input,
   markdown, history after a reload, live and missed messages (catch-up with `after_seq` across a
   host restart), failed sends with retry, creating an agent and the phone layout. Streaming,
   tool chips, thinking and others typing, which the mock provider never produces, are checked
   with frames handed to the page's socket.
2. Scripted model: the host's `openai` provider pointed at fake_openai.py, a Chat Completions
   server answering from a script, so a real agent streams (held open to watch it live), runs
   tools (a file written and sent, a question card answered by a click, a reaction and an edit),
   is stopped mid-stream, is told the model is busy, and reports a model error. The model is
   reached through the host's credential proxy, which must add the API key; the key must never
   reach the page.

The WebSocket frames the page sends and receives are read from Chromium's performance log.

Exit 0 when every step passed; otherwise the failing step, the browser console and the host's
log tail are printed and the exit status is 1.

Waits are WebDriverWait on observable conditions with bounded timeouts; nothing sleeps.
"""

import collections
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai import FakeOpenAI, Hold, error_reply, text_reply, tool_reply  # noqa: E402

os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager go online for drivers

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOST_BIN = Path(os.environ.get("PINCER_BIN") or ROOT / "target" / "debug" / "pincer").absolute()
ROOM = "assistant"  # the first-run agent's room

HOST_START_S = 30  # until the host logs "webchat listening"
UI_S = 10  # page reactions
FIRST_REPLY_S = 45  # the first reply starts an agent container
REPLY_S = 20
RECONNECT_S = 45  # the page's backoff may have grown to 16 s while the host was down

# What the page's script leaves in the console that must never appear.
CONSOLE_FORBIDDEN = re.compile(r"Content Security Policy|Refused to|Uncaught", re.I)

# Installed before the page's own script: remembers the sockets the page opens, so the test can
# hand it frames the server would send in situations the mock provider never creates (streaming).
SOCKET_SPY = """
window.__sockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""

# No proxy for loopback requests, whatever the environment says.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def check(cond, what):
    if not cond:
        raise Failure(what)


# ---------------------------------------------------------------------------------------- host


def default_image():
    """The agent image `make image` builds: named after the project root (config.rs)."""
    return f"pincer-agent-{hashlib.sha1(str(ROOT.resolve()).encode()).hexdigest()[:8]}:latest"


class Host:
    """One `pincer run` process; its stderr is collected by a thread into `log` (shared).
    `env`: settings on top of the defaults (the model phase's provider)."""

    def __init__(self, tmp, log, port=0, env=None):
        self.tmp = tmp
        self.log = log
        self.port = port
        self.env = dict(env or {})
        self.proc = None

    def start(self):
        # Run in the temp dir so no .env of the developer's applies, and drop inherited model
        # settings: the page must see the mock provider, unless `env` configures one.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ANTHROPIC_", "OPENAI_", "PINCER_", "WEBCHAT_"))
        }
        env.update(
            PINCER_DATA_DIR=str(self.tmp / "data"),
            PINCER_GROUPS_DIR=str(self.tmp / "groups"),
            PINCER_IMAGE=os.environ.get("PINCER_IMAGE") or default_image(),
            WEBCHAT_PORT=str(self.port),
        )
        if os.environ.get("PINCER_DOCKER"):
            env["PINCER_DOCKER"] = os.environ["PINCER_DOCKER"]
        env.update(self.env)
        self.proc = subprocess.Popen(
            [str(HOST_BIN), "run"],
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        listening = threading.Event()
        threading.Thread(target=self._read, args=(listening,), daemon=True).start()
        if not listening.wait(HOST_START_S) or self.proc.poll() is not None:
            self.stop()
            raise Failure(f"the host did not log 'webchat listening' within {HOST_START_S} s, or exited")
        return self

    def _read(self, listening):
        pid = self.proc.pid
        for line in self.proc.stderr:
            self.log.append(f"[host {pid}] {line.rstrip()}")
            m = re.search(r"webchat listening on https?://\S+?:(\d+)/", line)
            if m and not listening.is_set():
                self.port = int(m.group(1))
                listening.set()
        listening.set()  # end of output: the host is gone

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.log.append("[test] the host ignored SIGTERM for 20 s; killed")
                self.proc.kill()
                self.proc.wait()


def post(port, text):
    """Posts a message to the Assistant room over HTTP, as another client would."""
    res = api(port, "POST", f"/api/rooms/{ROOM}/messages", {"text": text, "client_id": f"t-{uuid.uuid4()}"})
    check(res.get("ok") is True, f"POST /api/rooms/{ROOM}/messages answered {res}")


def api(port, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Webchat-CSRF": "1"},
    )
    with HTTP.open(req, timeout=10) as resp:
        return json.load(resp)


# ------------------------------------------------------------------------------------- browser


def start_browser(profile_dir, home=None):
    """Headless Chromium; `home` is its HOME (where Linux Chromium keeps its certificate store)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--window-size=1280,900",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(flag)
    # The performance log carries the WebSocket frames; the browser log the console.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    env = dict(os.environ, HOME=str(home)) if home else None
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver", env=env), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SOCKET_SPY})
    return driver


class Page:
    """The chat page in the browser, with the reads and waits the steps need."""

    def __init__(self, driver, port):
        self.d = driver
        self.port = port
        self.console = []  # every console entry seen so far
        self.frames = []  # every WebSocket frame seen so far, as ws_frames returns them

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def wait(self, cond, what, timeout=UI_S):
        """Waits for `cond(driver)` to be truthy; a Failure naming `what` on timeout."""
        try:
            # A list re-rendered while the condition reads it: read it again on the next poll.
            return WebDriverWait(
                self.d, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
            ).until(cond)
        except TimeoutException:
            raise Failure(f"timed out after {timeout} s waiting for {what}") from None

    def find(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def messages(self):
        """The message list as shown: one dict per element of #messages, in DOM order."""
        return self.js(
            """
            return [...document.querySelectorAll('#messages > .msg')].map((m) => ({
              id: m.dataset.id || null,
              seq: m.dataset.seq === undefined ? null : Number(m.dataset.seq),
              type: m.dataset.senderType,
              sender: (m.querySelector('.sender-name') || {}).textContent || null,
              text: m.querySelector('.body').innerText.trim(),
              pending: m.classList.contains('pending'),
              failed: m.classList.contains('failed'),
            }));
            """
        )

    def stored(self):
        return [m for m in self.messages() if m["id"]]

    def wait_message(self, sender_type, text, timeout=REPLY_S):
        """Waits until a stored message of that type and text is shown; returns it."""

        def found(_):
            return next((m for m in self.stored() if m["type"] == sender_type and m["text"] == text), None)

        return self.wait(found, f"a stored {sender_type} message {text!r}", timeout)

    def conn_state(self):
        return self.find("#conn-state").get_attribute("data-state")

    def wait_connected(self, timeout=UI_S):
        self.wait(lambda _: self.conn_state() == "connected", "the connection state 'connected'", timeout)

    def send(self, text):
        box = self.find("#composer")
        self.wait(lambda _: box.is_enabled(), "the composer to be enabled")
        box.send_keys(text + Keys.ENTER)

    def chat(self, text, shown=None, reply_timeout=REPLY_S):
        """Sends `text`, waits for the stored user message and the agent's echo; `shown` is
        the text as rendered (markdown), if it differs."""
        shown = shown or text
        self.send(text)
        self.wait_message("user", shown)
        return self.wait_message("agent", f"echo: {shown}", reply_timeout)

    def inject(self, frame):
        """Delivers `frame` to the page as if its socket had received it from the server."""
        self.js(
            "window.__sockets.at(-1).dispatchEvent(new MessageEvent('message', {data: arguments[0]}))",
            json.dumps(frame),
        )

    def ws_frames(self):
        """WebSocket frames since the last call, from the performance log: [(sent|received, obj)]."""
        out = []
        for entry in self.d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            direction = {"Network.webSocketFrameSent": "sent", "Network.webSocketFrameReceived": "received"}
            if msg["method"] in direction:
                payload = msg["params"]["response"]["payloadData"]
                try:
                    out.append((direction[msg["method"]], json.loads(payload)))
                except ValueError:
                    pass  # not JSON: not ours to check
        self.frames.extend(out)
        return out

    def read_console(self):
        self.console.extend(self.d.get_log("browser"))


def shown_alert(d):
    """The page's confirm() dialog once it is up (for a wait)."""
    try:
        return d.switch_to.alert
    except Exception:  # noqa: BLE001 — not shown yet
        return None


def check_history_sane(msgs):
    """Stored messages: unique ids, strictly increasing seq (so sorted, no duplicates)."""
    ids = [m["id"] for m in msgs]
    seqs = [m["seq"] for m in msgs]
    check(len(ids) == len(set(ids)), f"duplicate message ids on the page: {ids}")
    check(all(a < b for a, b in zip(seqs, seqs[1:])), f"messages not in increasing seq order: {seqs}")


# --------------------------------------------------------------------------------------- steps


def step_loads(ctx):
    p = ctx.page
    p.d.get(p.url)
    check(p.d.title == "pincer", f"title is {p.d.title!r}, expected 'pincer'")
    check(
        p.find("link[rel=icon]").get_attribute("href") == p.url + "icon.svg",
        "the page links /icon.svg as its icon",
    )
    p.wait_connected()
    room = p.wait(lambda _: p.find_all(f'#rooms [data-room-id="{ROOM}"]'), "the Assistant room listed")[0]
    check("Assistant" in room.text, f"room item text is {room.text!r}")
    check("active" in room.get_attribute("class"), "the Assistant room is the selected one")
    check(p.find("#room-title").text == "Assistant", f"room title is {p.find('#room-title').text!r}")
    banner = p.find("#mock-banner")
    p.wait(lambda _: banner.is_displayed(), "the mock-provider banner")
    check("No model configured" in banner.text, f"banner text is {banner.text!r}")
    p.wait(lambda _: p.find("#empty").is_displayed(), "the empty state")
    check(p.find("#empty").text.startswith("No messages yet"), f"empty state says {p.find('#empty').text!r}")


def step_echo(ctx):
    p = ctx.page
    p.ws_frames()
    text = "hello from the browser"
    p.send(text)
    # Shown at once, then replaced by the stored copy when the server acknowledges it.
    p.wait(lambda _: [m for m in p.messages() if m["type"] == "user" and m["text"] == text], "the message")
    check(p.find("#composer").get_attribute("value") == "", "the composer is cleared after sending")
    p.wait_message("user", text)
    reply = p.wait_message("agent", f"echo: {text}", FIRST_REPLY_S)
    check(reply["sender"] == "Assistant", f"the reply's sender is {reply['sender']!r}")
    check(not p.find("#empty").is_displayed(), "the empty state is gone once there are messages")
    check(not any(m["pending"] or m["failed"] for m in p.messages()), "no pending or failed bubbles remain")
    # Others see the typing: it starts with the first keystroke and ends with the send.
    sent = [f for d, f in p.ws_frames() if d == "sent"]
    typing = {"type": "typing", "room_id": ROOM, "is_typing": True}
    send = next((i for i, f in enumerate(sent) if f.get("type") == "send"), None)
    check(send is not None and sent[send]["text"] == text, f"a send frame with the text; sent {sent}")
    check(typing in sent[:send], f"typing: true before the send; sent {sent}")
    check(dict(typing, is_typing=False) in sent, f"typing: false once sent; sent {sent}")


def step_markdown(ctx):
    p = ctx.page
    box = p.find("#composer")
    shown = len(p.messages())
    # Shift+Enter is a new line, not a send.
    box.send_keys("**bold** and")
    ActionChains(p.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    box.send_keys("`code`")
    value = box.get_attribute("value")
    check(value == "**bold** and\n`code`", f"composer holds {value!r}")
    check(len(p.messages()) == shown, "Shift+Enter did not send")
    box.send_keys(Keys.ENTER)
    p.wait_message("user", "bold and code")
    reply = p.wait_message("agent", "echo: bold and code")
    strong = p.js(
        "return [...document.querySelectorAll(`#messages [data-id='${arguments[0]}'] .body strong`)]"
        ".map((e) => e.textContent)",
        reply["id"],
    )
    check(strong == ["bold"], f"expected one <strong>bold</strong> in the reply, found {strong}")


def step_xss(ctx):
    p = ctx.page
    p.chat('<img src=x onerror="window.__xss=1">')
    p.chat("[x](javascript:window.__xss=2)", shown="x")
    # Click every link there is: a javascript: URL that slipped through would run now.
    for a in p.d.find_elements(By.CSS_SELECTOR, "#messages .body a"):
        a.click()
    found = p.js(
        """
        const all = [...document.querySelectorAll('#messages *')];
        return {
          images: all.filter((e) => e.matches('.body img')).length,
          jsLinks: all.filter((e) => /^\\s*javascript:/i.test(e.getAttribute('href') || '')).length,
          handlers: all.filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
          xss: window.__xss === undefined ? null : String(window.__xss),
        };
        """
    )
    inert = {"images": 0, "jsLinks": 0, "handlers": 0, "xss": None}
    check(found == inert, f"hostile input was not inert: {found}")
    check(
        any(m["text"] == '<img src=x onerror="window.__xss=1">' for m in p.stored()),
        "the raw HTML is shown as text",
    )


def step_reload(ctx):
    p = ctx.page
    before = [(m["id"], m["seq"], m["type"], m["text"]) for m in p.stored()]
    check(len(before) == 8, f"expected 4 messages and 4 replies before the reload, saw {len(before)}")
    p.d.refresh()
    p.wait_connected()
    p.wait(
        lambda _: [(m["id"], m["seq"], m["type"], m["text"]) for m in p.stored()] == before,
        "the same history, in order, after the reload",
    )
    check_history_sane(p.stored())
    check([m["type"] for m in p.stored()] == ["user", "agent"] * 4, "user messages and replies alternate")


def step_live_post(ctx):
    p = ctx.page
    # Reading older messages in a short window: news must not yank the view down.
    p.d.set_window_size(1280, 520)
    list_js = "const m = document.getElementById('messages');"
    p.wait(
        lambda _: p.js(list_js + "m.scrollTop = 0; return m.scrollHeight > m.clientHeight"),
        "the message list to overflow a short window",
    )
    text = "posted over HTTP while the page is open"
    post(ctx.host.port, text)
    p.wait_message("user", text)
    p.wait_message("agent", f"echo: {text}")
    check_history_sane(p.stored())
    pill = p.find("#new-pill")
    check(pill.is_displayed(), "a 'new messages' pill while scrolled up")
    check(p.js(list_js + "return m.scrollTop") == 0, "the view stayed where it was")
    pill.click()
    at_bottom = list_js + "return m.scrollHeight - m.scrollTop - m.clientHeight < 2"
    p.wait(lambda _: p.js(at_bottom) and not pill.is_displayed(), "the pill to scroll to the newest message")
    p.d.set_window_size(1280, 900)


def step_catch_up(ctx):
    """The host stops; meanwhile a message and its reply are stored; the page, back on the
    restarted host, re-joins with after_seq = the highest seq it had and gets exactly those."""
    p = ctx.page
    p.ws_frames()  # start from here
    last_seq = p.stored()[-1]["seq"]
    port = ctx.host.port
    ctx.host.stop()
    p.wait(lambda _: p.conn_state() == "reconnecting", "the connection state 'reconnecting'")
    check(p.find("#composer").is_enabled(), "typing goes on while disconnected (the outbox holds sends)")
    check("Offline" in p.find("#composer").get_attribute("placeholder"), "the composer says it is offline")
    check(p.find("#reconnect-now").is_displayed(), "a 'Retry now' button while disconnected")

    # Another client writes while the page is away: a host on another port, same data.
    text = "sent while the page was away"
    side = Host(ctx.tmp, ctx.log).start()
    try:
        post(side.port, text)

        def replied(_):
            new = api(side.port, "GET", f"/api/rooms/{ROOM}/messages?after={last_seq}")["messages"]
            return new if any(m["text"] == f"echo: {text}" for m in new) else None

        missed = p.wait(replied, "the side host to store the reply", FIRST_REPLY_S)
    finally:
        side.stop()
    check(p.conn_state() != "connected", "the page stayed disconnected while the host was down")

    ctx.host = Host(ctx.tmp, ctx.log, port).start()
    p.wait_connected(RECONNECT_S)
    p.wait_message("user", text)
    p.wait_message("agent", f"echo: {text}")

    frames = p.ws_frames()
    joins = [f for d, f in frames if d == "sent" and f.get("type") == "join"]
    check(joins == [{"type": "join", "room_id": ROOM, "after_seq": last_seq}], f"re-join frames: {joins}")
    histories = [f for d, f in frames if d == "received" and f.get("type") == "history"]
    check(len(histories) == 1, f"expected one history frame after the re-join, got {len(histories)}")
    got = [m["id"] for m in histories[0]["messages"]]
    want = [m["id"] for m in missed]
    check(got == want, f"catch-up brought {got}, the missed messages are {want}")
    shown = p.stored()
    check_history_sane(shown)
    all_stored = api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/messages?after=0")["messages"]
    check([m["id"] for m in shown] == [m["id"] for m in all_stored], "the page shows the stored history")


def step_failed_send(ctx):
    p = ctx.page
    p.ws_frames()
    # Longer than the server's 64 KiB limit: refused, with the client_id, so the bubble fails.
    p.js(
        "const c = document.getElementById('composer');"
        "c.value = 'x'.repeat(70000); c.dispatchEvent(new Event('input'));"
    )
    p.find("#composer").send_keys(Keys.ENTER)
    failed = p.wait(lambda _: p.find_all("#messages .msg.failed"), "a failed bubble")[0]
    error = failed.find_element(By.CSS_SELECTOR, ".send-error").text
    check("limit" in error, f"failure shown as {error!r}")
    check(failed.get_attribute("data-id") is None, "a failed message has no stored id")
    failed.find_element(By.CSS_SELECTOR, ".retry").click()
    sends = []

    def both_sent(_):
        sends.extend(f for d, f in p.ws_frames() if d == "sent" and f.get("type") == "send")
        return len(sends) >= 2

    p.wait(both_sent, "the original send and its retry")
    check(sends[0]["client_id"] == sends[1]["client_id"], "the retry reuses the client_id")
    p.wait(lambda _: p.find_all("#messages .msg.failed"), "the retried bubble to fail again")


def step_new_agent(ctx):
    p = ctx.page
    p.find("#new-agent").click()
    dialog = p.find("#agent-dialog")
    p.wait(lambda _: dialog.is_displayed(), "the new-agent dialog")
    # ✨ drafts a name and instructions from one line (the mock provider drafts from the words).
    p.find("#agent-describe").send_keys("plan my weekly meals")
    p.find("#agent-draft").click()
    p.wait(lambda _: p.find("#agent-name").get_attribute("value") == "Plan Weekly Meals", "the drafted name")
    drafted = p.find("#agent-instructions").get_attribute("value")
    check("plan my weekly meals" in drafted, f"the drafted instructions {drafted!r}")
    p.find("#agent-name").clear()
    p.find("#agent-instructions").clear()
    # The server's refusal is shown as it is.
    p.find("#agent-name").send_keys("   ")
    p.find("#agent-create").click()
    error = p.find("#agent-error")
    p.wait(lambda _: error.is_displayed(), "the server's error in the dialog")
    check("name is empty" in error.text, f"dialog error says {error.text!r}")

    name = p.find("#agent-name")
    name.clear()
    name.send_keys("Helper")
    p.find("#agent-instructions").send_keys("Help with anything.")
    p.find("#agent-create").click()
    p.wait(lambda _: not dialog.is_displayed(), "the dialog to close")
    active = p.wait(
        lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "#rooms li.active") if "Helper" in e.text],
        "the Helper room to be listed and selected",
    )[0]
    room_id = active.get_attribute("data-room-id")
    check(room_id and room_id != ROOM, f"the new room id is {room_id!r}")
    check(p.find("#room-title").text == "Helper", f"room title is {p.find('#room-title').text!r}")
    check(p.find_all(f'#rooms [data-room-id="{ROOM}"]'), "the Assistant room is still listed")
    p.wait(lambda _: p.find("#empty").is_displayed(), "the empty state of the new room")
    reply = p.chat("hi helper", reply_timeout=FIRST_REPLY_S)
    check(reply["sender"] == "Helper", f"the reply's sender is {reply['sender']!r}")
    check([m["type"] for m in p.stored()] == ["user", "agent"], "the new room shows only its own messages")

    # The selected room is remembered.
    p.d.refresh()
    p.wait_connected()
    p.wait(lambda _: p.find("#room-title").text == "Helper", "Helper to be open again after a reload")
    p.wait_message("agent", "echo: hi helper")


def step_phone(ctx):
    p = ctx.page
    p.d.set_window_size(390, 844)
    toggle = p.find("#menu-toggle")
    rooms = p.find("#rooms")
    p.wait(lambda _: toggle.is_displayed(), "the room-list toggle on a narrow screen")
    p.wait(lambda _: not rooms.is_displayed(), "the room list to be tucked away on a narrow screen")
    toggle.click()
    p.wait(lambda _: rooms.is_displayed(), "the room drawer to open")
    p.wait(
        lambda d: d.execute_script("return !arguments[0].getAnimations().length", p.find("#sidebar")),
        "the drawer animation to finish",
    )
    p.find(f'#rooms [data-room-id="{ROOM}"] button').click()
    p.wait(lambda _: p.find("#room-title").text == "Assistant", "the Assistant room to open")
    p.wait(lambda _: not rooms.is_displayed(), "the drawer to close")
    p.wait_message("agent", "echo: hello from the browser")
    width = p.js("return document.documentElement.scrollWidth")
    check(width <= 390, f"the page is {width}px wide on a 390px screen (horizontal scrolling)")


def step_team_room(ctx):
    """On a phone-sized screen: a room with two agents, an @mention, then a prime agent."""
    p = ctx.page
    p.d.set_window_size(390, 844)
    p.find("#menu-toggle").click()
    p.wait(lambda _: p.find("#new-room").is_displayed(), "the New room button in the drawer")
    p.find("#new-room").click()
    p.wait(lambda _: p.find("#new-room-dialog").is_displayed(), "the New room dialog")
    p.find("#new-room-name").send_keys("Team")
    boxes = p.wait(lambda _: p.find_all("#new-room-agents input") if len(p.find_all("#new-room-agents input")) == 2 else None,
                   "both agents offered")
    for b in boxes:
        b.click()
    p.find("#new-room-create").click()
    p.wait(lambda _: p.find("#room-title").text == "Team", "the Team room open")
    check("Assistant" in p.find("#room-subtitle").text and "Helper" in p.find("#room-subtitle").text,
          f"subtitle {p.find('#room-subtitle').text!r}")
    # @ offers the room's agents; Enter picks one.
    composer = p.find("#composer")
    composer.send_keys("@hel")
    items = p.wait(lambda _: p.find_all("#mention-list li") or None, "the mention list")
    check([i.get_attribute("data-folder") for i in items] == ["helper"], f"offered {[i.text for i in items]}")
    composer.send_keys(Keys.ENTER)
    check(composer.get_attribute("value") == "@helper ", f"composer holds {composer.get_attribute('value')!r}")
    composer.send_keys("hi there")
    composer.send_keys(Keys.ENTER)
    reply = p.wait_message("agent", "echo: @helper hi there", FIRST_REPLY_S)
    check(reply["sender"] == "Helper", f"the mentioned agent answered, not {reply['sender']!r}")
    # ★ the prime: it answers what mentions nobody.
    p.find("#room-settings").click()
    p.wait(lambda _: p.find("#room-dialog").is_displayed(), "the room settings")
    assistant = p.wait(lambda _: next((li for li in p.find_all("#room-agents li")
                                       if "Assistant" in li.text), None), "Assistant listed in the settings")
    assistant.find_element(By.CSS_SELECTOR, ".star").click()
    p.wait(lambda _: p.find("#room-agents li .star.on") is not None and "Assistant" in
           p.find("#room-agents li .star.on").find_element(By.XPATH, "..").text, "Assistant starred")
    width = p.js("return document.documentElement.scrollWidth")
    check(width <= 390, f"the settings make the page {width}px wide on a 390px screen")
    # An agent's instructions, edited from the room settings.
    helper = next(li for li in p.find_all("#room-agents li") if "Helper" in li.text)
    helper_id = helper.get_attribute("data-agent")
    helper.find_element(By.XPATH, ".//button[text()='Edit']").click()
    p.wait(lambda _: p.find("#agent-edit-dialog").is_displayed()
           and p.find("#agent-edit-name").get_attribute("value") == "Helper", "the agent editor")
    box = p.find("#agent-edit-instructions")
    box.clear()
    box.send_keys("Answer in haiku.")
    p.find("#agent-edit-save").click()
    p.wait(lambda _: not p.find("#agent-edit-dialog").is_displayed(), "the editor closes")
    got = api(ctx.host.port, "GET", f"/api/agents/{helper_id}")
    check(got["instructions"] == "Answer in haiku.", f"stored instructions {got['instructions']!r}")
    # An agent deleted from its editor (the owner): it leaves the room's list.
    temp = api(ctx.host.port, "POST", "/api/agents", {"name": "Temp"})["agentGroup"]["id"]
    api(ctx.host.port, "POST", "/api/rooms/team/agents", {"agentId": temp})
    p.find("#room-close").click()
    p.find("#room-settings").click()
    row = p.wait(lambda _: next((li for li in p.find_all("#room-agents li") if "Temp" in li.text), None), "Temp listed")
    row.find_element(By.XPATH, ".//button[text()='Edit']").click()
    p.wait(lambda _: p.find("#agent-delete").is_displayed(), "the Delete button for the owner")
    p.find("#agent-delete").click()

    p.wait(shown_alert, "the confirmation").accept()
    p.wait(lambda _: "Temp" not in p.js("return document.getElementById('room-agents').textContent"),
           "Temp gone from the room")
    check(temp not in [a["id"] for a in api(ctx.host.port, "GET", "/api/agents")], "Temp deleted")
    p.find("#room-close").click()
    p.wait(lambda _: "Assistant ★" in p.find("#room-subtitle").text, "the prime shown in the header")
    p.send("who answers now?")
    reply = p.wait_message("agent", "echo: who answers now?", FIRST_REPLY_S)
    check(reply["sender"] == "Assistant", f"the prime answered, not {reply['sender']!r}")
    p.d.set_window_size(1280, 900)
    p.wait(lambda _: p.find(f'#rooms [data-room-id="{ROOM}"] button').is_displayed(), "the room list")
    p.find(f'#rooms [data-room-id="{ROOM}"] button').click()
    p.wait(lambda _: p.find("#room-title").text == "Assistant", "back in the Assistant room")


def step_live_activity(ctx):
    """Thinking, a streamed reply with a tool and Stop, and someone typing: frames injected."""
    p = ctx.page
    p.d.set_window_size(1280, 900)
    p.ws_frames()
    me = api(ctx.host.port, "GET", "/api/auth/check")["userId"]
    seq = p.stored()[-1]["seq"]
    activity, stop = p.find("#activity"), p.find("#stop")

    def activity_text(_=None):
        return activity.get_attribute("textContent") if "visible" in activity.get_attribute("class") else ""

    def message(seq, sender_type, sender_id, text):
        return {
            "type": "message",
            "room_id": ROOM,
            "message": {
                "id": f"msg-injected-{seq}",
                "seq": seq,
                "room_id": ROOM,
                "sender": "someone",
                "sender_id": sender_id,
                "sender_type": sender_type,
                "text": text,
                "html": f"<p>{text}</p>",
                "files": [],
                "created_at": int(time.time() * 1000),
            },
        }

    # The user's own message (say, from another tab) arrives: the agent is thinking.
    p.inject(message(seq + 1, "user", me, "think about it"))
    p.wait(lambda _: activity_text() == "Assistant is thinking…", "the thinking indicator")
    check(stop.is_displayed(), "Stop is offered while the agent is thinking")

    sid = "stream-injected"
    ev = {"room_id": ROOM, "stream_id": sid}
    p.inject(dict(ev, type="stream", agent="Assistant", delta="Hello <b>"))
    p.inject(dict(ev, type="tool", name="web_search", state="start", summary="pincer docs"))
    p.inject(dict(ev, type="stream", agent="Assistant", delta="world</b>"))
    live = p.wait(lambda _: p.find_all(f'#messages [data-stream-id="{sid}"]'), "the live bubble")[0]
    body = live.find_element(By.CSS_SELECTOR, ".body")
    check(body.text == "Hello <b>world</b>", f"streamed text shown as {body.text!r}")
    check(not body.find_elements(By.CSS_SELECTOR, "b"), "streamed text is plain text, not markup")
    chip = f'#messages [data-stream-id="{sid}"] .tool'
    chips = [(c.get_attribute("class"), c.text) for c in p.find_all(chip)]
    check(chips == [("tool tool-running", "web_search\npincer docs")], f"tool chips {chips}")
    check(activity_text() == "", f"no thinking indicator once the reply streams (saw {activity_text()!r})")
    check(stop.is_displayed(), "Stop is offered while a reply streams")
    stop.click()
    stops = []

    def stop_sent(_):
        stops.extend(f for d, f in p.ws_frames() if d == "sent" and f.get("type") == "stop")
        return stops

    p.wait(stop_sent, "a stop frame")
    check(stops == [{"type": "stop", "room_id": ROOM}], f"stop frames: {stops}")

    p.inject(dict(ev, type="tool", name="web_search", state="end", summary="3 results"))
    p.wait(lambda _: p.find_all(chip + ".tool-done"), "the tool chip to show the tool finished")
    p.inject(dict(ev, type="stream_end"))
    p.wait(lambda _: "finished" in live.get_attribute("class"), "the live bubble to be marked finished")
    p.wait(lambda _: not stop.is_displayed(), "Stop to go away when the stream ended")
    final = dict(message(seq + 2, "agent", "ag-x", "Hello world"), stream_id=sid)
    p.inject(final)
    p.wait(lambda _: not p.find_all("[data-stream-id]"), "the final message to replace the live bubble")
    check(p.stored()[-1]["id"] == final["message"]["id"], "the final message is shown last")

    typing = {"type": "typing", "room_id": ROOM, "user": {"id": "webchat:alice", "displayName": "Alice"}}
    p.inject(dict(typing, is_typing=True))
    p.wait(lambda _: activity_text() == "Alice is typing…", "Alice's typing indicator")
    p.inject(dict(typing, is_typing=False))
    p.wait(lambda _: activity_text() == "", "Alice's typing indicator to go away")


def step_console_clean(ctx):
    ctx.page.read_console()
    bad = [e["message"] for e in ctx.page.console if CONSOLE_FORBIDDEN.search(e["message"])]
    check(not bad, "console errors (CSP violations or exceptions):\n  " + "\n  ".join(bad))



def step_offline_outbox(ctx):
    """Sent while the host is down, kept across a reload, sent once when the host is back."""
    p = ctx.page
    port = ctx.host.port
    ctx.host.stop()
    p.wait(lambda _: p.conn_state() == "reconnecting", "the connection state 'reconnecting'")
    text = "typed while offline"
    p.send(text)

    def waiting(_):
        return next((m for m in p.messages() if m["pending"] and m["text"] == text), None)

    p.wait(waiting, "a bubble waiting for the connection")
    stamp = p.js("return document.querySelector('#messages .msg.pending .stamp').textContent")
    check(stamp == "Waiting for the connection", f"the bubble says {stamp!r}")
    # A reload while offline: the service worker serves the app, the outbox still has it.
    p.d.refresh()
    p.wait(waiting, "the waiting bubble after a reload while offline", RECONNECT_S)
    ctx.host = Host(ctx.tmp, ctx.log, port).start()
    p.wait_connected(RECONNECT_S)
    p.wait_message("agent", f"echo: {text}", FIRST_REPLY_S)
    stored = [m for m in api(port, "GET", f"/api/rooms/{ROOM}/messages?limit=1000")["messages"] if m["text"] == text]
    check(len(stored) == 1, f"stored once: {stored}")
    left = p.d.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const req = indexedDB.open('pincer', 1);
        req.onsuccess = () => {
          const all = req.result.transaction('outbox').objectStore('outbox').getAll();
          all.onsuccess = () => done(all.result.length);
        };
        req.onerror = () => done(-1);
        """
    )
    check(left == 0, f"the outbox is empty once the server stored it ({left} left)")


def step_code_copy(ctx):
    """A code block has a Copy button that puts exactly the code on the clipboard."""
    p = ctx.page
    p.d.execute_cdp_cmd("Browser.grantPermissions", {
        "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": p.url.rstrip("/"),
    })
    post(ctx.host.port, "```\nprint('hi')\n```")
    button = p.wait(lambda _: next(iter(p.find_all("#messages .body pre .copy-code")), None), "a Copy button")
    button.click()
    p.wait(lambda _: button.text == "Copied", "the button says Copied")
    copied = p.d.execute_async_script("navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('ERR ' + e))")
    check(copied == "print('hi')\n", f"the clipboard holds {copied!r}")
    # A block marked with its language is coloured; its text (and what Copy takes) is unchanged.
    code = 'fn main() { let s = "<b>hi</b>"; } // done 42'
    post(ctx.host.port, f"```rust\n{code}\n```")
    spans = p.wait(lambda _: p.js(
        "const c = [...document.querySelectorAll('#messages pre code.language-rust')].at(-1);"
        "return c && c.dataset.hl && [c.textContent, [...c.querySelectorAll('span')].map((s) => [s.className, s.textContent])]"
    ), "a coloured rust block")
    check(spans[0] == code + "\n", f"the code's text is kept: {spans[0]!r}")
    check(["hl-keyword", "fn"] in spans[1] and ["hl-keyword", "let"] in spans[1]
          and ["hl-string", '"<b>hi</b>"'] in spans[1] and ["hl-comment", "// done 42"] in spans[1],
          f"keywords, string and comment coloured: {spans[1]}")
    check(not p.find_all("#messages pre code b"), "markup in code stays text")


def step_pins(ctx):
    """A message pinned from its button: counted in the header, listed, jumped to; an unpin made
    elsewhere reaches the page at once."""
    p = ctx.page
    reply = p.chat("pin me")
    button = p.find(f"#messages [data-id='{reply['id']}'] .msg-pin")
    check(button.text == "Pin", f"the button offers {button.text!r}")
    p.js("arguments[0].click()", button)  # shown on hover; a tap on a phone
    p.wait(lambda _: p.find("#open-pins").is_displayed() and p.find("#pins-count").text == "1", "one pin counted in the header")
    check(p.js("return document.querySelector(`#messages [data-id='${arguments[0]}']`).classList.contains('pinned')", reply["id"]),
          "the message is marked pinned")
    pins = api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/pins")["pins"]
    check([x["message_id"] for x in pins] == [reply["id"]], f"stored pins {pins}")
    p.chat("something after the pin")
    p.find("#open-pins").click()
    item = p.wait(lambda _: next(iter(p.find_all("#pins-list .pin-item")), None), "the pin listed")
    check("echo: pin me" in item.text, f"the listed pin shows {item.text!r}")
    item.click()
    p.wait(lambda _: p.js("return document.activeElement && document.activeElement.dataset.id") == reply["id"],
           "the pinned message jumped to")
    api(ctx.host.port, "DELETE", f"/api/rooms/{ROOM}/pins/{reply['id']}")
    p.wait(lambda _: not p.find("#open-pins").is_displayed(), "the header's pin button gone after an unpin elsewhere")
    p.wait(lambda _: p.find(f"#messages [data-id='{reply['id']}'] .msg-pin").get_attribute("aria-pressed") == "false",
           "the message's button back to Pin")


BIG_ROOM_MESSAGES = 10_000


def step_long_history(ctx):
    """A 10 000-message room: scroll back to its start, search and jump, delete, export."""
    p = ctx.page
    port = ctx.host.port
    res = api(port, "POST", "/api/rooms", {"name": "Archive", "agents": []})
    room = res["room"]["id"]
    # The history written straight into the database (as if over years): 10 000 rows in one go.
    db = sqlite3.connect(ctx.host.tmp / "data" / "pincer.db", timeout=10)
    now = int(time.time() * 1000) - BIG_ROOM_MESSAGES * 60_000
    rows = [
        (f"big-{i}", room, i, "local user", "webchat:local-owner", "user",
         f"note {i}" + (" the walrus sings" if i == 42 else ""), f"<p>note {i}</p>", "[]", now + i * 60_000, now)
        for i in range(1, BIG_ROOM_MESSAGES + 1)
    ]
    db.executemany(
        "INSERT INTO room_messages (id, room_id, seq, sender, sender_id, sender_type, text, html, files,"
        " created_at, routed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.commit()
    db.close()
    p.wait(lambda _: p.find_all(f'#rooms [data-room-id="{room}"] button'), "the Archive room listed")
    p.find(f'#rooms [data-room-id="{room}"] button').click()
    p.wait(lambda _: p.js("return document.querySelectorAll('#messages > .msg[data-seq]').length") >= 50,
           "the newest messages")
    # Scrolling to the top brings the next older page, until the first message: each time the
    # list grows, the script scrolls to the top again.
    p.d.set_script_timeout(120)
    elapsed_ms = p.d.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const box = document.getElementById('messages');
        const t0 = performance.now();
        const first = () => box.querySelector('.msg[data-seq="1"]');
        const kick = () => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); };
        if (first()) return done(0);
        const seen = new MutationObserver(() => {
          if (first()) { seen.disconnect(); done(performance.now() - t0); } else kick();
        });
        seen.observe(box, { childList: true });
        kick();
        """
    )
    elapsed = elapsed_ms / 1000
    seqs = p.js("return [...document.querySelectorAll('#messages > .msg[data-seq]')].map((m) => Number(m.dataset.seq))")
    check(seqs == list(range(1, BIG_ROOM_MESSAGES + 1)), f"all {BIG_ROOM_MESSAGES} in order once; got {len(seqs)}")
    status = p.find(".older-status").text
    check("beginning" in status, f"the top says {status!r}")
    print(f"      scrolled back through {BIG_ROOM_MESSAGES} messages in {elapsed:.1f} s", flush=True)

    # Search from another room, then jump: the page loads back to the message and marks it.
    # Alt+Down goes to the next room in the list, Alt+Up back.
    ids = p.js("return [...document.querySelectorAll('#rooms li')].map((li) => li.dataset.roomId)")
    at = ids.index(room)
    p.find("#composer").send_keys(Keys.ALT, Keys.ARROW_DOWN)
    p.wait(lambda _: p.js("return document.querySelector('#rooms li.active').dataset.roomId") == ids[(at + 1) % len(ids)],
           "Alt+Down: the next room")
    p.find("#composer").send_keys(Keys.ALT, Keys.ARROW_UP)
    p.wait(lambda _: p.js("return document.querySelector('#rooms li.active').dataset.roomId") == room, "Alt+Up: back")
    p.find(f'#rooms [data-room-id="{ROOM}"] button').click()
    p.wait(lambda _: p.find("#room-title").text == "Assistant", "back in Assistant")
    # Ctrl+K also switches rooms: a room's name, Down to it, Enter.
    p.find("#composer").send_keys(Keys.CONTROL, "k")
    p.wait(lambda _: p.find("#search-dialog").is_displayed(), "Ctrl+K opens search")
    p.find("#search-input").send_keys("archi")
    p.wait(lambda _: [b.text for b in p.find_all("#search-results .search-room")] == ["Room\nArchive"],
           "the Archive room offered")
    p.find("#search-input").send_keys(Keys.ARROW_DOWN)
    p.wait(lambda _: p.js("return document.activeElement.dataset.room") == room, "Down: the room result focused")
    p.d.switch_to.active_element.send_keys(Keys.ENTER)
    p.wait(lambda _: p.find("#room-title").text == "Archive" and not p.find("#search-dialog").is_displayed(),
           "the room switched to")
    p.find(f'#rooms [data-room-id="{ROOM}"] button').click()
    p.wait(lambda _: p.find("#room-title").text == "Assistant", "back in Assistant again")
    p.find("#composer").send_keys(Keys.CONTROL, "k")
    p.wait(lambda _: p.find("#search-dialog").is_displayed(), "Ctrl+K opens search")
    p.find("#search-input").clear()
    p.find("#search-input").send_keys("walrus sings")
    hit = p.wait(lambda _: next(iter(p.find_all("#search-results .search-hit")), None), "a search result")
    check("walrus" in hit.text and "Archive" in hit.text, f"the result says {hit.text!r}")
    hit.click()
    p.wait(lambda _: p.find("#room-title").text == "Archive", "the Archive room opened")
    target = p.wait(lambda _: next(iter(p.find_all('#messages .msg[data-id="big-42"].flash')), None),
                    "message 42 marked")
    in_view = p.js(
        "const r = arguments[0].getBoundingClientRect(), b = document.getElementById('messages').getBoundingClientRect();"
        "return r.top >= b.top && r.bottom <= b.bottom", target)
    check(in_view, "the message jumped to is in view")

    # Export links, and deleting one's own message.
    p.find("#room-settings").click()
    p.wait(lambda _: p.find("#room-dialog").is_displayed(), "room settings")
    href = p.find("#room-export-md").get_attribute("href")
    check(href.endswith(f"/api/rooms/{room}/export?format=md"), f"export link {href}")
    # Pinned: first in the list (for this person).
    p.find("#room-pinned").click()
    first = "return document.querySelector('#rooms li').dataset.roomId"
    p.wait(lambda _: p.js(first) == room, "the pinned room first in the list")
    p.find("#room-close").click()
    delete = target.find_element(By.CSS_SELECTOR, ".msg-delete")
    p.js("arguments[0].click()", delete)
    p.wait(shown_alert, "the confirmation").accept()
    shown = "return (document.querySelector('#messages .msg[data-id=\"big-42\"]') || {}).textContent || ''"
    p.wait(lambda _: "Message deleted" in p.js(shown), "shown as deleted")
    stored = api(port, "GET", f"/api/rooms/{room}/messages?before=43&limit=1")["messages"][0]
    check(stored["text"] == "" and stored.get("deleted_at"), f"stored as deleted: {stored}")
    p.find(f'#rooms [data-room-id="{ROOM}"] button').click()
    p.wait(lambda _: p.find("#room-title").text == "Assistant", "back in Assistant")


def step_installable(ctx):
    """The app is an installable PWA: a manifest with icons and a service worker that controls it."""
    p = ctx.page
    check_installable(p)


def check_installable(p):
    p.d.set_script_timeout(UI_S)
    state = p.d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.serviceWorker.ready.then((r) => done(r.active && r.active.state), () => done(null));"
    )
    check(state in ("activated", "activating"), f"the service worker is active: {state!r}")
    manifest = p.js("return fetch('/manifest.webmanifest').then((r) => r.ok && r.headers.get('content-type'))")
    check(manifest == "application/manifest+json", f"the manifest is served: {manifest!r}")
    errors = p.d.execute_cdp_cmd("Page.getInstallabilityErrors", {}).get("installabilityErrors", [])
    check(errors == [], f"Chromium's installability check: {errors}")
    version = p.js("return fetch('/sw.js').then((r) => r.text()).then((t) => t.match(/const VERSION = '([0-9a-f]+)'/)[1])")
    check(version and len(version) == 12, f"the service worker carries the app version: {version!r}")


# A 1x1 PNG.
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f"
    "00050001ff89993d1d0000000049454e44ae426082"
)


def pick_files(p, paths):
    """Chooses files in the picker, as a phone's camera or file chooser fills it in."""
    p.js("const i = document.getElementById('file-input'); i.hidden = false; i.style.display = 'block';")
    p.find("#file-input").send_keys("\n".join(str(x) for x in paths))
    p.js("const i = document.getElementById('file-input'); i.hidden = true; i.style.display = '';")


def step_upload(ctx):
    p = ctx.page
    photo = ctx.tmp / "photo.png"
    photo.write_bytes(PNG_1PX)
    notes = ctx.tmp / "notes.txt"
    notes.write_text("uploaded from the browser\n")
    before = len(api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/messages?limit=1000")["messages"])
    # The picker (what a phone's camera or file chooser fills in).
    pick_files(p, [photo, notes])
    chips = p.wait(lambda _: p.find_all("#staged .staged-file") if len(p.find_all("#staged .staged-file")) == 2 else None,
                   "two files staged")
    check(len(chips[0].find_elements(By.CSS_SELECTOR, "img")) == 1, "the photo is previewed")
    check("notes.txt" in chips[1].text, f"the second chip says {chips[1].text!r}")
    p.find("#composer").send_keys("two files")
    p.find("#send").click()

    def stored_uploads(_):
        msgs = api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/messages?limit=1000")["messages"][before:]
        ups = [m for m in msgs if m["sender_type"] == "user" and m["files"]]
        return ups if len(ups) == 2 else None

    ups = p.wait(stored_uploads, "both uploads stored", REPLY_S)
    check([u["files"][0]["name"] for u in ups] == ["photo.png", "notes.txt"], f"stored {ups}")
    check(ups[0]["text"] == "two files" and ups[1]["text"] == "", "the text went with the first file")
    check(p.find("#staged").get_attribute("hidden") is not None, "nothing left staged")
    img = p.wait(lambda _: next(iter(p.find_all(f'[data-id="{ups[0]["id"]}"] .file-image img')), None), "the photo shown")
    p.wait(lambda _: p.js("return arguments[0].complete && arguments[0].naturalWidth", img) == 1, "the photo loaded")
    link = p.find(f'[data-id="{ups[1]["id"]}"] .file-download')
    check("notes.txt" in link.text, f"the text file is a download: {link.text!r}")
    # A small text file can be read in the message.
    p.find(f'[data-id="{ups[1]["id"]}"] .file-preview summary').click()
    preview = f"return document.querySelector('[data-id=\"{ups[1]['id']}\"] .file-preview-text').textContent"
    p.wait(lambda _: p.js(preview) == "uploaded from the browser\n", "the text preview")
    p.wait(lambda _: not any(m["pending"] or m["failed"] for m in p.messages()), "no upload left pending")
    # An image opens in the lightbox.
    img.click()
    p.wait(lambda _: p.js("return document.getElementById('lightbox').open"), "the lightbox opens")
    p.find("#lightbox-close").click()
    p.wait(lambda _: not p.js("return document.getElementById('lightbox').open"), "the lightbox closes")
    # Dropped on the conversation.
    p.js(
        """
        const dt = new DataTransfer();
        dt.items.add(new File(['dropped text'], 'dropped.txt', { type: 'text/plain' }));
        const main = document.querySelector('.main');
        main.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
        main.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        """
    )
    p.wait(lambda _: len(p.find_all("#staged .staged-file")) == 1, "the dropped file staged")
    p.find("#send").click()

    def stored_file(name):
        def probe(_):
            msgs = api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/messages?limit=1000")["messages"][before:]
            return next((m for m in msgs if m["files"] and m["files"][0]["name"] == name), None)
        return probe

    m = p.wait(stored_file("dropped.txt"), "the dropped file stored", REPLY_S)
    check(m["files"][0]["size"] == len("dropped text"), f"stored {m['files'][0]}")
    # A large file goes in chunks that survive a dropped link (the resumable protocol).
    big = ctx.tmp / "big.bin"
    big.write_bytes(os.urandom(10 * 1024 * 1024 + 123))
    pick_files(p, [big])
    p.wait(lambda _: len(p.find_all("#staged .staged-file")) == 1, "the big file staged")
    p.find("#send").click()
    m = p.wait(stored_file("big.bin"), "the big file stored", REPLY_S)
    check(m["files"][0]["size"] == big.stat().st_size, f"stored {m['files'][0]}")
    chunks = p.js("return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/uploads/')).length")
    check(chunks >= 3, f"sent in chunks ({chunks} chunk requests)")


MOCK_STEPS = [
    ("page loads: room, mock banner, connected", step_loads),
    ("send with Enter, echo reply from the container", step_echo),
    ("markdown renders", step_markdown),
    ("hostile input is inert", step_xss),
    ("reload shows the history once, in order", step_reload),
    ("message posted over HTTP appears live", step_live_post),
    ("catch-up with after_seq across a host restart", step_catch_up),
    ("refused send: failed bubble, retry with the same client_id", step_failed_send),
    ("new agent from the form", step_new_agent),
    ("phone width: room drawer", step_phone),
    ("phone width: a room of two agents, @mention, prime", step_team_room),
    ("thinking, streaming with tools and Stop, typing", step_live_activity),
    ("files: picker, caption, drop, progress, lightbox", step_upload),
    ("code blocks: a Copy button", step_code_copy),
    ("pinned messages: pin, count, list, jump, unpin seen live", step_pins),
    ("a 10 000-message room: scroll back, search and jump, delete, export", step_long_history),
    ("installable: manifest, icons, an active service worker", step_installable),
    ("offline: the outbox keeps a send across a reload and sends it once", step_offline_outbox),
    ("no CSP violations or script errors", step_console_clean),
]


# ------------------------------------------------------------------ phase 2: a scripted model

API_KEY = "sk-test-browser-key-123456"
MODEL_NAME = "fake-model"
# Tools the steps below make the agent call: the model must be offered them.
AGENT_TOOLS = {"write_file", "send_file", "ask_user_question", "add_reaction", "edit_message"}
FILE_TEXT = "hi from the agent"


def model_env(fake):
    return {
        "PINCER_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_MODEL": MODEL_NAME,
        "OPENAI_API_KEY": API_KEY,
    }


def live_bubbles(p):
    """The live (streaming) bubbles: their text, tool chips and status line."""
    return p.js(
        """
        return [...document.querySelectorAll('#messages > [data-stream-id]')].map((m) => ({
          text: m.querySelector('.body').textContent,
          tools: [...m.querySelectorAll('.tool')].map((t) => ({
            name: t.querySelector('.tool-name').textContent,
            done: t.classList.contains('tool-done'),
          })),
          status: (m.querySelector('.stream-status') || {}).textContent || '',
        }));
        """
    )


def msg_el(p, seq):
    """The stored message element with this room seq."""
    return p.find(f'#messages > .msg[data-seq="{seq}"]')


def wait_requests(ctx, n, what, timeout=REPLY_S):
    """Waits until the fake model has received `n` requests in total; returns them all."""
    return ctx.page.wait(lambda _: len(ctx.fake.requests) >= n and ctx.fake.snapshot(), what, timeout)


def wait_outcome(ctx, index, outcome, timeout=REPLY_S):
    """Waits until the fake model's request `index` reached `outcome` (holding, completed, ...)."""

    def reached(_):
        reqs = ctx.fake.snapshot()
        return len(reqs) > index and reqs[index]["outcome"] == outcome

    ctx.page.wait(reached, f"model request #{index + 1} to be {outcome}", timeout)


def last_user_text(body):
    """The text of the last `user` message of a Chat Completions request."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def tool_result(body, call_id):
    """The content of the `tool` message answering `call_id`, checked to follow the assistant
    message that made the call."""
    msgs = body.get("messages", [])
    for i, m in enumerate(msgs):
        if m.get("role") == "tool" and m.get("tool_call_id") == call_id:
            calls = [c.get("id") for c in (msgs[i - 1].get("tool_calls") or [])] if i else []
            for j in range(i - 1, -1, -1):  # results of parallel calls sit together
                if msgs[j].get("role") != "tool":
                    calls = [c.get("id") for c in (msgs[j].get("tool_calls") or [])]
                    break
            check(call_id in calls, f"the result of {call_id} does not follow the call: {msgs[max(0, i - 2) : i + 1]}")
            return m.get("content") or ""
    raise Failure(f"no tool result for {call_id} in the model request; its messages: {json.dumps(msgs)[-1500:]}")


def ok_result(body, call_id):
    content = tool_result(body, call_id)
    check(not content.startswith("Error"), f"the tool call {call_id} failed: {content!r}")
    return content


def step_model_loads(ctx):
    p = ctx.page
    p.d.get(p.url)
    p.wait_connected()
    p.wait(lambda _: p.find_all(f'#rooms [data-room-id="{ROOM}"]'), "the Assistant room listed")
    check(not p.find("#mock-banner").is_displayed(), "no mock-provider banner when a model is configured")
    p.wait(lambda _: p.find("#empty").is_displayed(), "the empty state")
    p.ws_frames()


def step_model_streams(ctx):
    """A reply whose second chunk is held: partial text live, then the final message once."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    # Nothing at all follows the partial text while it is held (no keep-alives): the proxy and
    # the agent must pass each chunk on as it comes, not when more bytes push it through.
    hold = Hold(keepalive=False)
    fake.push(text_reply("Hello", hold, " **world**", "!"))
    p.send("hi model")
    p.wait_message("user", "hi model")
    p.wait(
        lambda _: [b["text"] for b in live_bubbles(p)] == ["Hello"],
        "a live bubble with the partial text 'Hello'",
        FIRST_REPLY_S,
    )
    check(fake.snapshot()[n0]["outcome"] == "holding", "the partial text showed while the model held the stream")
    check(not [m for m in p.stored() if m["type"] == "agent"], "no stored reply while the stream is held")
    check(p.find("#stop").is_displayed(), "Stop is offered while the reply streams")
    hold.release()
    reply = p.wait_message("agent", "Hello world!")
    p.wait(lambda _: not live_bubbles(p), "the live bubble to give way to the final message")
    agents = [m for m in p.stored() if m["type"] == "agent"]
    check(len(agents) == 1, f"the reply is shown exactly once; agent messages: {agents}")
    strong = p.js(
        "return [...document.querySelectorAll(`#messages [data-id='${arguments[0]}'] .body strong`)]"
        ".map((e) => e.textContent)",
        reply["id"],
    )
    check(strong == ["world"], f"the final message is rendered markdown; <strong>s: {strong}")
    wait_outcome(ctx, n0, "completed")

    req = fake.snapshot()[n0]
    auth = req["headers"].get("authorization")
    check(auth == f"Bearer {API_KEY}", f"the proxy forwarded Authorization {auth!r}")
    body = req["body"]
    check(body.get("model") == MODEL_NAME and body.get("stream") is True, f"request model/stream: {body.get('model')!r}, {body.get('stream')!r}")
    offered = {t.get("function", {}).get("name") for t in body.get("tools", [])}
    check(AGENT_TOOLS <= offered, f"tools offered to the model lack {sorted(AGENT_TOOLS - offered)}")
    check("hi model" in last_user_text(body), f"the user's message is in the prompt: {last_user_text(body)!r}")


def step_model_tools(ctx):
    """write_file, then send_file, then text: chips while it runs, the file, the tool results."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    hold = Hold()  # the final answer waits, so the chips of the finished tools can be seen
    fake.push(
        tool_reply(("call_write", "write_file", {"path": "notes/hello.txt", "content": FILE_TEXT})),
        tool_reply(("call_send", "send_file", {"path": "notes/hello.txt"})),
        text_reply(hold, "Saved and sent **notes/hello.txt**."),
    )
    p.send("save a note for me")
    wait_outcome(ctx, n0 + 2, "holding")
    p.wait(
        lambda _: [b["tools"] for b in live_bubbles(p)]
        == [[{"name": "write_file", "done": True}, {"name": "send_file", "done": True}]],
        "tool chips for write_file and send_file, both finished",
    )
    # A chip unfolds to the call's arguments and what the tool returned, and stays open.
    p.find("#messages .msg.streaming .tool-live summary").click()
    detail = p.wait(lambda _: p.js(
        "const d = document.querySelector('#messages .msg.streaming .tool-live[open]');"
        "return d && [...d.querySelectorAll('.tool-io')].map((e) => e.textContent)"
    ), "the write_file chip unfolded")
    check(len(detail) == 2 and '"path": "notes/hello.txt"' in detail[0] and FILE_TEXT in detail[0],
          f"its arguments, then its output: {detail}")
    check(detail[1].strip() != "", f"the tool's output shown: {detail}")
    files = p.wait(
        lambda _: p.js(
            """
            return [...document.querySelectorAll('#messages > .msg[data-id] .files a.file')].map((a) => ({
              id: a.closest('.msg').dataset.id,
              seq: Number(a.closest('.msg').dataset.seq),
              type: a.closest('.msg').dataset.senderType,
              name: (a.querySelector('.file-name') || {}).textContent,
              size: (a.querySelector('.file-size') || {}).textContent,
              href: a.getAttribute('href'),
              download: a.getAttribute('download'),
            }));
            """
        ),
        "a file chip",
    )
    check(len(files) == 1, f"one file shown: {files}")
    f = files[0]
    check(f["type"] == "agent" and f["name"] == "hello.txt", f"the file chip: {f}")
    check(f["size"] == f"{len(FILE_TEXT)} B", f"the file chip shows the size {f['size']!r}")
    check(f["download"] == "hello.txt", f"the chip downloads as hello.txt (download={f['download']!r})")
    check(re.fullmatch(rf"/api/files/{ROOM}/[^/]+", f["href"] or ""), f"the file URL {f['href']!r}")
    got = p.d.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(async (r) => done({status: r.status, text: await r.text()}),
                                 (e) => done({status: 0, text: String(e)}));
        """,
        f["href"],
    )
    check(got == {"status": 200, "text": FILE_TEXT}, f"downloading the file gave {got}")
    ctx.file_msg = f  # the send_file message, edited later

    hold.release()
    final = p.wait_message("agent", "Saved and sent notes/hello.txt.")
    p.wait(lambda _: not live_bubbles(p), "the live bubble (and its chips) to go")
    # The tools it used stay with the reply, folded under it.
    used = p.js(
        "const m = document.querySelector(`#messages [data-id='${arguments[0]}'] .tools-used`);"
        "return m && [m.querySelector('summary').textContent, [...m.querySelectorAll('.tool-name')].map((e) => e.textContent)]",
        final["id"],
    )
    check(used == ["Used 2 tools", ["write_file", "send_file"]], f"the reply's tools: {used}")
    kept = p.js(
        "return [...document.querySelectorAll(`#messages [data-id='${arguments[0]}'] .tools-used .tool-call`)]"
        ".map((d) => [...d.querySelectorAll('.tool-io')].map((e) => e.textContent))",
        final["id"],
    )
    check(len(kept) == 2 and '"path": "notes/hello.txt"' in kept[1][0] and len(kept[1]) == 2,
          f"each kept tool unfolds to its arguments and output: {kept}")
    reqs = fake.snapshot()
    check(len(reqs) == n0 + 3, f"three model calls for the turn, saw {len(reqs) - n0}")
    ok_result(reqs[n0 + 1]["body"], "call_write")
    ok_result(reqs[n0 + 2]["body"], "call_write")
    sent = ok_result(reqs[n0 + 2]["body"], "call_send")
    m = re.search(r"message id (\d+)", sent)
    check(m, f"send_file's result names the message id: {sent!r}")
    ctx.file_msg["agent_id"] = int(m.group(1))


def card_state(p):
    """The question cards shown: title, question, buttons (label, pressed, disabled)."""
    return p.js(
        """
        return [...document.querySelectorAll('#messages > .msg[data-card]')].map((m) => ({
          seq: Number(m.dataset.seq),
          title: m.querySelector('.card-title').textContent,
          question: m.querySelector('.card-question').textContent,
          buttons: [...m.querySelectorAll('button.card-option')].map((b) => ({
            label: b.textContent,
            chosen: b.classList.contains('chosen') && b.getAttribute('aria-pressed') === 'true',
            disabled: b.disabled,
          })),
        }));
        """
    )


def step_model_question(ctx):
    """ask_user_question: a card with buttons; a click answers with an ordinary message."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    fake.push(
        tool_reply(("call_ask", "ask_user_question", {"question": "Tea or coffee?", "options": ["Tea", "Coffee"]})),
        text_reply("Tell me when you have decided."),
    )
    p.send("what should I drink?")
    p.wait_message("agent", "Tell me when you have decided.")
    p.wait(lambda _: not live_bubbles(p), "the live bubble to go")
    cards = card_state(p)
    open_buttons = [{"label": "Tea", "chosen": False, "disabled": False}, {"label": "Coffee", "chosen": False, "disabled": False}]
    check(len(cards) == 1, f"one question card: {cards}")
    check(
        cards[0]["question"] == "Tea or coffee?" and cards[0]["buttons"] == open_buttons,
        f"the card shows the question and two open buttons: {cards[0]}",
    )
    ok_result(fake.snapshot()[n0 + 1]["body"], "call_ask")

    fake.push(text_reply("Coffee it is."))
    before = {f["client_id"] for d, f in p.frames + p.ws_frames() if d == "sent" and f.get("type") == "send"}
    msg_el(p, cards[0]["seq"]).find_element(By.XPATH, ".//button[normalize-space()='Coffee']").click()
    answered = [{"label": "Tea", "chosen": False, "disabled": True}, {"label": "Coffee", "chosen": True, "disabled": True}]
    p.wait(lambda _: card_state(p)[0]["buttons"] == answered, "the card to show Coffee chosen, buttons disabled")
    sends = []
    p.wait(
        lambda _: sends.extend(f for d, f in p.ws_frames() if d == "sent" and f.get("type") == "send") or sends,
        "the answer's send frame",
    )
    check(
        len(sends) == 1 and sends[0]["text"] == "Coffee" and sends[0]["room_id"] == ROOM,
        f"the click sent one message 'Coffee': {sends}",
    )
    check(sends[0]["client_id"] not in before, "the answer has a new client_id")
    p.wait_message("user", "Coffee")
    p.wait_message("agent", "Coffee it is.")
    reqs = fake.snapshot()
    check(len(reqs) == n0 + 3, f"one more model call for the answer, saw {len(reqs) - n0 - 2}")
    check("Coffee" in last_user_text(reqs[n0 + 2]["body"]), f"the model got the answer: {last_user_text(reqs[n0 + 2]['body'])!r}")

    # After a reload the card knows its answer from the history.
    p.d.refresh()
    p.wait_connected()
    p.wait_message("agent", "Coffee it is.")
    p.wait(lambda _: [c["buttons"] for c in card_state(p)] == [answered], "the card still answered after a reload")


def step_model_approval(ctx):
    """add_mcp_server: an approval card with Approve/Deny; a click decides it for everyone."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    fake.push(
        tool_reply(("call_mcp", "add_mcp_server", {"name": "weather", "command": "/bin/true"})),
        text_reply("I asked for the weather server."),
    )
    p.send("get yourself a weather tool")
    p.wait_message("agent", "I asked for the weather server.")
    approvals = lambda: [c for c in card_state(p) if c["title"] == "New MCP server"]  # noqa: E731
    cards = p.wait(lambda _: approvals(), "an approval card")
    check(
        "/bin/true" in cards[0]["question"]
        and [b["label"] for b in cards[0]["buttons"]] == ["Approve", "Deny"]
        and not any(b["disabled"] for b in cards[0]["buttons"]),
        f"the card says what is asked and offers Approve and Deny: {cards[0]}",
    )
    fake.push(text_reply("Understood, no weather server."))
    msg_el(p, cards[0]["seq"]).find_element(By.XPATH, ".//button[normalize-space()='Deny']").click()
    decided = p.wait(
        lambda _: p.js(
            "const e = document.querySelector('#messages .card-approval .card-answered'); return e && e.textContent"
        ),
        "the card to show the decision",
    )
    check(decided.startswith("Denied by"), f"the card shows who denied it: {decided!r}")
    check(approvals()[0]["buttons"] == [], "no buttons once decided")
    p.wait_message("agent", "Understood, no weather server.")
    check("denied the request" in last_user_text(fake.snapshot()[n0 + 2]["body"]), "the agent was told")


def step_model_stop(ctx):
    """Stop mid-stream: the partial reply stays, marked stopped; the model call is aborted."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    fake.push(text_reply("Once upon a time", Hold(), " there was a model that never stopped."))
    p.send("tell me a long story")
    p.wait(lambda _: [b["text"] for b in live_bubbles(p)] == ["Once upon a time"], "the story to start streaming")
    stop = p.find("#stop")
    check(stop.is_displayed(), "Stop is offered while the reply streams")
    stop.click()

    def stopped(_):
        return next((m for m in p.stored() if m["type"] == "agent" and m["text"].startswith("Once upon a time")), None)

    reply = p.wait(stopped, "the stopped reply")
    check(reply["text"].endswith("(stopped)"), f"the stopped reply reads {reply['text']!r}")
    em = p.js(
        "return [...document.querySelectorAll(`#messages [data-id='${arguments[0]}'] .body em`)].map((e) => e.textContent)",
        reply["id"],
    )
    check(em == ["(stopped)"], f"'(stopped)' is rendered from _(stopped)_: <em>s {em}")
    p.wait(lambda _: not live_bubbles(p), "the live bubble to go after the stop")
    p.wait(lambda _: not stop.is_displayed(), "Stop to go away")
    story = [m for m in p.stored() if "Once upon a time" in m["text"]]
    check(len(story) == 1, f"the stopped reply is shown once: {story}")
    wait_outcome(ctx, n0, "disconnected")
    check(len(fake.requests) == n0 + 1, "no further model call after the stop")


def step_model_busy(ctx):
    """A 429 with Retry-After: the agent waits and retries; the page says so, not as a tool."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    hold = Hold()
    fake.push(
        error_reply(429, "Rate limit reached for fake-model", "rate_limit_error", headers={"Retry-After": "1"}),
        text_reply(hold, "Back again."),
    )
    p.send("are you busy?")
    wait_outcome(ctx, n0 + 1, "holding")
    p.wait(
        lambda _: [(b["status"], b["tools"]) for b in live_bubbles(p)] == [("Model busy, retrying…", [])],
        "a 'model busy, retrying' status line (and no tool chip)",
    )
    hold.release()
    p.wait_message("agent", "Back again.")
    p.wait(lambda _: not live_bubbles(p), "the live bubble to go")


def step_model_error(ctx):
    """A 401 from the model: an error-styled notice naming the setting to check."""
    p, fake = ctx.page, ctx.fake
    fake.push(error_reply(401, "Incorrect API key provided"))
    p.send("are you there?")

    def notice(_):
        return next((m for m in p.stored() if m["type"] == "system" and "model error" in m["text"]), None)

    n = p.wait(notice, "a model-error notice")
    check("check OPENAI_API_KEY" in n["text"], f"the notice says what to check: {n['text']!r}")
    check("Incorrect API key provided" in n["text"], f"the notice gives the model's reason: {n['text']!r}")
    style = p.js(
        """
        const m = document.querySelector(`#messages [data-id='${arguments[0]}']`);
        const b = getComputedStyle(m.querySelector('.bubble'));
        const probe = document.createElement('span');
        probe.style.color = 'var(--danger)';
        m.append(probe);
        const danger = getComputedStyle(probe).color;
        probe.remove();
        return {error: m.classList.contains('msg-error'), icon: !!m.querySelector('svg.notice-icon'),
                color: b.color, danger, border: b.borderTopStyle};
        """,
        n["id"],
    )
    check(style["error"] and style["icon"], f"the notice is marked as an error, with an icon: {style}")
    check(style["color"] == style["danger"] and style["border"] == "solid", f"the notice is in the error colour: {style}")
    p.wait(lambda _: not live_bubbles(p), "no live bubble left behind")
    p.wait(lambda _: not p.find("#stop").is_displayed(), "Stop to go away")


def step_model_edit_react(ctx):
    """add_reaction on the user's message and edit_message on the agent's file message."""
    p, fake = ctx.page, ctx.fake
    n0 = len(fake.requests)
    text = "please react to this"
    p.send(text)
    user = p.wait_message("user", text)
    # The agent refers to messages by the ids in its prompt (its own numbering, not the room's
    # seq): take the one the model was given for this message.
    reqs = wait_requests(ctx, n0 + 1, "the model request for the message")
    prompt = last_user_text(reqs[n0]["body"])
    m = re.search(r'<message id="(\d+)"[^>]*>' + re.escape(text) + "</message>", prompt)
    check(m, f"the prompt gives the message an id: {prompt!r}")
    user_agent_id = int(m.group(1))

    # Read from higher up, with the edited message above the view: the update must not move
    # what is on screen.
    p.d.set_window_size(1280, 520)
    anchor = p.js(
        """
        const box = document.getElementById('messages');
        const edited = document.querySelector(`#messages [data-id='${arguments[0]}']`);
        box.scrollTop += edited.getBoundingClientRect().bottom - box.getBoundingClientRect().top + 8;
        const top = box.getBoundingClientRect().top;
        const a = [...box.children].find((n) => n.getBoundingClientRect().top >= top);
        return {id: a.dataset.id, top: a.getBoundingClientRect().top, scrolled: box.scrollTop > 0};
        """,
        ctx.file_msg["id"],
    )
    check(anchor["scrolled"], "the message list scrolled up to read")
    new_text = "Here is **hello.txt**, as promised."
    fake.push(
        tool_reply(("call_react", "add_reaction", {"message_id": user_agent_id, "emoji": "👍"})),
        tool_reply(("call_edit", "edit_message", {"message_id": ctx.file_msg["agent_id"], "text": new_text})),
        text_reply("Reacted and edited."),
    )

    def edited(_):
        return p.js(
            """
            const m = document.querySelector(`#messages [data-id='${arguments[0]}']`);
            const e = m && m.querySelector('.edited');
            return e && {text: m.querySelector('.body').innerText.trim(), title: e.title, label: e.textContent,
                         files: m.querySelectorAll('.files a.file').length};
            """,
            ctx.file_msg["id"],
        )

    e = p.wait(edited, "the edited message with an 'edited' label")
    check(e["text"] == "Here is hello.txt, as promised." and e["files"] == 1, f"the edited message: {e}")
    check(e["label"] == "edited" and str(time.localtime().tm_year) in e["title"], f"the 'edited' label: {e}")
    moved = p.js(
        "return document.querySelector(`#messages [data-id='${arguments[0]}']`).getBoundingClientRect().top",
        anchor["id"],
    )
    check(abs(moved - anchor["top"]) < 1.5, f"the message in view moved from {anchor['top']} to {moved} px")

    def reactions(_):
        return p.js(
            """
            return [...document.querySelectorAll(`#messages [data-id='${arguments[0]}'] .reactions .reaction`)]
              .map((r) => ({text: r.textContent, title: r.title}));
            """,
            user["id"],
        )

    chips = p.wait(reactions, "a reaction chip on the user's message")
    check(chips == [{"text": "👍", "title": "👍 Assistant"}], f"the reaction chips: {chips}")
    check(msg_el(p, user["seq"]).get_attribute("data-id") == user["id"], "the reaction is on the user's message")
    p.d.set_window_size(1280, 900)
    p.wait_message("agent", "Reacted and edited.")
    reqs = fake.snapshot()
    ok_result(reqs[n0 + 1]["body"], "call_react")
    ok_result(reqs[n0 + 2]["body"], "call_edit")

    # Both are stored: a reload shows them.
    p.d.refresh()
    p.wait_connected()
    p.wait(edited, "the 'edited' label after a reload")
    p.wait(lambda _: reactions(_) == chips, "the reaction after a reload")


def step_model_no_key(ctx):
    """The proxy added the key to every model call; the container and the page never saw it."""
    p, fake = ctx.page, ctx.fake
    reqs = fake.snapshot()
    check(reqs, "the fake model saw requests")
    # The one call made through the endpoint added on the Models page carries that endpoint's key.
    own = ctx.second_box_call
    bad = [i for i, r in enumerate(reqs)
           if r["headers"].get("authorization") != f"Bearer {SECOND_KEY if i == own else API_KEY}"]
    check(not bad, f"model requests without the key's Authorization header: {bad}")
    check(not [r for r in reqs if API_KEY in json.dumps(r["body"])], "the key appears in a request body")
    p.ws_frames()
    seen = p.js(
        """
        return document.documentElement.outerHTML + JSON.stringify({...localStorage}) +
          JSON.stringify({...sessionStorage}) + document.cookie;
        """
    )
    history = api(ctx.host.port, "GET", f"/api/rooms/{ROOM}/messages?after=0&limit=1000")
    places = {
        "the page": seen,
        "the WebSocket frames": json.dumps(p.frames, ensure_ascii=False),
        "the stored history": json.dumps(history, ensure_ascii=False),
    }
    leaks = [where for where, text in places.items() if API_KEY in text or SECOND_KEY in text]
    check(not leaks, f"the API key appears in {', '.join(leaks)}")
    check(len(p.frames) > 20, f"the WebSocket frames were captured ({len(p.frames)})")


def step_model_tasks(ctx):
    """A task the agent scheduled, paused, resumed and cancelled from the agent's settings."""
    p, fake = ctx.page, ctx.fake
    fake.push(
        tool_reply(("call_task", "schedule_task",
                    {"prompt": "water the ferns", "process_after": "in 3 hours", "recurrence": "0 9 * * *"})),
        text_reply("I will remind you."),
    )
    p.send("remind me to water the ferns every morning")
    p.wait_message("agent", "I will remind you.", REPLY_S)
    p.find("#room-settings").click()
    p.wait(lambda _: p.find("#room-dialog").is_displayed(), "the room settings")
    row = p.wait(lambda _: next(iter(p.find_all("#room-agents li")), None), "the agent listed")
    row.find_element(By.XPATH, ".//button[text()='Edit']").click()
    task = p.wait(lambda _: next(iter(p.find_all("#agent-tasks .task")), None), "the scheduled task listed")
    # The model picker offers the endpoint's models (asked by the host).
    p.wait(lambda _: p.find("#agent-edit-model-box").is_displayed(), "the model picker for the owner")
    offered = p.js("return [...document.querySelectorAll('#agent-edit-models option')].map((o) => o.value)")
    check(offered == ["fake-model", "fake-model-large"], f"models offered {offered}")
    check("water the ferns" in task.text and "repeats 0 9 * * *" in task.text, f"the task shows {task.text!r}")

    def act(action, then):
        p.find(f'#agent-tasks .task button[data-action="{action}"]').click()
        return p.wait(lambda _: then(p.js("return document.getElementById('agent-tasks').textContent")), f"{action} shown")

    act("pause", lambda t: "paused" in t and "Resume" in t)
    act("resume", lambda t: "next " in t and "Pause" in t)
    act("cancel", lambda t: "None." in t)
    # Its own model, chosen here, is what the next call asks for.
    Select(p.find("#agent-edit-provider")).select_by_value("openai")
    p.find("#agent-edit-model").send_keys("fake-model-large")
    p.find("#agent-edit-save").click()
    p.wait(lambda _: not p.find("#agent-edit-dialog").is_displayed(), "the editor closes")
    agent_id = api(ctx.host.port, "GET", "/api/agents")[0]["id"]
    got = api(ctx.host.port, "GET", f"/api/agents/{agent_id}")
    check((got["provider"], got["model"]) == ("openai", "fake-model-large"), f"stored {got}")
    p.find("#room-close").click()
    n0 = len(fake.requests)
    fake.push(text_reply("From the large model."))
    p.send("which model are you?")
    p.wait_message("agent", "From the large model.", FIRST_REPLY_S)
    check(fake.requests[n0]["body"]["model"] == "fake-model-large", "the next call used the agent's model")
    p.find("#room-settings").click()
    p.wait(lambda _: p.find("#room-dialog").is_displayed(), "the room settings again")
    agent = api(ctx.host.port, "GET", "/api/agents")[0]["id"]
    tasks = api(ctx.host.port, "GET", f"/api/agents/{agent}/tasks")
    check([t["status"] for t in tasks] == ["cancelled"], f"stored {tasks}")
    p.find("#room-close").click()
    api(ctx.host.port, "PATCH", f"/api/agents/{agent}", {"provider": None, "model": None})  # as it was


SECOND_KEY = "sk-second-box-key-987654321"


def step_models_page(ctx):
    """The owner adds a model server on the Models page (checked first, its models offered, its key
    kept on the host), gives the agent that endpoint, and the next call goes there with its key and
    default model; then removes it."""
    p, fake = ctx.page, ctx.fake
    p.js("document.getElementById('open-models').click()")
    p.wait(lambda _: p.find("#models-dialog").is_displayed(), "the Models page")
    p.wait(lambda _: len(p.find_all("#models-list li.endpoint")) == 2, "the .env endpoint and the mock listed")
    p.find("#endpoint-url").send_keys(fake.base_url)
    p.find("#endpoint-key").send_keys(SECOND_KEY)
    p.find("#endpoint-probe").click()
    p.wait(lambda _: p.find("#endpoint-found").is_displayed(), "the endpoint checked")
    check("OpenAI-compatible" in p.find("#endpoint-kind").text, f"the server found: {p.find('#endpoint-kind').text!r}")
    offered = p.js("return [...document.querySelectorAll('#endpoint-model option')].map((o) => o.value)")
    check(offered == ["fake-model", "fake-model-large"], f"its models offered {offered}")
    name = p.find("#endpoint-name")
    name.clear()
    name.send_keys("Second box")
    Select(p.find("#endpoint-model")).select_by_value("fake-model-large")
    p.find("#endpoint-add").click()
    row = p.wait(lambda _: next((li for li in p.find_all("#models-list li.endpoint") if "Second box" in li.text), None),
                 "the endpoint listed")
    check("key kept" in row.text and "default fake-model-large" in row.text, f"the row shows {row.text!r}")
    listed = api(ctx.host.port, "GET", "/api/models")
    check(SECOND_KEY not in json.dumps(listed), "the key is never shown again")
    ep = next(e for e in listed["providers"] if e.get("name") == "Second box")
    p.find("#models-close").click()

    p.find("#room-settings").click()
    p.wait(lambda _: p.find("#room-dialog").is_displayed(), "the room settings")
    row = p.wait(lambda _: next(iter(p.find_all("#room-agents li")), None), "the agent listed")
    row.find_element(By.XPATH, ".//button[text()='Edit']").click()
    p.wait(lambda _: p.find("#agent-edit-model-box").is_displayed()
           and ep["id"] in p.js("return [...document.querySelectorAll('#agent-edit-provider option')].map((o) => o.value)"),
           "the new endpoint offered in the agent's model picker")
    Select(p.find("#agent-edit-provider")).select_by_value(ep["id"])
    p.find("#agent-edit-model").clear()
    p.find("#agent-edit-save").click()
    p.wait(lambda _: not p.find("#agent-edit-dialog").is_displayed(), "the editor closes")
    p.find("#room-close").click()
    n0 = len(fake.requests)
    fake.push(text_reply("From the second box."))
    p.send("where do you run?")
    p.wait_message("agent", "From the second box.", FIRST_REPLY_S)
    call = fake.requests[n0]
    ctx.second_box_call = n0
    check(call["headers"].get("authorization") == f"Bearer {SECOND_KEY}", "the call carried the endpoint's own key")
    check(call["body"]["model"] == "fake-model-large", f"the endpoint's default model: {call['body']['model']}")

    # Removing it (the agent goes back to the host's default) from the page.
    p.js("document.getElementById('open-models').click()")
    row = p.wait(lambda _: next((li for li in p.find_all("#models-list li.endpoint") if "Second box" in li.text), None),
                 "the endpoint listed again")
    check("Used by 1 agent" in row.text, f"its use shown: {row.text!r}")
    row.find_element(By.XPATH, ".//button[text()='Remove']").click()
    p.wait(shown_alert, "the confirmation").accept()
    p.wait(lambda _: not any("Second box" in li.text for li in p.find_all("#models-list li.endpoint")), "the endpoint removed")
    p.find("#models-close").click()
    agent = api(ctx.host.port, "GET", "/api/agents")[0]
    check(agent["provider"] == "openai", f"the agent is back on the default: {agent}")


MODEL_STEPS = [
    ("model: page loads, no mock banner", step_model_loads),
    ("model: streamed reply shown live, then once as markdown", step_model_streams),
    ("model: write_file + send_file round trip, file download", step_model_tools),
    ("model: question card answered by a click", step_model_question),
    ("model: approval card decided by a click", step_model_approval),
    ("model: Stop mid-stream aborts the model call", step_model_stop),
    ("model: busy model, retry status line", step_model_busy),
    ("model: model error shown as an error notice", step_model_error),
    ("model: reaction and edit re-render in place", step_model_edit_react),
    ("model: a scheduled task paused, resumed, cancelled from the app", step_model_tasks),
    ("model: an endpoint added on the Models page serves the agent", step_models_page),
    ("model: the API key stays with the host", step_model_no_key),
    ("model: no CSP violations or script errors", step_console_clean),
]



# ------------------------------------------------------------------------------ access steps

ACCESS_TOKEN = "browser-test-token-0123456789abcdef"


def step_sign_in(ctx):
    """With WEBCHAT_TOKEN set, the page asks for it, refuses a wrong one, and signs in."""
    p = ctx.page
    p.d.get(p.url)
    p.wait(lambda _: p.find("#gate").is_displayed() and p.find("#signin-form").is_displayed(), "the sign-in screen")
    help_text = p.js("return document.querySelector('.gate-help').textContent")
    check("WEBCHAT_TOKEN" in help_text and "invitation" in help_text, f"the lost-token help says what to do: {help_text!r}")
    box = p.find("#signin-token")
    box.send_keys("not-the-token-0123456789" + Keys.ENTER)
    p.wait(lambda _: p.find("#signin-error").is_displayed(), "an error for a wrong token")
    check("wrong token" in p.find("#signin-error").text, f"the error says why: {p.find('#signin-error').text!r}")
    box.clear()
    box.send_keys(ACCESS_TOKEN + Keys.ENTER)
    p.wait(lambda _: not p.find("#gate").is_displayed(), "the sign-in screen to go away")
    p.wait_connected()
    p.wait(lambda _: p.find("#open-people").is_displayed() and p.find("#sign-out").is_displayed(), "People and Sign out")
    check("operator" in p.find("#whoami").text, f"signed in as the operator: {p.find('#whoami').text!r}")
    cookies = p.d.get_cookies()
    check(cookies and all(c.get("httpOnly") for c in cookies), f"the session cookie is HttpOnly: {cookies}")
    check(p.js("return document.cookie") == "", "the page cannot read the session cookie")


def step_invite(ctx):
    """The owner invites Sam from the People page; Sam joins from the link in another browser."""
    p = ctx.page
    p.find("#open-people").click()
    p.wait(lambda _: p.find("#people-dialog").is_displayed(), "the People dialog")
    p.wait(lambda _: len(p.find_all("#invite-agents input")) == 1, "the agents to choose from")
    p.find("#invite-name").send_keys("Sam")
    p.find("#invite-form button[type=submit]").click()
    p.wait(lambda _: p.find("#invite-result").is_displayed(), "the invitation link")
    url = p.find("#invite-url").get_attribute("value")
    check(url.startswith(f"http://127.0.0.1:{ctx.host.port}/invite/"), f"an absolute link: {url}")
    qr = p.find("#invite-qr")
    p.wait(lambda _: p.js("return arguments[0].complete && arguments[0].naturalWidth > 0", qr), "the QR code image")
    p.wait(lambda _: "Sam" in p.find("#invites-list").text, "the open invitation listed")
    # Another person, another browser.
    ctx.guest = Page(start_browser(ctx.tmp / "guest-profile"), ctx.host.port)
    g = ctx.guest
    g.d.get(url)
    g.wait(lambda _: g.find("#invite-view").is_displayed() and "Sam" in g.find("#invite-text").text, "the invitation")
    g.find("#invite-accept").click()
    g.wait(lambda _: not g.find("#gate").is_displayed(), "joining")
    g.wait_connected()
    check("Sam" in g.find("#whoami").text, f"signed in as Sam: {g.find('#whoami').text!r}")
    check(g.js("return location.pathname") == "/", "the address no longer holds the invitation")
    check(not g.find("#open-people").is_displayed(), "a member has no People page")
    g.wait(lambda _: g.find_all("#rooms li"), "Sam's rooms")
    g.chat("hello from Sam", reply_timeout=FIRST_REPLY_S)
    # The link works once.
    g2 = ctx.guest.d
    g2.get(url)
    g.wait(lambda _: g.find("#invite-error-accept").is_displayed(), "a used link says so")
    check("used" in g.find("#invite-error-accept").text, f"{g.find('#invite-error-accept').text!r}")


def step_people_remove(ctx):
    """The owner sees Sam and his device, removes him, and Sam's page is signed out at once."""
    p, g = ctx.page, ctx.guest
    g.d.get(g.url)
    g.wait_connected()
    p.find("#people-close").click()
    p.find("#open-people").click()
    sam = "[...document.querySelectorAll('#people-list .person')].find((e) => e.textContent.includes('Sam'))"
    p.wait(lambda _: p.js(f"return !!{sam}"), "Sam in the list")
    text = p.js(f"return {sam}.textContent")
    check("Chrome on Linux" in text, f"Sam's device is listed: {text!r}")
    # The list re-renders as it refreshes: find the button at the moment of the click, and
    # answer the confirmation the way a person would.
    p.js("window.confirm = () => true")
    p.js(f"{sam}.querySelector('.btn-danger').click()")
    p.wait(lambda _: p.js(f"return !{sam}"), "Sam gone from the list")
    g.wait(lambda _: g.find("#gate").is_displayed() and g.find("#signin-form").is_displayed(), "Sam's page signed out", REPLY_S)


def step_sign_out(ctx):
    p = ctx.page
    p.find("#people-close").click()
    p.find("#sign-out").click()
    # The page reloads: look with a script, which never holds a stale element.
    shown = "const g = document.getElementById('gate'), f = document.getElementById('signin-form');" \
        " return !!(g && f && !g.hidden && !f.hidden);"
    p.wait(lambda _: p.js(shown), "the sign-in screen after signing out")
    res = p.js("return fetch('/api/auth/check').then((r) => r.status)")
    check(res == 401, f"the session ended: auth check answered {res}")


ACCESS_STEPS = [
    ("access: the token sign-in screen", step_sign_in),
    ("access: an invitation from the People page, joined in another browser", step_invite),
    ("access: removing a person signs their page out", step_people_remove),
    ("access: signing out", step_sign_out),
]


# --------------------------------------------------------------------------------- TLS steps


def trusting_home(tmp, ca_file):
    """A HOME whose NSS store (what Chromium on Linux uses) trusts pincer's CA."""
    home = tmp / "tls-home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{db}", "-t", "C,,", "-n", "pincer local CA", "-i", str(ca_file)],
        check=True,
        capture_output=True,
    )
    return home


def step_tls_app(ctx):
    """Over HTTPS with the local CA trusted: a secure context, signed in, chat, installable."""
    home = trusting_home(ctx.tmp, ctx.host.tmp / "data" / "tls" / "ca.crt")
    ctx.tls_page = Page(start_browser(ctx.tmp / "tls-profile", home=home), ctx.host.port)
    p = ctx.tls_page
    p.d.get(f"https://localhost:{ctx.host.port}/")
    p.wait(lambda _: p.find("#signin-form").is_displayed(), "the sign-in screen over HTTPS")
    check(p.js("return window.isSecureContext") is True, "HTTPS gives a secure context")
    p.find("#signin-token").send_keys(ACCESS_TOKEN + Keys.ENTER)
    p.wait_connected()
    p.chat("over https", reply_timeout=FIRST_REPLY_S)
    check_installable(p)


def step_tls_notifications(ctx):
    """The notification controls show their real state, and the page reports what it shows."""
    p = ctx.tls_page
    p.wait(lambda _: p.find("#notify-toggle").get_attribute("data-state") in ("off", "on", "blocked"), "the push state")
    toggle = p.find("#notify-toggle")
    check(toggle.text == "Notifications: off" and toggle.is_enabled(), f"push can be turned on here: {toggle.text!r}")
    # The server has a webhook (PINCER_NOTIFY_URL): its toggle shows and works.
    hook = p.wait(lambda _: p.find("#webhook-toggle").is_displayed() and p.find("#webhook-toggle"), "the webhook toggle")
    check(hook.text == "Webhook: off", f"the webhook starts off: {hook.text!r}")
    hook.click()
    p.wait(lambda _: p.find("#webhook-toggle").text == "Webhook: on", "the webhook turned on")
    check(p.js("return fetch('/api/notify').then(r => r.json())")["webhook"] is True, "stored on the server")
    # The page tells the server it is in view and which room it shows (no notifications for it).
    p.ws_frames()  # what was sent before
    p.d.refresh()
    p.wait_connected()
    p.wait(lambda _: [f for d, f in p.ws_frames() if d == "sent" and f.get("type") == "view"], "a view frame")
    views = [f for d, f in p.frames if d == "sent" and f.get("type") == "view"]
    check(views[-1] == {"type": "view", "visible": True, "room_id": ROOM}, f"the view frame: {views[-1]}")


TLS_STEPS = [
    ("tls: the local CA trusted, sign-in, chat over WSS, installable", step_tls_app),
    ("tls: notification controls and view reporting", step_tls_notifications),
]

class Ctx:
    def __init__(self, tmp, log, host, page):
        self.tmp = tmp
        self.log = log
        self.host = host
        self.page = page
        self.fake = None
        self.file_msg = None  # the agent's file message (model phase)
        self.second_box_call = None  # the model call made through the endpoint added in the app
        self.guest = None  # a second person's page (access phase)
        self.tls_page = None  # a browser trusting pincer's CA (TLS phase)


def run_steps(ctx, steps):
    """Runs steps until one fails; returns (name, exception) of the failure, or None."""
    for name, step in steps:
        t0 = time.monotonic()
        try:
            step(ctx)
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            return name, e
        print(f"ok    {name} ({time.monotonic() - t0:.1f} s)", flush=True)
    return None


def main():
    if not HOST_BIN.is_file():
        print(f"FAIL: no host binary at {HOST_BIN}: run `cargo build --bin pincer` or set PINCER_BIN")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pincer-browser-"))
    log = collections.deque(maxlen=400)
    host = driver = ctx = fake = None
    hosts = []
    failed = None
    console = []
    started = time.monotonic()
    try:
        host = Host(tmp, log).start()
        hosts.append(host)
        driver = start_browser(tmp / "profile")
        ctx = Ctx(tmp, log, host, Page(driver, host.port))
        print("---- phase 1: mock provider", flush=True)
        failed = run_steps(ctx, MOCK_STEPS)
        if not failed:
            # A second host on fresh data, its model a scripted fake behind the credential proxy.
            hosts.append(ctx.host)
            ctx.host.stop()
            fake = ctx.fake = FakeOpenAI().start()
            model_tmp = tmp / "model"
            model_tmp.mkdir()
            ctx.host = Host(model_tmp, log, env=model_env(fake)).start()
            hosts.append(ctx.host)
            ctx.page.port = ctx.host.port
            print("---- phase 2: scripted model", flush=True)
            failed = run_steps(ctx, MODEL_STEPS)
        if not failed:
            # A third host with a token: signing in, invitations, people.
            ctx.host.stop()
            access_tmp = tmp / "access"
            access_tmp.mkdir()
            ctx.host = Host(access_tmp, log, env={"WEBCHAT_TOKEN": ACCESS_TOKEN}).start()
            hosts.append(ctx.host)
            ctx.page.port = ctx.host.port
            print("---- phase 3: access", flush=True)
            failed = run_steps(ctx, ACCESS_STEPS)
        if not failed:
            # HTTPS from pincer's own CA, with a browser that trusts it.
            ctx.host.stop()
            tls_tmp = tmp / "tls"
            tls_tmp.mkdir()
            tls_env = {"WEBCHAT_TOKEN": ACCESS_TOKEN, "WEBCHAT_TLS": "auto", "PINCER_NOTIFY_URL": "http://127.0.0.1:9/pincer"}
            ctx.host = Host(tls_tmp, log, env=tls_env).start()
            hosts.append(ctx.host)
            print("---- phase 4: HTTPS", flush=True)
            failed = run_steps(ctx, TLS_STEPS)
    except Exception as e:  # noqa: BLE001 - set-up failures too
        failed = ("set-up", e)
    finally:
        if failed and ctx:
            try:
                ctx.page.read_console()
                console = [f"{e['level']} {e['message']}" for e in ctx.page.console]
            except Exception:  # noqa: BLE001 - the browser may be gone
                console = ["(console unavailable)"]
        if driver:
            driver.quit()
        if ctx and ctx.guest:
            ctx.guest.d.quit()
        if ctx and ctx.tls_page:
            ctx.tls_page.d.quit()
        for h in {id(x): x for x in (*hosts, ctx and ctx.host) if x}.values():
            h.stop()
        if fake:
            fake.stop()

    if failed:
        name, e = failed
        print(f"FAIL  {name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        if not isinstance(e, Failure):
            print("".join(traceback.format_exception(e)[:-1]).rstrip())
        if ctx:
            print("---- browser console ----")
            print("\n".join(console[-40:]) or "(empty)")
        if fake:
            print("---- fake model requests ----")
            for i, r in enumerate(fake.snapshot()):
                print(f"#{i + 1} {r['outcome']}: {last_user_text(r['body'])[-200:]!r}")
        print("---- host log (tail) ----")
        print("\n".join(list(log)[-60:]))
        print(f"---- data kept in {tmp}")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    total = len(MOCK_STEPS) + len(MODEL_STEPS) + len(ACCESS_STEPS) + len(TLS_STEPS)
    print(f"all {total} browser checks passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
