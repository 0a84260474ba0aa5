"""A scripted, OpenAI-compatible model server for the browser test (stdlib only).

It accepts `POST /v1/chat/completions`, records every request (headers and JSON body) and answers
each one with the next scripted reply the test pushed: a list of Server-Sent-Event chunks in the
Chat Completions streaming format, or an HTTP error. The helpers below build those chunks.

A reply may contain a `Hold` marker: the server then keeps the stream open until the test sets the
marker's event (to watch streaming happen live, or to press Stop mid-stream), sending SSE comment
lines meanwhile, as a model that keeps generating would send tokens. They matter for a stop: the
host's credential proxy notices that the agent went away only when it next passes bytes on, and
only then drops this connection; the write that fails here is how this server learns that the
client disconnected. (A client closing its end is noticed too, without writes.)

When a request finds no scripted reply, the server waits for one (bounded), so the test can read
a request (say, the message ids in the prompt) before deciding the answer.
"""

import json
import queue
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"
SCRIPT_WAIT_S = 60  # a request waits this long for a scripted reply
HOLD_MAX_S = 60  # a Hold that is never released ends the stream after this long
KEEPALIVE_S = 0.2  # SSE comment interval while holding
# Longer than the API key the test configures: a proxy that holds back a possible key prefix
# still passes everything before it on.
KEEPALIVE = b": keep-alive " + b"." * 64 + b"\n\n"


class Hold:
    """A point in a reply where the stream stays open until `event` is set. `keepalive=False`
    sends nothing meanwhile (then a disconnect is noticed only if the peer closes)."""

    def __init__(self, event=None, keepalive=True):
        self.event = event or threading.Event()
        self.keepalive = keepalive

    def release(self):
        self.event.set()


class Reply:
    """One scripted answer: `status` 200 with SSE `chunks` (str, bytes or Hold), or an error
    status with a JSON `body`; `headers` are added to the response."""

    def __init__(self, chunks=(), status=200, body=None, headers=None):
        self.chunks = list(chunks)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


# ------------------------------------------------------------------------ chunk builders


def chunk(delta, finish_reason=None):
    """One `data:` line of a `chat.completion.chunk` with this delta."""
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(obj)}\n\n"


DONE = "data: [DONE]\n\n"


def text_reply(*parts):
    """A streamed text answer; `parts` are text deltas, or Hold markers between them."""
    chunks = [chunk({"role": "assistant", "content": ""})]
    for p in parts:
        chunks.append(p if isinstance(p, Hold) else chunk({"content": p}))
    return Reply(chunks + [chunk({}, "stop"), DONE])


def tool_reply(*calls, before=()):
    """A streamed answer calling tools: `calls` are (call_id, name, arguments dict); each call's
    arguments arrive in a few fragments, as real servers send them. `before`: chunks (or Hold
    markers) sent first."""
    chunks = [chunk({"role": "assistant", "content": None}), *before]
    for index, (call_id, name, args) in enumerate(calls):
        head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [head]}))
        text = json.dumps(args, ensure_ascii=False)
        step = max(1, len(text) // 3)
        for i in range(0, len(text), step):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": text[i : i + step]}}]}))
    return Reply(chunks + [chunk({}, "tool_calls"), DONE])


def error_reply(status, message, kind="invalid_request_error", headers=None):
    return Reply(status=status, body={"error": {"message": message, "type": kind}}, headers=headers)


# ------------------------------------------------------------------------ server


class FakeOpenAI:
    """The server; `start()` it, `push()` replies, read `requests` (a list of dicts with
    `headers` (lowercased names), `body` (the parsed JSON) and `outcome`)."""

    def __init__(self):
        self.requests = []
        self._replies = queue.Queue()
        self._cond = threading.Condition()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def push(self, *replies):
        for r in replies:
            self._replies.put(r)

    def pending_replies(self):
        return self._replies.qsize()

    def _record(self, entry):
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()

    def _set_outcome(self, entry, outcome):
        with self._cond:
            entry["outcome"] = outcome
            self._cond.notify_all()

    def snapshot(self):
        """A copy of the recorded requests (safe to read while requests arrive)."""
        with self._cond:
            return [dict(r) for r in self.requests]


# What `GET /v1/models` lists.
LISTED_MODELS = ["fake-model", "fake-model-large"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: the test prints what matters
        pass

    def do_GET(self):
        """The model list, as llama.cpp and vLLM serve it (not recorded: not a model call)."""
        self.close_connection = True
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m} for m in LISTED_MODELS]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self):
        fake = self.server.fake
        self.close_connection = True
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        raw = self._body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        entry = {
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "outcome": "waiting",
            "at": time.monotonic(),
        }
        fake._record(entry)
        try:
            reply = fake._replies.get(timeout=SCRIPT_WAIT_S)
        except queue.Empty:
            fake._set_outcome(entry, "unscripted")
            self._json(400, {"error": {"message": "the fake model has no scripted reply", "type": "test"}})
            return
        if reply.status != 200:
            self._json(reply.status, reply.body or {}, reply.headers)
            fake._set_outcome(entry, "error")
            return
        fake._set_outcome(entry, self._stream(reply, entry))

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, reply, entry):
        """Writes the chunks with a flush each; returns the outcome."""
        fake = self.server.fake
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.flush()
            fake._set_outcome(entry, "streaming")
            for c in reply.chunks:
                if isinstance(c, Hold):
                    fake._set_outcome(entry, "holding")
                    if not self._hold(c):
                        return "hold-timeout"
                    fake._set_outcome(entry, "streaming")
                    continue
                self.wfile.write(c if isinstance(c, bytes) else c.encode())
                self.wfile.flush()
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            return "completed"
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            return "disconnected"

    def _hold(self, hold):
        """Waits for the release, writing keep-alives (a write error raises: disconnected) and
        watching for the peer closing the connection."""
        deadline = time.monotonic() + HOLD_MAX_S
        while not hold.event.wait(KEEPALIVE_S):
            if time.monotonic() > deadline:
                return False
            if self._peer_closed():
                raise ConnectionResetError("the client closed the connection")
            if hold.keepalive:
                self.wfile.write(KEEPALIVE)
                self.wfile.flush()
        return True

    def _peer_closed(self):
        """True when the client has closed its end (readable, and reading gives EOF)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
