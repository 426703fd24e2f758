"""A local HTTP server that speaks Twilio's Messages API, for tests (unit, load and end-to-end).

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like Twilio does: form fields in,
basic auth with the account SID and auth token, ``201`` and a JSON message resource out, or Twilio's
real error bodies (``{"code": 21211, "message": ..., "more_info": ..., "status": 400}``).

Start and stop::

    with FakeTwilio() as server:          # 127.0.0.1, a free port, a background thread
        section = {"account_sid": server.account_sid, "auth_token": server.auth_token,
                   "sender": "Woonstad", "base_url": server.base_url}
        ...
    # or: server = FakeTwilio().start(); ...; server.stop()   (stop() is idempotent; after it, connections
    # are refused, which is how a test gets a connection error)

What it checks, before any scripted answer: the basic auth (else 401, Twilio 20003), the account SID in
the path (else 404, Twilio 20404), and the required fields: To (21604), From or MessagingServiceSid
(21603), Body or ContentSid (21602).

Scripting answers (for the number as sent in ``To``; ``"whatsapp:+316..."`` or the bare ``"+316..."``
both match a WhatsApp request)::

    server.fail("+31612345678", code=21610)            # every request to this number: 21610 (400)
    server.fail("+31612345678", code=21211, times=1)   # only the next one, then normal again
    server.fail("+31612345678", code=429, retry_after="2")   # 429 with a Retry-After header
    server.fail("+31612345678", code=503)              # 503 Service Unavailable
    server.script([rate_limited("1"), unavailable(), ok()])              # the next answers, any number
    server.script([error(21614)], to="+31612345678")                     # the next answers, this number
    server.latency = 0.05                              # every answer waits this long (load tests)
    server.script([ok(delay=2.0)])                     # one slow answer (time-outs)

Order for each request: this number's script, this number's ``fail``, the shared script, then ``201``.
Answers are built with ``ok()``, ``error(code)``, ``rate_limited(retry_after)``, ``unavailable()``
(each takes ``delay=`` seconds) or ``Answer(...)`` for anything else (``body=`` sends a raw body).

What it recorded::

    server.requests            # every request, in order: Recorded(method, path, auth, fields, headers, status, ...)
    server.sent                # the form fields of the requests answered 201
    server.wait_for(3, timeout=5)   # block until 3 requests were recorded (daemon / end-to-end tests)
    server.max_in_flight       # the most requests it was answering at the same time (rate-limit tests)
    server.reset()             # forget requests and scripts

Pointing twilio-python at it: ``client.api.base_url = server.base_url`` (what ``channels.twilio`` does
with the ``base_url`` key of a channel's section).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
API_VERSION = "2010-04-01"
_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")

# Twilio's real answers for the codes tests use: HTTP status and message. The messages that quote the
# number do so as Twilio does, so tests can check that no channel passes them on.
TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number {to} is not a valid mobile number"),
    63016: (
        400,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    ),
}


@dataclass(frozen=True)
class Answer:
    """One scripted answer. `code` None and status 201: the message is accepted."""

    status: int = 201
    code: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    body: str | None = None  # a raw body instead of the JSON Twilio would send
    headers: tuple[tuple[str, str], ...] = ()


def ok(delay: float = 0.0) -> Answer:
    return Answer(delay=delay)


def error(code: int, *, status: int | None = None, delay: float = 0.0, retry_after: str | None = None) -> Answer:
    """Twilio's answer for a code (21211, 21610, 21614, 63016, 20429, 20503, ...); 429 and 503 map to those."""
    if code == 429:
        code = 20429
    elif code == 503:
        code = 20503
    known = TWILIO_ERRORS.get(code)
    return Answer(status=status or (known[0] if known else 400), code=code, retry_after=retry_after, delay=delay)


def rate_limited(retry_after: str | None = "1", delay: float = 0.0) -> Answer:
    """429 Too Many Requests (Twilio 20429), with a Retry-After header unless retry_after is None."""
    return error(20429, retry_after=retry_after, delay=delay)


def unavailable(delay: float = 0.0, retry_after: str | None = None) -> Answer:
    """503 Service Unavailable (Twilio 20503)."""
    return error(20503, retry_after=retry_after, delay=delay)


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    auth: tuple[str, str] | None  # (user, password) from basic auth
    fields: dict[str, str]  # the form fields (the last value of a repeated field)
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived
    status: int = 0  # what the server answered (0 while answering, 599 when it dropped the connection)
    sid: str = ""  # the message SID, when answered 201

    @property
    def to(self) -> str:
        return self.fields.get("To", "")


@dataclass
class _Rule:
    answer: Answer
    times: int | None  # None: every time


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    shared: deque[Answer] = field(default_factory=deque)
    per_number: dict[str, deque[Answer]] = field(default_factory=dict)
    rules: dict[str, _Rule] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1 (see the module docstring for the whole story)."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, *, latency: float = 0.0):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.latency = latency
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = _State()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeTwilio:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the port (slow answers are cut short); safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:  # kept-alive connections too, so a pooled client cannot reach it any more
            open_connections, self._connections = list(self._connections), set()
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake Twilio server is not running: call start()")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    # --- scripting ------------------------------------------------------------------------------
    def fail(
        self,
        to: str,
        code: int = 21610,
        *,
        times: int | None = None,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer requests to `to` with Twilio's error `code` (429 and 503 as such); `times` None: always."""
        with self._lock:
            self._state.rules[to] = _Rule(error(code, retry_after=retry_after, delay=delay), times)

    def script(self, answers: Iterable[Answer], to: str | None = None) -> None:
        """Queue answers, used one per request: for the number `to`, or for any number."""
        with self._lock:
            if to is None:
                self._state.shared.extend(answers)
            else:
                self._state.per_number.setdefault(to, deque()).extend(answers)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- what happened --------------------------------------------------------------------------
    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    @property
    def sent(self) -> list[dict[str, str]]:
        return [r.fields for r in self.requests if r.status == 201]

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._state.max_in_flight

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `count` requests were answered; raises TimeoutError when they were not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for r in self._state.requests if r.status) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sum(1 for r in self._state.requests if r.status)
                    raise TimeoutError(f"the fake Twilio server got {got} of {count} requests in {timeout}s")
                self._changed.wait(left)
            return list(self._state.requests)

    # --- answering (called by the handler threads) ----------------------------------------------
    def _begin(self, record: Recorded) -> None:
        with self._lock:
            self._state.requests.append(record)
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _answered(self, record: Recorded, status: int) -> None:
        with self._changed:
            record.status = status
            self._changed.notify_all()

    def _end(self, record: Recorded, status: int) -> None:
        with self._changed:
            record.status = record.status or status
            self._state.in_flight -= 1
            self._changed.notify_all()

    def _pick(self, to: str) -> Answer:
        keys = [to] + ([to.removeprefix("whatsapp:")] if to.startswith("whatsapp:") else [])
        with self._lock:
            state = self._state
            for key in keys:
                queue = state.per_number.get(key)
                if queue:
                    return queue.popleft()
            for key in keys:
                rule = state.rules.get(key)
                if rule is not None:
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            del state.rules[key]
                    return rule.answer
            if state.shared:
                return state.shared.popleft()
        return ok()

    def _answer(self, record: Recorded) -> tuple[Answer, dict[str, object] | None]:
        """The answer and, for a 201, the message resource."""
        match = _PATH.match(record.path)
        if record.auth != (self.account_sid, self.auth_token):
            return error(20003), None
        if record.method != "POST" or not match or match["account"] != self.account_sid:
            return error(20404), None
        f = record.fields
        if not f.get("To"):
            return error(21604), None
        if not (f.get("From") or f.get("MessagingServiceSid")):
            return error(21603), None
        if not (f.get("Body") or f.get("ContentSid")):
            return error(21602), None
        answer = self._pick(f["To"])
        if answer.status != 201 or answer.body is not None:
            return answer, None
        return answer, self._resource(f)

    def _resource(self, f: dict[str, str]) -> dict[str, object]:
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        body = f.get("Body", "")
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": f.get("From") or None,
            "messaging_service_sid": f.get("MessagingServiceSid") or None,
            "num_media": "0",
            "num_segments": str(_segments(body)) if body else "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Twilio says "accepted" when a Messaging Service still has to pick the sender
            "status": "queued" if f.get("From") else "accepted",
            "subresource_uris": {"media": base + "/Media.json", "feedback": base + "/Feedback.json"},
            "to": f["To"],
            "uri": base + ".json",
        }


def _segments(text: str) -> int:
    from nudger.tone import sms_segments

    return sms_segments(text).count


def _error_body(answer: Answer, path: str, to: str) -> dict[str, object]:
    code = answer.code or answer.status
    message = TWILIO_ERRORS.get(code, (answer.status, "Error"))[1].format(path=path, to=to)
    body: dict[str, object] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": answer.status,
    }
    if code == 20003:
        body["detail"] = "Your AccountSid or AuthToken was incorrect."
    return body


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio  # set on the subclass made by FakeTwilio.start
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' pooled sessions expect
    server_version = "FakeTwilio/1.0"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        fields = dict(parse_qsl(raw, keep_blank_values=True))
        record = Recorded(
            method=self.command,
            path=self.path,
            auth=_basic_auth(self.headers.get("Authorization", "")),
            fields=fields,
            headers={k: v for k, v in self.headers.items()},
            at=time.monotonic(),
        )
        fake = self.fake
        if fake._stopping.is_set():
            self.close_connection = True
            return
        fake._begin(record)
        try:
            answer, resource = fake._answer(record)
            wait = answer.delay + fake.latency
            if wait > 0 and fake._stopping.wait(wait):
                self.close_connection = True  # stopped while waiting: drop the connection unanswered
                return
            if answer.body is not None:
                payload = answer.body.encode("utf-8")
            elif resource is not None:
                record.sid = str(resource["sid"])
                payload = json.dumps(resource).encode("utf-8")
            else:
                payload = json.dumps(_error_body(answer, self.path, fields.get("To", ""))).encode("utf-8")
            fake._answered(record, answer.status)  # before the client can see the answer
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if answer.retry_after is not None:
                self.send_header("Retry-After", answer.retry_after)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        finally:
            fake._end(record, 599)  # 599 only when it was not answered


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def restart(fake: FakeTwilio, port: int) -> FakeTwilio:
    """Start a stopped server again on `port` (the one it had), keeping what it recorded and its scripts.

    How a test takes the provider away for a while (connections are refused while it is stopped) and
    brings it back where the clients expect it::

        port = server.port
        server.stop()          # connection refused from here on
        ...
        restart(server, port)  # the same base_url answers again
    """
    if fake._server is not None:
        raise RuntimeError("the fake Twilio server is running: stop() it first")
    handler = type("_BoundHandler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)  # SO_REUSEADDR: no wait for TIME_WAIT
    server.daemon_threads = True
    fake._server = server
    fake._stopping.clear()
    fake._thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
    )
    fake._thread.start()
    return fake
