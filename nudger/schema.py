"""The ledger's schema and its migrations (Alembic, for SQLite and PostgreSQL).

A new, empty store is made at the newest schema and stamped with it. A store made by an older
nudger is never changed behind anyone's back: every command (and the daemon) refuses to use it and
names the command that upgrades it, `nudger db upgrade`, to be run after a backup.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from .errors import NudgerError

MIGRATIONS = Path(__file__).parent / "migrations"
BEFORE_MIGRATIONS = "0001"  # what a store of nudger 0.1 (schema_version 3, no alembic_version) is


class SchemaOutdated(NudgerError):
    exit_code = 4


def alembic_config(conn: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def _serialised(conn: Connection) -> None:
    """Two daemons starting on one new PostgreSQL store: one makes the schema, the other waits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7368657201)"))


def current(conn: Connection) -> str | None:
    """The store's revision; BEFORE_MIGRATIONS for a store of nudger 0.1; None for an empty store."""
    tables = set(inspect(conn).get_table_names())
    if "nudges" not in tables:
        return None
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is not None:
        return rev
    if "nudger_meta" in tables:
        row = conn.execute(text("SELECT value FROM nudger_meta WHERE key = 'schema_version'")).first()
        if row is not None and row[0] == "3":
            return BEFORE_MIGRATIONS
    raise NudgerError(
        "the store holds tables that nudger does not know (no schema version): point `store:` in "
        "config.yaml at nudger's own database"
    )


def ensure(engine: Engine, metadata) -> None:
    """Make an empty store at the newest schema; refuse an older or newer one with what to do."""
    script = ScriptDirectory.from_config(alembic_config())
    newest = script.get_current_head()
    with engine.begin() as conn:
        _serialised(conn)
        rev = current(conn)
        if rev is None:
            metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(script, "head")
            return
    if rev == newest:
        return
    known = {r.revision for r in script.walk_revisions()}
    if rev in known:
        raise SchemaOutdated(
            f"the store's schema is at revision {rev}, this nudger needs {newest}: back up the store, "
            "then run `nudger db upgrade` (see docs/operations.md, Upgrades)"
        )
    raise NudgerError(
        f"the store's schema (revision {rev}) is newer than this nudger knows (it knows up to {newest}): "
        "upgrade nudger on this machine"
    )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """`nudger db upgrade`: run the migrations this store has not had. Returns (from, to)."""
    with engine.begin() as conn:
        _serialised(conn)
        before = current(conn)
        cfg = alembic_config(conn)
        if before is None:
            command.upgrade(cfg, "head")
        else:
            if MigrationContext.configure(conn).get_current_revision() is None:
                command.stamp(cfg, before)  # a store of nudger 0.1: it is revision 0001
            command.upgrade(cfg, "head")
        after = MigrationContext.configure(conn).get_current_revision() or ""
    return before, after
