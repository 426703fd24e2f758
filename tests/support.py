"""Helpers for the end-to-end tests: a copy of the shipped example in a temporary folder, and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("NUDGER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_or_skip() -> str:
    """An empty PostgreSQL database for a test. PostgreSQL is required in CI (CI=true): there a
    missing server fails the test; elsewhere it skips with the reason."""
    import pytest
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {PG_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_URL} (set NUDGER_TEST_PG_URL): {type(exc).__name__}")
    return PG_URL


# Two officers who back each other up: the smallest officers.yaml for rulebooks built in a test.
OFFICERS_YAML = """\
fatima:
  name: Fatima el Amrani
  role: uw vaste contactpersoon
  phone: "+31 20 555 0101"
  backup: jan
jan:
  name: Jan de Boer
  backup: fatima
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def copy_example(dest: Path, **overrides: object) -> Path:
    """Copy config.yaml, rules/ and examples/ into `dest`; apply top-level config overrides."""
    shutil.copytree(ROOT / "rules", dest / "rules")
    shutil.copytree(ROOT / "examples", dest / "examples")
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["store"] = "sqlite:///var/nudger.db"
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    (dest / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest / "config.yaml"


def nudger(cwd: Path, *args: str, timeout: float = 120) -> Result:
    """Run the real command line in `cwd`, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "nudger.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def outbox_files(folder: Path) -> list[Path]:
    box = folder / "var" / "outbox"
    return sorted(p for p in box.rglob("*") if p.is_file()) if box.exists() else []
