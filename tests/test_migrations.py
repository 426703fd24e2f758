"""Schema changes are Alembic migrations, on SQLite and PostgreSQL; an old store is refused with
the command that upgrades it, and upgrading keeps every row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from support import copy_example, nudger, postgres_or_skip

from nudger.ledger import Base, Ledger
from nudger.planner import PlannedNudge
from nudger.schema import alembic_config, head

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else postgres_or_skip()


def migrate(url: str, to: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), to)
    engine.dispose()


def test_the_migrations_build_exactly_the_schema_the_code_uses(url: str) -> None:
    migrate(url, "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert MigrationContext.configure(conn).get_current_revision() == head()
    engine.dispose()
    assert diffs == []


def test_a_new_store_is_made_at_the_newest_schema(url: str) -> None:
    Ledger(url).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head()
    engine.dispose()


def test_an_old_store_is_refused_until_upgraded_and_keeps_its_rows(url: str) -> None:
    migrate(url, "0001")  # a store as nudger 0.1 made it
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nudges (key, rule_id, tenant_id, kind, occurrence, state, send_at, expires_at,"
                " priority, attempts, reason, created_at, updated_at) VALUES ('r:T-1:2026-12-01', 'r', 'T-1',"
                " 'reminder', '2026-12-01', 'planned', :at, :exp, 50, 0, '', :at, :at)"
            ),
            {"at": NOW.replace(tzinfo=None), "exp": (NOW + timedelta(days=1)).replace(tzinfo=None)},
        )
    engine.dispose()
    with pytest.raises(Exception, match=r"revision 0001.*nudger db upgrade"):
        Ledger(url)
    from nudger.schema import upgrade

    store = Ledger(url, create=False)
    assert upgrade(store.engine) == ("0001", head())
    assert upgrade(store.engine) == (head(), head())  # twice is harmless
    store.close()
    store = Ledger(url)
    assert [n.key for n in store.nudges()] == ["r:T-1:2026-12-01"]
    store.add_planned([PlannedNudge("r:T-2:x", "r", "T-2", "reminder", "x", NOW, NOW + timedelta(days=1), 50)], NOW)
    assert len(store.nudges()) == 2
    store.close()


def test_a_store_from_before_migrations_is_recognised(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # nudger 0.1 kept only schema_version = 3
    engine.dispose()
    with pytest.raises(Exception, match="nudger db upgrade"):
        Ledger(url)
    from nudger.schema import upgrade

    store = Ledger(url, create=False)
    assert upgrade(store.engine) == ("0001", head())
    store.close()
    Ledger(url).close()


def test_a_newer_store_asks_for_a_newer_nudger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    Ledger(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with pytest.raises(Exception, match="newer than this nudger"):
        Ledger(url)


def test_the_daemon_and_commands_refuse_an_old_store_and_db_upgrade_fixes_it(tmp_path: Path) -> None:
    copy_example(tmp_path)
    (tmp_path / "var").mkdir()
    migrate(f"sqlite:///{tmp_path / 'var' / 'nudger.db'}", "0001")
    for args in (("run",), ("run", "--once", "--now", "2026-11-30T10:00"), ("plan",)):
        refused = nudger(tmp_path, *args, timeout=60)
        assert refused.code == 4, refused.text
        assert "nudger db upgrade" in refused.err and "Traceback" not in refused.text
    assert "0001" in nudger(tmp_path, "db", "current").out
    upgraded = nudger(tmp_path, "db", "upgrade")
    assert upgraded.code == 0 and f"from 0001 to revision {head()}" in upgraded.out, upgraded.text
    assert "up to date" in nudger(tmp_path, "db", "upgrade").out
    done = nudger(tmp_path, "run", "--once", "--now", "2026-11-30T10:00")
    assert done.code == 0 and "imported 64 tenants" in done.out, done.text
