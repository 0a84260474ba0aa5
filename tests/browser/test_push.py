#!/usr/bin/env python3
"""Web Push and the notification webhook, checked by an independent implementation.

A real `pincer run` (mock agent in a real container) pushes to a local push service. This test
plays the browser's side with keys it makes itself: it subscribes through the API, and the
local push service decrypts each push with `http_ece` (aes128gcm, RFC 8291) and verifies the
VAPID JWT with `py_vapid` (RFC 8292) against the key pincer publishes. Checked: who gets a push
(not someone looking at the room), the payload (title, redacted preview, room), TTL and
Urgency, a 429 retried after its Retry-After, a 410 pruning the subscription, and the ntfy-style
webhook for a person who chose it.

Waits are bounded waits on events (a push arriving, a condition over the API); nothing sleeps.
"""

import base64
import collections
import email.header
import json
import os
import queue
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import http_ece
import py_vapid.jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_webchat import HOST_BIN, Failure, Host, api, check  # noqa: E402

EVENT_S = 60  # a push after a message (it needs the agent's container)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class PushService:
    """A local push service: records every request; answers from a script (default 201)."""

    def __init__(self):
        self.requests = queue.Queue()
        self.script = collections.deque()  # (status, headers) to answer with, in order
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                svc.requests.put({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers = svc.script.popleft() if svc.script else (201, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"

    def next(self, what, timeout=EVENT_S):
        try:
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"no request to the push service within {timeout} s: expected {what}") from None

    def stop(self):
        self.server.shutdown()


class Browser:
    """The browser's half of Web Push: a P-256 key pair and an auth secret."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        pub = self.key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.p256dh = b64(pub)

    def decrypt(self, body):
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))


class Socket:
    """A bare WebSocket client (RFC 6455), enough to be a page that has a room in view."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=EVENT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        check(head.startswith(b"HTTP/1.1 101"), f"WebSocket upgrade: {head!r}")

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise Failure("the server closed the WebSocket")
        return data

    def _take(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        if len(data) < 126:
            head += bytes([0x80 | len(data)])
        else:
            head += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def frame(self):
        """The next text frame, as an object (control frames are skipped)."""
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._take(2), "big")
            elif n == 127:
                n = int.from_bytes(self._take(8), "big")
            payload = self._take(n)
            if b0 & 0x0F == 0x1:
                return json.loads(payload)
            if b0 & 0x0F == 0x8:
                raise Failure(f"the server closed the WebSocket: {payload!r}")

    def wait(self, what, cond):
        deadline = time.monotonic() + EVENT_S
        while time.monotonic() < deadline:
            f = self.frame()
            if cond(f):
                return f
        raise Failure(f"timed out waiting for {what}")

    def close(self):
        self.sock.close()


def say(port, text):
    res = api(port, "POST", "/api/rooms/assistant/messages", {"text": text, "client_id": f"p-{uuid.uuid4()}"})
    check(res.get("ok") is True, f"posting a message: {res}")


def check_push(req, browser, vapid_key, service, want_text):
    h = {k.lower(): v for k, v in req["headers"].items()}
    check(h.get("content-encoding") == "aes128gcm", f"aes128gcm: {h}")
    check(h.get("ttl", "").isdigit() and int(h["ttl"]) > 0, f"a TTL: {h}")
    check(h.get("urgency") in ("very-low", "low", "normal", "high"), f"an Urgency: {h}")
    auth = h.get("authorization", "")
    check(auth.startswith("vapid t="), f"VAPID authorization: {auth!r}")
    token, k = auth[len("vapid t="):].split(", k=")
    check(k == vapid_key, "the key in the header is the published one")
    claims = py_vapid.jwt.decode(token, vapid_key)  # raises if the signature is wrong
    check(claims["aud"] == service.origin, f"aud is the push service's origin: {claims}")
    check(claims["exp"] > time.time() and claims["exp"] <= time.time() + 24 * 3600, f"exp within 24 h: {claims}")
    check(claims["sub"].startswith(("mailto:", "https://")), f"sub: {claims}")
    payload = browser.decrypt(req["body"])
    check(payload["title"] == "Assistant · Assistant", f"title '<agent> · <room>': {payload}")
    check(payload["body"] == want_text, f"body {want_text!r}: {payload}")
    check(payload["room_id"] == "assistant" and payload["tag"] == "room-assistant", f"room: {payload}")
    return payload


def wait_until(what, cond, timeout=EVENT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        threading.Event().wait(0.05)
    raise Failure(f"timed out after {timeout} s waiting for {what}")


def run(tmp, log):
    service = PushService()
    webhook = PushService()
    host = Host(
        tmp,
        log,
        env={"WEBCHAT_PUSH_ALLOW": service.origin, "PINCER_NOTIFY_URL": f"{webhook.origin}/pincer-topic"},
    ).start()
    try:
        port = host.port
        vapid_key = api(port, "GET", "/api/push/vapid-public")["key"]
        check(len(unb64(vapid_key)) == 65, "the VAPID key is an uncompressed P-256 point")
        browser = Browser()
        endpoint = f"{service.origin}/push/{uuid.uuid4()}"
        sub = {"endpoint": endpoint, "keys": {"p256dh": browser.p256dh, "auth": b64(browser.auth)}}
        check(api(port, "POST", "/api/push/subscribe", sub).get("ok") is True, "subscribing")
        print("ok    subscribed", flush=True)

        # Someone looking at the room on a device is not notified of what it shows them.
        page = Socket(port)
        page.wait("ready", lambda f: f.get("type") == "ready")
        page.send({"type": "view", "visible": True, "room_id": "assistant"})
        page.send({"type": "join", "room_id": "assistant"})
        page.wait("the room's history (so the view is recorded)", lambda f: f.get("type") == "history")
        say(port, "while looking")
        page.wait(
            "the answer on the open page",
            lambda f: f.get("type") == "message" and f["message"].get("text") == "echo: while looking",
        )
        page.send({"type": "view", "visible": False, "room_id": "assistant"})
        page.send({"type": "join", "room_id": "assistant"})
        page.wait("the history again (so the page is recorded as hidden)", lambda f: f.get("type") == "history")
        print("ok    a page with the room in view", flush=True)

        # Nobody looks at the room: the agent's answer is pushed, the secret in it masked. The
        # pushes go out in order, so this being the first proves the looked-at one was not sent.
        say(port, "remember sk-ant-api03-AAAAbbbbCCCCddddEEEEffff1234 please")
        req = service.next("the agent's answer")
        payload = check_push(req, browser, vapid_key, service, "echo: remember [ANTHROPIC_KEY:sk-a****34] please")
        check(payload.get("unread") == 1, f"the badge count: {payload}")
        page.close()
        print("ok    pushed, decrypted and verified independently; secrets masked", flush=True)

        # A push service that is busy is tried again after the time it asks for.
        service.script.append((429, {"Retry-After": "1"}))
        say(port, "second")
        refused = service.next("the second answer (answered 429)")
        check_push(refused, browser, vapid_key, service, "echo: second")
        again = service.next("the retry after 429")
        payload = check_push(again, browser, vapid_key, service, "echo: second")
        check(payload.get("unread") == 2, f"the badge counts both unseen answers: {payload}")
        print("ok    429 retried after Retry-After", flush=True)

        # A subscription the service says is gone is removed.
        service.script.append((410, {}))
        say(port, "third")
        service.next("the third answer (answered 410)")
        wait_until("the gone subscription removed", lambda: api(port, "GET", "/api/notify")["pushDevices"] == 0)
        print("ok    410 removed the subscription", flush=True)

        # The webhook, for a person who chose it.
        prefs = api(port, "PUT", "/api/notify", {"webhook": True})
        check(prefs["webhook"] is True and prefs["webhookAvailable"] is True, f"webhook preference: {prefs}")
        say(port, "for ntfy")
        req = webhook.next("the webhook")
        h = {k.lower(): v for k, v in req["headers"].items()}
        check(req["path"] == "/pincer-topic", f"the configured URL: {req['path']}")
        title = str(email.header.make_header(email.header.decode_header(h.get("title", ""))))
        check(title == "Assistant · Assistant", f"Title header (RFC 2047 for non-ASCII): {h}")
        check(req["body"].decode() == "echo: for ntfy", f"the text as the body: {req['body']!r}")
        print("ok    ntfy-style webhook", flush=True)

        # Bad subscriptions are refused with a reason.
        for bad, why in [
            ({"endpoint": "https://evil.example/x", "keys": sub["keys"]}, "push service"),
            ({"endpoint": endpoint, "keys": {"p256dh": "AAAA", "auth": sub["keys"]["auth"]}}, "p256dh"),
            ({"endpoint": endpoint, "keys": {"p256dh": browser.p256dh, "auth": "AAAA"}}, "auth"),
        ]:
            try:
                api(port, "POST", "/api/push/subscribe", bad)
                raise Failure(f"accepted a bad subscription: {bad}")
            except Exception as e:  # noqa: BLE001 - urllib raises HTTPError with the body
                body = e.read().decode() if hasattr(e, "read") else str(e)
                check(getattr(e, "code", 0) == 422 and why in body, f"422 naming {why}: {body}")
        print("ok    bad subscriptions refused", flush=True)
    finally:
        host.stop()
        service.stop()
        webhook.stop()


def main():
    if not HOST_BIN.is_file():
        print(f"FAIL: no host binary at {HOST_BIN}")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pincer-push-"))
    log = collections.deque(maxlen=300)
    try:
        run(tmp, log)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"FAIL  {e}")
        if not isinstance(e, Failure):
            traceback.print_exc()
        print("---- host log (tail) ----")
        print("\n".join(list(log)[-60:]))
        return 1
    print("all push checks passed")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
