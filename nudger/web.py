"""The daemon's small web endpoint: Twilio status and inbound webhooks, and /healthz.

It binds to loopback unless configured otherwise, and answers 403 to any webhook call whose
Twilio signature does not check out. Webhook handling is plain functions on the engine so tests
can call them with real signed requests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .contact import mobile_e164
from .ledger import DELIVERED, PLANNED, READ, SENT
from .log import log, warn

STOP_ALL = {"STOP ALL", "STOPALL", "STOP ALLES", "AFMELDEN ALLES"}
STOP_WORDS = {"STOP", "STOPPEN", "AFMELDEN", "UITSCHRIJVEN", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}


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
    words = " ".join(params.get("Body", "").upper().split())
    if words in STOP_ALL:
        engine.ledger.opt_out(tenant, "all", now, "reply")
        log("opted_out", tenant=tenant, channel="all")
        return "opted out"
    if words in STOP_WORDS:
        engine.ledger.opt_out(tenant, channel, now, "reply")
        log("opted_out", tenant=tenant, channel=channel)
        return "opted out"
    engine.ledger.add_events(
        [{"tenant_id": tenant, "name": "reply_received", "day": now.date(), "source": channel}], now
    )
    log("reply_received", tenant=tenant, channel=channel)
    return "reply recorded"


class _Handler(BaseHTTPRequestHandler):
    app: WebApp

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass  # the request line can hold phone numbers in query strings: never logged

    def _reply(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if urlsplit(self.path).path == "/healthz":
            ok, data = self.app.health()
            self._reply(200 if ok else 503, json.dumps(data), "application/json")
        else:
            self._reply(404, "not found")

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        handler = {"/twilio/status": handle_status, "/twilio/inbound": handle_inbound}.get(path)
        if handler is None:
            self._reply(404, "not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            self._reply(413, "too large")
            return
        params = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True))
        from channels.webhooks import valid_twilio_signature

        url = self.app.public_url.rstrip("/") + self.path
        if not valid_twilio_signature(
            auth_token(self.app.engine), url, params, self.headers.get("X-Twilio-Signature", "")
        ):
            warn("webhook_rejected", reason="bad or missing Twilio signature")
            self._reply(403, "forbidden")
            return
        with self.app.lock:
            handler(self.app.engine, params)
        self._reply(200, '<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml")


class WebApp:
    """The HTTP server in a background thread. `health` is given by the daemon."""

    def __init__(
        self, engine: Any, host: str, port: int, public_url: str, health: Callable[[], tuple[bool, dict[str, Any]]]
    ):
        self.engine = engine
        self.public_url = public_url or f"http://{host}:{port}"
        self.health = health
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"app": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="nudger-web", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        log("web_started", url=f"http://{self.server.server_address[0]}:{self.port}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
