"""The ledger: nudges with idempotency keys and their history, events, imports and opt-outs.

SQLAlchemy 2; SQLite embedded by default, PostgreSQL for several daemons. The guarantees are in
the schema (a unique key per nudge, conditional updates for claims), not in Python locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    false,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .errors import NudgerError, StoreBusy

# Nudge states (DESIGN.md, "The ledger").
PLANNED, HELD, CLAIMED, SENT, DELIVERED, READ = "planned", "held", "claimed", "sent", "delivered", "read"
FAILED, SKIPPED, EXPIRED, CANCELLED, UNCERTAIN = "failed", "skipped", "expired", "cancelled", "uncertain"
FINAL_STATES = frozenset({SENT, DELIVERED, READ, FAILED, SKIPPED, EXPIRED, CANCELLED, UNCERTAIN})


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as UTC on every back end."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "nudger_meta"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Nudge(Base):
    __tablename__ = "nudges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    tenant_id: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    occurrence: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str | None] = mapped_column(String(20))
    tried_channels: Mapped[list[str] | None] = mapped_column(JSON)
    receipt: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    segments: Mapped[int | None] = mapped_column(Integer)  # SMS segments of what was sent
    provider_status: Mapped[str | None] = mapped_column(String(40))  # the provider's last word (queued ... read)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_nudges_due", "state", "send_at"),
        Index("ix_nudges_receipt", "receipt"),
        Index("ix_nudges_rule_state", "rule_id", "state"),
    )


class Transition(Base):
    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nudge_id: Mapped[int] = mapped_column(ForeignKey("nudges.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer, default=0)  # 0: an event that does not count
    previous: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "day", "count", name="uq_event"),
        Index("ix_events_day", "day"),
    )


class Snapshot(Base):
    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # accepted | refused
    tenants: Mapped[int] = mapped_column(Integer, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    rows_skipped: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")


class TenantState(Base):
    __tablename__ = "tenant_state"
    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    import_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    digest: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(Text)  # JSON of TenantRecord
    summary: Mapped[str] = mapped_column(Text)  # JSON of Facts.summary()
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164 mobile, to match replies
    present: Mapped[int] = mapped_column(Integer, default=1)  # 0: not in the newest import


class Inbound(Base):
    """The last message a tenant sent us per channel (opens WhatsApp's 24-hour session)."""

    __tablename__ = "inbound"
    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class OptOut(Base):
    __tablename__ = "optouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))  # a channel name, or "all"
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(20))
    __table_args__ = (UniqueConstraint("tenant_id", "channel", name="uq_optout"),)


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    rule_id: str
    tenant_id: str
    kind: str
    occurrence: str
    send_at: datetime
    expires_at: datetime
    priority: int
    attempts: int
    tried_channels: tuple[str, ...]


def _insert(engine: Engine):
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (tenants' data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, stat.S_IRWXU) if path.parent.stat().st_uid == os.getuid() else None
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        return Path(url[len(prefix) :])
    return None


class Ledger:
    """The store. One instance per process; short transactions; no global state."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        path = sqlite_path(url)
        if path is not None:
            _private_file(path)
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        kwargs["hide_parameters"] = True  # an error message must never carry tenants' data
        # an in-memory SQLite store lives in one connection: it is used by one thread at a time
        self.concurrent = not (url.startswith("sqlite") and path is None)
        if self.concurrent:
            kwargs.update(pool_size=20, max_overflow=20)  # dispatch threads and the web endpoint
        try:
            self.engine = create_engine(url, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise NudgerError(f"the store URL in config.yaml cannot be used ({type(exc).__name__}: {exc})") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.insert = _insert(self.engine)
        if create:
            self.create()

    def create(self) -> None:
        """An empty store gets the newest schema; an older one is refused with `nudger db upgrade`."""
        from .schema import ensure

        try:
            ensure(self.engine, Base.metadata)
        except OperationalError as exc:
            raise NudgerError(f"the store cannot be opened: {exc.orig}") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s, s.begin():
            yield s

    # --- nudges ------------------------------------------------------------------------------
    def add_planned(self, nudges: Sequence[Any], now: datetime, held: dict[str, str] | None = None) -> int:
        """Store planned nudges; a key already in the ledger is left as it is. Returns how many are new.

        Keys in `held` (key -> why) are stored as `held` (the mass-send guard): they wait for a person.
        """
        if not nudges:
            return 0
        held = held or {}
        rows = [
            {
                "key": n.key,
                "rule_id": n.rule_id,
                "tenant_id": n.tenant_id,
                "kind": n.kind,
                "occurrence": n.occurrence,
                "state": HELD if n.key in held else PLANNED if n.status == "planned" else n.status,
                "send_at": n.send_at,
                "expires_at": n.expires_at,
                "priority": n.priority,
                "attempts": 0,
                "reason": held.get(n.key, n.reason),
                "tried_channels": [],
                "created_at": now,
                "updated_at": now,
            }
            for n in nudges
            if n.status in ("planned", "expired")
        ]
        added = 0
        with self.session() as s:
            for start in range(0, len(rows), 2000):
                chunk = rows[start : start + 2000]
                added += self._insert_new(s, Nudge.__table__, chunk, ["key"])
        return added

    def _insert_new(self, s: Session, table: Any, rows: list[dict[str, Any]], conflict: list[str] | None) -> int:
        """INSERT ... ON CONFLICT DO NOTHING for many rows, compiled once; returns how many were new."""
        if not rows:
            return 0
        stmt = self.insert(table).on_conflict_do_nothing(index_elements=conflict).returning(table.c.id)
        return len(s.connection().execute(stmt, rows).all())

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        with self.session() as s:
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                found.update(s.scalars(select(Nudge.key).where(Nudge.key.in_(chunk))))
        return found

    def claim_due(
        self, now: datetime, worker: str, *, limit: int = 50, lease: timedelta, keys: Iterable[str] | None = None
    ) -> list[Claimed]:
        """Claim nudges that are due, highest priority first. A claim is a conditional update."""
        with self.session() as s:
            q = (
                select(Nudge.id)
                .where(Nudge.state == PLANNED, Nudge.send_at <= now)
                .order_by(Nudge.priority.desc(), Nudge.send_at, Nudge.id)
                .limit(limit)
            )
            if keys is not None:
                q = q.where(Nudge.key.in_(list(keys)))
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            ids = list(s.scalars(q))
            if not ids:
                return []
            s.execute(
                update(Nudge)
                .where(Nudge.id.in_(ids), Nudge.state == PLANNED)
                .values(
                    state=CLAIMED, claimed_by=worker, claimed_until=now + lease, send_started_at=None, updated_at=now
                )
            )
            rows = s.scalars(
                select(Nudge).where(Nudge.id.in_(ids), Nudge.state == CLAIMED, Nudge.claimed_by == worker)
            ).all()
            for r in rows:
                s.add(
                    Transition(
                        nudge_id=r.id, at=now, from_state=PLANNED, to_state=CLAIMED, reason=f"claimed by {worker}"
                    )
                )
            rows = sorted(rows, key=lambda r: (-r.priority, r.send_at, r.id))
            return [
                Claimed(
                    r.id,
                    r.key,
                    r.rule_id,
                    r.tenant_id,
                    r.kind,
                    r.occurrence,
                    r.send_at,
                    r.expires_at,
                    r.priority,
                    r.attempts,
                    tuple(r.tried_channels or ()),
                )
                for r in rows
            ]

    def mark_sending(self, nudge_id: int, now: datetime, channel: str, worker: str, lease: timedelta) -> bool:
        """Record that the message is being handed to the channel: after this, a crash is `uncertain`.

        Only while this worker still holds the claim (it renews the lease); False means the claim
        was lost (its lease ran out and another process released it): the message must not go.
        """
        with self.session() as s:
            stmt = (
                update(Nudge)
                .where(Nudge.id == nudge_id, Nudge.state == CLAIMED, Nudge.claimed_by == worker)
                .values(send_started_at=now, channel=channel, updated_at=now, claimed_until=now + lease)
                .returning(Nudge.id)
            )
            return bool(s.execute(stmt).all())

    def move(
        self,
        nudge_id: int,
        to_state: str,
        now: datetime,
        reason: str = "",
        *,
        channel: str | None = None,
        expect: str | tuple[str, ...] | None = CLAIMED,
        worker: str | None = None,
        **fields: Any,
    ) -> bool:
        """Change a nudge's state and record the transition; with `expect`, only from that state
        (or one of those), and from `claimed` only by the `worker` holding the claim. The change is a
        conditional update: if another process changed the row in between, nothing happens and
        False comes back."""
        expects = (expect,) if isinstance(expect, str) else expect
        values: dict[str, Any] = {"state": to_state, "reason": reason, "updated_at": now, **fields}
        if to_state != CLAIMED:
            values.update(claimed_by=None, claimed_until=None, send_started_at=None)
        if channel is not None:
            values["channel"] = channel
        with self.session() as s:
            if expects is not None and len(expects) == 1:
                current = expects[0]  # the usual case: the update's condition is the check
            else:
                current = s.scalar(select(Nudge.state).where(Nudge.id == nudge_id))
                if current is None or (expects is not None and current not in expects):
                    return False
            stmt = update(Nudge).where(Nudge.id == nudge_id, Nudge.state == current)
            if worker is not None and current == CLAIMED:  # a claim is changed only by its own worker
                stmt = stmt.where(Nudge.claimed_by == worker)
            stmt = stmt.values(**values)
            if not s.execute(stmt.returning(Nudge.id)).all():
                return False
            s.add(
                Transition(
                    nudge_id=nudge_id, at=now, from_state=current, to_state=to_state, channel=channel, reason=reason
                )
            )
            return True

    def claimers(self) -> set[str]:
        """The workers holding claims right now."""
        with self.session() as s:
            return set(s.scalars(select(Nudge.claimed_by).where(Nudge.state == CLAIMED).distinct())) - {None}

    def recover(self, now: datetime, dead: Iterable[str] = ()) -> tuple[int, int]:
        """Claims whose lease ran out (their daemon died): back to planned if nothing was handed
        over yet, else `uncertain`. Each row changes only if it is still such a claim at that
        moment (a conditional update), so a live worker's claim is never taken from under it.
        Returns (released, uncertain).
        """
        released = uncertain = 0
        dead = list(dead)
        gone = Nudge.claimed_by.in_(dead) if dead else false()
        outcomes = (
            (Nudge.send_started_at.is_(None), PLANNED, "released: the daemon stopped before handing it over"),
            (
                Nudge.send_started_at.is_not(None),
                UNCERTAIN,
                "the daemon stopped while handing it to the channel; it may or may not have gone: "
                "check with the tenant, never resent",
            ),
        )
        with self.session() as s:
            for started, to, reason in outcomes:
                stmt = (
                    update(Nudge)
                    .where(Nudge.state == CLAIMED, (Nudge.claimed_until < now) | gone, started)
                    .values(state=to, reason=reason, updated_at=now, claimed_by=None, claimed_until=None)
                    .returning(Nudge.id, Nudge.channel)
                )
                rows = s.execute(stmt).all()
                for nudge_id, channel in rows:
                    s.add(
                        Transition(
                            nudge_id=nudge_id, at=now, from_state=CLAIMED, to_state=to, channel=channel, reason=reason
                        )
                    )
                if to == PLANNED:
                    released += len(rows)
                else:
                    uncertain += len(rows)
        return released, uncertain

    # --- the mass-send guard --------------------------------------------------------------------
    def day_load(self, start: datetime, end: datetime) -> list[tuple[str, str, datetime]]:
        """(tenant, rule, moment) of tenant-facing nudges that are planned, held or gone out between
        start and end: what a day already reaches, for the mass-send guard."""
        live = (PLANNED, HELD, CLAIMED, SENT, DELIVERED, READ, UNCERTAIN)
        at = func.coalesce(Nudge.sent_at, Nudge.send_at)
        with self.session() as s:
            q = select(Nudge.tenant_id, Nudge.rule_id, at).where(
                Nudge.kind != "task", Nudge.state.in_(live), at >= start, at < end
            )
            return [(t, r, a.replace(tzinfo=UTC) if a.tzinfo is None else a) for t, r, a in s.execute(q)]

    def released(self) -> frozenset[tuple[str, date]]:
        """(rule, day) pairs a person let go with `nudger release`: the guard does not hold them again."""
        with self.session() as s:
            keys = s.scalars(select(Meta.key).where(Meta.key.like("released:%")))
            out = set()
            for key in keys:
                _, rule, day = key.split(":", 2)
                out.add((rule, date.fromisoformat(day)))
            return frozenset(out)

    def release(self, rule_id: str, days: set[date] | None, zone: Any, now: datetime) -> int:
        """`nudger release`: held nudges of a rule (on these local days, or all) become planned."""
        return self._let_held(rule_id, days, zone, now, PLANNED, "released by a person (nudger release)", True)

    def cancel_held(self, rule_id: str, days: set[date] | None, zone: Any, now: datetime) -> int:
        """`nudger cancel`: held nudges of a rule (on these local days, or all) are dropped."""
        return self._let_held(rule_id, days, zone, now, CANCELLED, "cancelled by a person (nudger cancel)", False)

    def _let_held(
        self, rule_id: str, days: set[date] | None, zone: Any, now: datetime, to: str, reason: str, remember: bool
    ) -> int:
        rows = self.nudges(states=[HELD], rule_id=rule_id)
        chosen = [r for r in rows if days is None or (r.send_at and r.send_at.astimezone(zone).date() in days)]
        moved = sum(self.move(r.id, to, now, reason, expect=HELD) for r in chosen)
        if remember:
            for d in days if days is not None else {r.send_at.astimezone(zone).date() for r in chosen if r.send_at}:
                self.set_setting(f"released:{rule_id}:{d.isoformat()}", now.isoformat())
        return moved

    def held_by_rule(self) -> dict[str, int]:
        """How many nudges the mass-send guard holds, per rule (for /healthz)."""
        with self.session() as s:
            q = select(Nudge.rule_id, func.count()).where(Nudge.state == HELD).group_by(Nudge.rule_id)
            return dict(s.execute(q).all())

    def expire_held(self, now: datetime) -> int:
        """Held nudges nobody released before they expired: `expired`, with the reason."""
        reason = "held by the mass-send guard until it expired; nobody released it"
        with self.session() as s:
            stmt = (
                update(Nudge)
                .where(Nudge.state == HELD, Nudge.expires_at <= now)
                .values(state=EXPIRED, reason=reason, updated_at=now)
                .returning(Nudge.id)
            )
            ids = [i for (i,) in s.execute(stmt).all()]
            for i in ids:
                s.add(Transition(nudge_id=i, at=now, from_state=HELD, to_state=EXPIRED, reason=reason))
            return len(ids)

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(state, channel, rule, how many) over the whole ledger, for /metrics."""
        with self.session() as s:
            q = select(Nudge.state, Nudge.channel, Nudge.rule_id, func.count()).group_by(
                Nudge.state, Nudge.channel, Nudge.rule_id
            )
            return [(st, ch or "", rule, n) for st, ch, rule, n in s.execute(q)]

    # --- work only one daemon should do ---------------------------------------------------------
    @contextmanager
    def exclusive(self, name: str, *, wait: bool = False) -> Iterator[bool]:
        """Try to become the one process doing `name` (the import, planning): yields True if this
        process got it, False if another one is at it right now (with `wait`, waits its turn and
        always yields True). PostgreSQL: a session-level advisory lock, freed when the work ends or
        the process dies. SQLite: one daemon per store anyway."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        key = int.from_bytes(hashlib.sha256(f"nudger:{name}".encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                got = True
            else:
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def live_keys(self, now: datetime) -> set[str]:
        """Keys of nudges that have not expired: planning them again must leave them alone."""
        with self.session() as s:
            return set(s.scalars(select(Nudge.key).where(Nudge.expires_at > now)))

    def movable(self, now: datetime, tenant_ids: Iterable[str] | None = None) -> dict[str, datetime | None]:
        """Planned nudges never tried yet (key -> slot): each planning run may give them a new slot."""
        with self.session() as s:
            q = select(Nudge.key, Nudge.send_at).where(
                Nudge.state == PLANNED, Nudge.attempts == 0, Nudge.expires_at > now
            )
            if tenant_ids is not None:
                q = q.where(Nudge.tenant_id.in_(list(tenant_ids)))
            return dict(s.execute(q).all())

    def replan(self, key: str, send_at: datetime | None, state: str, reason: str, now: datetime) -> bool:
        """Give a planned, never-tried nudge its new slot (or expire it), recorded as a transition."""
        with self.session() as s:
            q = select(Nudge).where(Nudge.key == key, Nudge.state == PLANNED, Nudge.attempts == 0)
            if self.engine.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            row = s.scalars(q).first()
            if row is None:
                return False
            s.add(Transition(nudge_id=row.id, at=now, from_state=PLANNED, to_state=state, reason=reason))
            row.state, row.reason, row.updated_at = state, reason, now
            if send_at is not None:
                row.send_at = send_at
            return True

    def booked(self, now: datetime, tenant_ids: Iterable[str] | None = None) -> dict[str, list[datetime]]:
        """Per tenant, what keeps its place: messages sent in the last 7 days, claimed or held ones, and
        retries. (Planned nudges that were never tried are planned again, so priorities can move them.)"""
        since = now - timedelta(days=7)
        out: dict[str, list[datetime]] = {}
        with self.session() as s:
            q = select(Nudge.tenant_id, Nudge.state, Nudge.send_at, Nudge.sent_at).where(
                Nudge.kind != "task",
                ((Nudge.state.in_((HELD, CLAIMED))) & (Nudge.send_at.is_not(None)))
                | ((Nudge.state == PLANNED) & (Nudge.attempts > 0))
                | ((Nudge.state.in_((SENT, DELIVERED, READ, UNCERTAIN))) & (Nudge.sent_at >= since)),
            )
            if tenant_ids is not None:
                q = q.where(Nudge.tenant_id.in_(list(tenant_ids)))
            for tid, state, send_at, sent_at in s.execute(q):
                at = sent_at if state in (SENT, DELIVERED, READ, UNCERTAIN) else send_at
                if at is not None:
                    out.setdefault(tid, []).append(at)
        return out

    # --- settings kept in the store (organisation-wide pause) --------------------------------
    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row is not None else None

    def set_setting(self, key: str, value: str | None) -> None:
        with self.session() as s:
            row = s.get(Meta, key)
            if value is None:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(Meta(key=key, value=value))
            else:
                row.value = value

    def sent_times(self, tenant_id: str, since: datetime) -> list[datetime]:
        """When tenant-facing messages went to this tenant since `since` (tasks do not count)."""
        with self.session() as s:
            sent = select(Nudge.sent_at).where(
                Nudge.tenant_id == tenant_id,
                Nudge.kind != "task",
                Nudge.sent_at >= since,
                Nudge.state.in_((SENT, DELIVERED, READ, UNCERTAIN)),
            )
            # being handed over right now by another worker counts too (several daemons)
            in_hand = select(Nudge.send_started_at).where(
                Nudge.tenant_id == tenant_id,
                Nudge.kind != "task",
                Nudge.state == CLAIMED,
                Nudge.send_started_at >= since,
            )
            return [t for t in [*s.scalars(sent), *s.scalars(in_hand)] if t is not None]

    def nudges(
        self,
        *,
        tenant_id: str | None = None,
        states: Iterable[str] | None = None,
        rule_id: str | None = None,
        limit: int | None = None,
    ) -> list[Nudge]:
        with self.session() as s:
            q = select(Nudge).order_by(Nudge.created_at, Nudge.id)
            if tenant_id is not None:
                q = q.where(Nudge.tenant_id == tenant_id)
            if states is not None:
                q = q.where(Nudge.state.in_(list(states)))
            if rule_id is not None:
                q = q.where(Nudge.rule_id == rule_id)
            if limit is not None:
                q = q.limit(limit)
            return list(s.scalars(q))

    def transitions(self, nudge_ids: Iterable[int]) -> dict[int, list[Transition]]:
        out: dict[int, list[Transition]] = {}
        ids = list(nudge_ids)
        with self.session() as s:
            for start in range(0, len(ids), 900):
                q = (
                    select(Transition)
                    .where(Transition.nudge_id.in_(ids[start : start + 900]))
                    .order_by(Transition.at, Transition.id)
                )
                for t in s.scalars(q):
                    out.setdefault(t.nudge_id, []).append(t)
        return out

    # --- events ------------------------------------------------------------------------------
    def add_events(self, rows: Sequence[dict[str, Any]], now: datetime) -> int:
        if not rows:
            return 0
        values = [{"count": 0, "previous": None, "note": "", **r, "created_at": now} for r in rows]
        for v in values:
            v["count"] = v["count"] or 0
        added = 0
        with self.session() as s:
            for start in range(0, len(values), 2000):
                added += self._insert_new(s, EventRow.__table__, values[start : start + 2000], None)
        return added

    def events_since(self, day: date, tenant_ids: Iterable[str] | None = None) -> list[EventRow]:
        with self.session() as s:
            q = select(EventRow).where(EventRow.day >= day).order_by(EventRow.day, EventRow.id)
            if tenant_ids is not None:
                q = q.where(EventRow.tenant_id.in_(list(tenant_ids)))
            return list(s.scalars(q))

    def events_for(self, tenant_id: str) -> list[EventRow]:
        with self.session() as s:
            q = select(EventRow).where(EventRow.tenant_id == tenant_id).order_by(EventRow.day, EventRow.id)
            return list(s.scalars(q))

    def last_contacts(self, tenant_ids: Iterable[str] | None = None) -> dict[str, date]:
        with self.session() as s:
            q = (
                select(EventRow.tenant_id, func.max(EventRow.day))
                .where(EventRow.name == "contact_made")
                .group_by(EventRow.tenant_id)
            )
            if tenant_ids is not None:
                q = q.where(EventRow.tenant_id.in_(list(tenant_ids)))
            return dict(s.execute(q).all())

    # --- imports and tenant state --------------------------------------------------------------
    def last_accepted_import(self) -> Snapshot | None:
        with self.session() as s:
            q = select(Snapshot).where(Snapshot.status == "accepted").order_by(Snapshot.id.desc()).limit(1)
            return s.scalars(q).first()

    def record_import(self, **fields: Any) -> int:
        with self.session() as s:
            snap = Snapshot(**fields)
            s.add(snap)
            s.flush()
            return snap.id

    def tenant_summaries(self) -> dict[str, tuple[str, dict[str, Any], date]]:
        """tenant id -> (digest, summary, day of the import that stored it), for present tenants."""
        with self.session() as s:
            q = select(TenantState.tenant_id, TenantState.digest, TenantState.summary, TenantState.day).where(
                TenantState.present == 1
            )
            return {tid: (digest, json.loads(summary), day) for tid, digest, summary, day in s.execute(q)}

    def save_tenants(
        self,
        import_id: int,
        day: date,
        changed: Sequence[tuple[str, str, str, str, str | None]],
        present: set[str],
        *,
        known: set[str],
    ) -> None:
        """Upsert changed tenants (id, digest, record json, summary json, mobile); mark the missing ones absent."""
        with self.session() as s:
            if changed:
                stmt = self.insert(TenantState.__table__)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["tenant_id"],
                    set_={c: stmt.excluded[c] for c in ("import_id", "day", "digest", "record", "summary", "phone")}
                    | {"present": 1},
                )
                rows = [
                    {
                        "tenant_id": t,
                        "import_id": import_id,
                        "day": day,
                        "digest": d,
                        "record": r,
                        "summary": m,
                        "phone": ph,
                        "present": 1,
                    }
                    for t, d, r, m, ph in changed
                ]
                conn = s.connection()
                for start in range(0, len(rows), 5000):
                    conn.execute(stmt, rows[start : start + 5000])
            gone = known - present
            gone_list = list(gone)
            for start in range(0, len(gone_list), 900):
                s.execute(
                    update(TenantState)
                    .where(TenantState.tenant_id.in_(gone_list[start : start + 900]))
                    .values(present=0)
                )

    def tenant_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(TenantState.tenant_id).where(TenantState.present == 1)))

    def tenant_records(self, tenant_ids: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.session() as s:
            q = select(TenantState.tenant_id, TenantState.record).where(TenantState.present == 1)
            if tenant_ids is not None:
                q = q.where(TenantState.tenant_id.in_(list(tenant_ids)))
            for tid, record in s.execute(q).yield_per(2000):
                yield tid, json.loads(record)

    def tenant_by_phone(self, e164: str) -> str | None:
        with self.session() as s:
            q = select(TenantState.tenant_id).where(TenantState.phone == e164, TenantState.present == 1)
            return s.scalars(q.limit(1)).first()

    # --- what comes back: inbound messages, receipts ------------------------------------------
    def record_inbound(self, tenant_id: str, channel: str, at: datetime) -> None:
        with self.session() as s:
            row = s.get(Inbound, (tenant_id, channel))
            if row is None:
                s.add(Inbound(tenant_id=tenant_id, channel=channel, at=at))
            elif row.at < at:
                row.at = at

    def last_inbound(self, tenant_id: str, channel: str) -> datetime | None:
        with self.session() as s:
            row = s.get(Inbound, (tenant_id, channel))
            return row.at if row is not None else None

    def by_receipt(self, receipt: str) -> Nudge | None:
        with self.session() as s:
            return s.scalars(select(Nudge).where(Nudge.receipt == receipt).limit(1)).first()

    # --- opt-outs ----------------------------------------------------------------------------
    def opt_out(self, tenant_id: str, channel: str, now: datetime, source: str) -> bool:
        with self.session() as s:
            stmt = self.insert(OptOut).values(tenant_id=tenant_id, channel=channel, at=now, source=source)
            return bool(s.execute(stmt.on_conflict_do_nothing().returning(OptOut.id)).all())

    def opt_in(self, tenant_id: str, channel: str) -> None:
        """START: the tenant wants this channel again (and is no longer out of every channel)."""
        with self.session() as s:
            for row in s.scalars(
                select(OptOut).where(OptOut.tenant_id == tenant_id, OptOut.channel.in_((channel, "all")))
            ):
                s.delete(row)

    def set_provider_status(self, nudge_id: int, status: str, code: str | None) -> None:
        with self.session() as s:
            row = s.get(Nudge, nudge_id)
            if row is not None:
                row.provider_status = f"{status} ({code})" if code else status

    def opted_out_many(self, tenant_ids: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        with self.session() as s:
            for start in range(0, len(tenant_ids), 900):
                q = select(OptOut.tenant_id, OptOut.channel).where(
                    OptOut.tenant_id.in_(list(tenant_ids[start : start + 900]))
                )
                for tid, channel in s.execute(q):
                    out.setdefault(tid, set()).add(channel)
        return out

    def opted_out(self, tenant_id: str) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(OptOut.channel).where(OptOut.tenant_id == tenant_id)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def store_lock(url: str):
    """The file lock that keeps a second daemon off one SQLite file. None for other stores."""
    from filelock import FileLock, Timeout

    path = sqlite_path(url)
    if path is None:
        return None
    lock = FileLock(str(path) + ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StoreBusy(
            f"another nudger daemon is already running on {path.name}: stop it first, "
            "or use PostgreSQL (`store:` in config.yaml) to run several"
        ) from None
    return lock
