"""The daemon's web endpoint: an ASGI app (served by uvicorn) for Twilio's status and inbound
webhooks, /healthz and Prometheus' /metrics.

It binds to loopback unless configured otherwise, and answers 403 to any webhook call whose
Twilio signature does not check out (and changes nothing). The handling itself is plain
functions on the engine, run in a worker thread so the event loop never waits on the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from .contact import mobile_e164
from .errors import NudgerError
from .ledger import DELIVERED, PLANNED, READ, SENT
from .log import log, warn

STOP_ALL = {"STOP ALL", "STOPALL", "STOP ALLES", "AFMELDEN ALLES"}
STOP_WORDS = {"STOP", "STOPPEN", "AFMELDEN", "UITSCHRIJVEN", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "AANMELDEN", "UNSTOP"}


def auth_token(engine: Any) -> str:
    for name in ("sms", "whatsapp"):
        extra = engine.config.channels[name].model_extra or {}
        if extra.get("auth_token"):
            return str(extra["auth_token"])
    return ""


def handle_status(engine: Any, params: dict[str, str]) -> str:
    """A delivery report: delivered/read move the nudge on; failed/undelivered try the next channel."""
    sid, status, code = params.get("MessageSid", ""), params.get("MessageStatus", ""), params.get("ErrorCode", "")
    row = engine.ledger.by_receipt(sid) if sid else None
    if row is None:
        return "unknown message"
    now = engine.now()
    engine.ledger.set_provider_status(row.id, status, code or None)
    if status == "delivered" and row.state == SENT:
        engine.ledger.move(row.id, DELIVERED, now, f"delivered by {row.channel}", expect=SENT)
    elif status == "read" and row.state in (SENT, DELIVERED):
        engine.ledger.move(row.id, READ, now, f"read ({row.channel})", expect=row.state)
    elif status in ("failed", "undelivered") and row.state in (SENT, DELIVERED):
        why = f"{row.channel} {status}" + (f" (Twilio {code})" if code else "") + ": trying the next channel"
        if code == "21610":
            engine.ledger.opt_out(row.tenant_id, row.channel, now, "provider")
        tried = list(row.tried_channels or []) + [row.channel]
        engine.ledger.move(
            row.id, PLANNED, now, why, expect=row.state, tried_channels=tried, send_at=now, sent_at=None, receipt=None
        )
        warn("delivery_failed", key=row.key, channel=row.channel, code=code or None)
    else:
        return "ignored"
    log("delivery_status", key=row.key, channel=row.channel, state=status)
    return "ok"


def handle_inbound(engine: Any, params: dict[str, str]) -> str:
    """A tenant's message: STOP opts out; anything else is a `reply_received` event (a call task)."""
    sender = params.get("From", "")
    channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
    e164 = mobile_e164(sender.removeprefix("whatsapp:"))
    tenant = engine.ledger.tenant_by_phone(e164) if e164 else None
    if tenant is None:
        warn("inbound_unknown_sender", channel=channel)
        return "unknown sender"
    now = engine.now()
    engine.ledger.record_inbound(tenant, channel, now)
    # "Stop.", "stop!", "STOP 🙏": punctuation and symbols do not hide the wish
    words = " ".join(re.sub(r"[^\w ]+", " ", params.get("Body", "")).upper().split())
    if words in STOP_ALL:
        engine.ledger.opt_out(tenant, "all", now, "reply")
        log("opted_out", tenant=tenant, channel="all")
        return "opted out"
    if words in STOP_WORDS:
        engine.ledger.opt_out(tenant, channel, now, "reply")
        log("opted_out", tenant=tenant, channel=channel)
        return "opted out"
    if words in START_WORDS:
        engine.ledger.opt_in(tenant, channel)
        log("opted_in", tenant=tenant, channel=channel)
        return "opted in"
    engine.ledger.add_events(
        [{"tenant_id": tenant, "name": "reply_received", "day": now.date(), "source": channel}], now
    )
    log("reply_received", tenant=tenant, channel=channel)
    return "reply recorded"


TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
HANDLERS = {"/twilio/status": handle_status, "/twilio/inbound": handle_inbound}
MAX_BODY = 64 * 1024


class WebhookApp:
    """The ASGI application. `health` is given by the daemon."""

    def __init__(self, engine: Any, public_url: str, health: Callable[[], tuple[bool, dict[str, Any]]]):
        self.engine = engine
        self.public_url = public_url.rstrip("/")
        self.health = health
        self.metrics: Callable[[], bytes] = engine.metrics.render
        self.lock = threading.Lock()  # one webhook at a time against the store

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/healthz":
            ok, data = await asyncio.to_thread(self.health)
            await _reply(send, 200 if ok else 503, json.dumps(data).encode(), b"application/json")
            return
        if method == "GET" and path == "/metrics":
            from .metrics import CONTENT_TYPE

            await _reply(send, 200, await asyncio.to_thread(self.metrics), CONTENT_TYPE.encode())
            return
        handler = HANDLERS.get(path)
        if handler is None or method != "POST":
            await _reply(send, 404, b"not found")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _reply(send, 413, b"too large")
                return
            if not message.get("more_body"):
                break
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.public_url + path + (f"?{query}" if query else "")
        from channels.webhooks import valid_twilio_signature

        if not valid_twilio_signature(auth_token(self.engine), url, params, headers.get("x-twilio-signature", "")):
            warn("webhook_rejected", reason="bad or missing Twilio signature")
            await _reply(send, 403, b"forbidden")
            return
        await asyncio.to_thread(self._handle, handler, params)
        await _reply(send, 200, TWIML_EMPTY, b"text/xml")

    def _handle(self, handler: Callable[[Any, dict[str, str]], str], params: dict[str, str]) -> None:
        with self.lock:
            handler(self.engine, params)


async def _reply(send: Callable, status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class WebApp:
    """uvicorn serving the WebhookApp in a background thread of the daemon."""

    def __init__(
        self, engine: Any, host: str, port: int, public_url: str, health: Callable[[], tuple[bool, dict[str, Any]]]
    ):
        import uvicorn

        self.app = WebhookApp(engine, public_url or f"http://{host}:{port}", health)
        # no access log: request lines are not ours to keep; uvicorn's own errors only
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="nudger-web", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise NudgerError(f"the web endpoint could not start on {self.host} (is the port in use?)")
            time.sleep(0.02)
        log("web_started", url=f"http://{self.host}:{self.port}")

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)
