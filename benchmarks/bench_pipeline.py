"""End-to-end benchmark of the nudger pipeline: import, plan, unchanged re-import, plan, dispatch.

Run it from anywhere with the Python that has nudger installed:

  python benchmarks/bench_pipeline.py --tenants 100000

It generates synthetic data with ``benchmarks/make_data.py`` into a temporary folder, writes a
config.yaml there (the repository's config with the data, store, var_dir and rules pointed at the
temporary folder and the repository's ``rules/``), and runs every step in a fresh Python process
with a fixed clock (Monday 2026-11-30 10:00 Europe/Amsterdam), so each step's peak RSS is its own.
The steps share the SQLite store in the temporary folder, like successive ``nudger`` commands do;
with ``--store postgresql`` they share a PostgreSQL database instead (its public schema is emptied
before each pass), so the two stores can be compared on the same data.

Per step it records the wall-clock time of the engine call (``time.perf_counter``), the process's
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the interpreter and its
imports, shown separately as "RSS before") and the counts the engine returned.  The results are
printed and written to ``benchmarks/RESULTS.md`` (the section for this tenant count is replaced).

When a target from the issue is missed, a second, diagnostic pass replays the pipeline in a new
store and runs the offending steps under cProfile (time) or tracemalloc (memory); the top
functions are written to RESULTS.md as well.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"

# Targets from the issue.
TARGET_IMPORT_S = 30.0
TARGET_PLAN_S = 10.0
TARGET_PEAK_MB = 1024.0

STEPS = ("import", "plan", "reimport", "replan", "dispatch")
STEP_TITLES = {
    "generate": "generate data (make_data.py)",
    "import": "(a) first import",
    "plan": "(b) plan",
    "reimport": "(c) unchanged re-import",
    "replan": "(d) plan again",
    "dispatch": "(e) dispatch one batch",
}

# What a run copies from the repository (see snapshot_code).
SNAPSHOT_PATHS = ("nudger", "channels", "rules", "config.yaml", "benchmarks/make_data.py")

# PostgreSQL for --store postgresql: a database of its own on the project's server (created when
# missing), as the tests empty the `test` database's public schema whenever they start.
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/nudger_bench"

# The fixed clock: a Monday within office hours, the reference day of make_data.py.
CLOCK = (2026, 11, 30, 10, 0)
REFERENCE_DAY = date(2026, 11, 30)


# ------------------------------------------------------------------------------------------------
# Child: one step in a fresh process
# ------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _report_counts(step: str, result: Any, engine: Any) -> dict[str, Any]:
    if step in ("import", "reimport"):
        return {
            "tenants": result.tenants,
            "payments": result.payments,
            "changed": result.changed,
            "events": result.events,
            "rows_skipped": len(result.problems),
            "notes": len(result.notes),
        }
    if step in ("plan", "replan"):
        nudges, added = result
        statuses: dict[str, int] = {}
        for n in nudges:
            statuses[n.status] = statuses.get(n.status, 0) + 1
        return {"planned": len(nudges), "added": added, "statuses": statuses}
    if step == "dispatch":
        counts = {
            k: getattr(result, k) for k in ("sent", "failed", "expired", "cancelled", "moved", "retry", "released")
        }
        reasons: dict[str, int] = {}
        for r in result.results:
            if r["outcome"] != "sent":
                why = f"{r['outcome']}: {r['reason']}"[:120]
                reasons[why] = reasons.get(why, 0) + 1
        if reasons:
            counts["not_sent"] = reasons
        # What the channels wrote (outbox, print spool, call lists), per folder under var_dir.
        var = engine.config.var_path
        files: dict[str, int] = {}
        for f in var.rglob("*") if var.exists() else ():
            if f.is_file():
                folder = str(f.parent.relative_to(var)) if f.parent != var else "."
                files[folder] = files.get(folder, 0) + 1
        counts["files"] = files
        return counts
    return {}


def run_child(args: argparse.Namespace) -> None:
    """Run one step and write a JSON report to args.child_out."""
    started = time.perf_counter()
    out: dict[str, Any] = {"step": args.child}
    if args.child == "generate":
        snapshot = Path(os.environ.get("NUDGER_BENCH_SRC", "")) / "benchmarks"
        sys.path.insert(0, str(snapshot if (snapshot / "make_data.py").exists() else HERE))
        from make_data import generate

        rss_before = _rss_mb()
        out["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        generate(args.tenants, Path(args.data_dir), seed=args.seed, reference_day=REFERENCE_DAY, months=24)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        data_dir = Path(args.data_dir)
        with open(data_dir / "payments.csv", encoding="utf-8") as handle:
            payments = sum(1 for _ in handle) - 1
        out.update(
            wall=wall,
            rss_before_mb=rss_before,
            counts={
                "tenants": args.tenants,
                "payment_rows": payments,
                "csv_mb": round(sum(p.stat().st_size for p in data_dir.glob("*.csv")) / 2**20, 1),
            },
        )
    else:
        from zoneinfo import ZoneInfo

        from nudger.config import load_config
        from nudger.engine import Engine

        config = load_config(args.config)
        zone = ZoneInfo("Europe/Amsterdam")
        engine = Engine(config, clock=lambda: datetime(*CLOCK, tzinfo=zone))
        step = args.child
        call = {
            "import": lambda: engine.import_data(),
            "reimport": lambda: engine.import_data(),
            "plan": lambda: engine.plan(),
            "replan": lambda: engine.plan(),
            "dispatch": lambda: engine.dispatch(limit=args.dispatch_limit),
        }[step]
        rss_before = _rss_mb()
        profiler = None
        sampler = None
        if args.child_mode == "tracemalloc":
            import tracemalloc

            tracemalloc.start(args.trace_frames)
            sampler = _PeakSampler(args.top)
        elif args.child_mode == "cprofile":
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = call()
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        out["load"] = load
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.child_out + ".prof")
            out["profile"] = _profile_summary(profiler, args.top)
        if sampler is not None:
            import tracemalloc

            sampler.finish()
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out["tracemalloc"] = {"peak_mb": peak / 2**20, "snapshot_mb": sampler.snap_mb, "top_lines": sampler.top}
        out.update(wall=wall, rss_before_mb=rss_before, counts=_report_counts(step, result, engine))
        import channels
        import nudger

        out["code"] = [str(Path(nudger.__file__).parent), str(Path(channels.__file__).parent)]
        try:
            out["ledger_states"] = engine.ledger.state_counts()
        except Exception as exc:  # informational only
            out["ledger_states"] = {"error": repr(exc)}
        engine.close()
        out["db_mb"] = store_mb(config.store_url)
    out["peak_rss_mb"] = _rss_mb()
    out["process_s"] = time.perf_counter() - started
    Path(args.child_out).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")


def store_mb(url: str) -> float:
    """The store's size: the SQLite file (with -wal and -shm), or PostgreSQL's tables with their indexes
    and TOAST (pg_total_relation_size over the public schema)."""
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return round(sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20, 1)
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
                )
            ).scalar()
    finally:
        engine.dispose()
    return round(float(size or 0) / 2**20, 1)


def reset_postgres(url: str) -> None:
    """Create the database when missing, then empty its public schema."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(database="postgres"))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    except Exception as exc:  # noqa: BLE001 - informational
        return f"unknown ({type(exc).__name__})"
    finally:
        engine.dispose()


class _PeakSampler:
    """Under tracemalloc, snapshot the allocation sites whenever traced memory reaches a new high.

    A snapshot at the end of a step shows only what survives it; the peak is what counts. A thread
    polls the traced size and takes a snapshot each time it is 1.5 times the last one (from 16 MB
    on), so the last snapshot is within that factor of the peak. Snapshots are slow and big; this
    is for the diagnostic pass only.
    """

    def __init__(self, top: int):
        import threading

        self.top_n = top
        self.top: list[dict[str, Any]] = []
        self.snap_mb = 0.0
        self._next = 16 * 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _take(self, current: int) -> None:
        import linecache
        import tracemalloc

        stats = tracemalloc.take_snapshot().statistics("lineno")
        self.top = [
            {
                "where": _short(str(st.traceback[0].filename)) + f":{st.traceback[0].lineno}",
                "code": linecache.getline(st.traceback[0].filename, st.traceback[0].lineno).strip()[:90],
                "mb": st.size / 2**20,
                "count": st.count,
            }
            for st in stats[: self.top_n]
        ]
        self.snap_mb = current / 2**20
        self._next = int(current * 1.5)

    def _run(self) -> None:
        import tracemalloc

        while not self._stop.wait(0.05):
            current, _ = tracemalloc.get_traced_memory()
            if current >= self._next:
                self._take(current)

    def finish(self) -> None:
        import tracemalloc

        self._stop.set()
        self._thread.join()
        if not self.top:  # never reached 16 MB: the end of the step will do
            self._take(tracemalloc.get_traced_memory()[0])


def _short(filename: str) -> str:
    roots = [os.environ.get("NUDGER_BENCH_SRC", ""), str(REPO)]
    roots += [p for p in sys.path if p.endswith("site-packages")]
    roots += [p for p in sys.path if p.endswith(("lib/python" + sys.version[:4], "lib/python" + sys.version[:5]))]
    for root in filter(None, roots):
        root = root.rstrip(os.sep) + os.sep
        if filename.startswith(root):
            return filename[len(root) :]
    return filename


def _profile_summary(profiler: Any, top: int) -> dict[str, list[dict[str, Any]]]:
    import pstats

    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == __file__:
            continue
        where = func if filename == "~" else f"{_short(filename)}:{line}({func})"
        rows.append({"function": where, "ncalls": nc, "tottime": tt, "cumtime": ct})
    ours = [r for r in rows if r["function"].startswith(("nudger/", "channels/"))]
    by_cum = sorted(ours, key=lambda r: r["cumtime"], reverse=True)[:top]
    by_cum_all = sorted(rows, key=lambda r: r["cumtime"], reverse=True)[: top * 2]
    by_tot = sorted(rows, key=lambda r: r["tottime"], reverse=True)[:top]
    return {"cumulative": by_cum, "cumulative_all": by_cum_all, "tottime": by_tot, "total": stats.total_tt}  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------
# Parent: orchestration
# ------------------------------------------------------------------------------------------------
def write_config(work: Path, data_dir: Path, name: str, store: str = "sqlite", pg_url: str = PG_URL) -> Path:
    import yaml

    code = json.loads((work / "src" / "code.json").read_text(encoding="utf-8"))
    raw = yaml.safe_load(code["config_yaml"])
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    raw["data"]["tenants"] = str(data_dir / "tenants.csv")
    raw["data"]["payments"] = str(data_dir / "payments.csv")
    raw["store"] = f"sqlite:///{root / 'bench.db'}" if store == "sqlite" else pg_url
    raw["var_dir"] = str(root / "var")
    raw["rules"] = code["rules"]
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def spawn(
    step: str, args: argparse.Namespace, work: Path, *, config: Path | None = None, mode: str = "plain", tag: str = ""
) -> dict[str, Any]:
    out = work / f"step-{tag}{step}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child", step,
        "--child-out", str(out),
        "--child-mode", mode,
        "--tenants", str(args.tenants),
        "--seed", str(args.seed),
        "--data-dir", str(work / "data"),
        "--dispatch-limit", str(args.dispatch_limit),
        "--top", str(args.top),
    ]  # fmt: skip
    if config is not None:
        cmd += ["--config", str(config)]
    label = STEP_TITLES[step] + ("" if mode == "plain" else f" [{mode}]")
    print(f"  {label} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        src = str(work / "src")
        env = dict(os.environ, NUDGER_BENCH_SRC=src)
        # Never send: drop the environment variables the config reads (credentials, SMTP host, ...),
        # so every channel falls back to its outbox as config.yaml describes. The store is set apart.
        for name in _config_env_names(work):
            env.pop(name, None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=str(work), env=env)
    except subprocess.TimeoutExpired as exc:
        print(f" TIMEOUT after {args.timeout} s")
        return {"step": step, "error": f"timed out after {args.timeout} s", "stderr": str(exc.stderr or "")[-3000:]}
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        print(f" FAILED (exit {proc.returncode})")
        return {"step": step, "error": f"exit status {proc.returncode}", "stderr": proc.stderr[-3000:]}
    rep = json.loads(out.read_text(encoding="utf-8"))
    rep["spawn_s"] = elapsed
    for where in rep.get("code", []):
        if not where.startswith(str(work / "src")):
            raise SystemExit(f"the step ran nudger from {where}, not from the snapshot in {work / 'src'}")
    print(
        f" {rep['wall']:.2f} s (CPU {rep.get('cpu_s', 0):.2f} s), peak RSS {rep['peak_rss_mb']:.0f} MB"
        f"  {json.dumps(rep.get('counts', {}))}"
    )
    return rep


def run_pass(
    args: argparse.Namespace, work: Path, name: str, modes: dict[str, str], upto: str | None = None
) -> dict[str, dict[str, Any]]:
    """Run the steps in a new store. modes: step -> plain|cprofile|tracemalloc."""
    config = write_config(work, work / "data", name, args.store, args.pg_url)
    if args.store == "postgresql":
        reset_postgres(args.pg_url)  # a new, empty store for this pass
    steps = [s for s in STEPS if s != "dispatch" or args.dispatch_limit > 0]
    if upto is not None:
        steps = steps[: steps.index(upto) + 1]
    results: dict[str, dict[str, Any]] = {}
    for step in steps:
        rep = spawn(step, args, work, config=config, mode=modes.get(step, "plain"), tag=f"{name}-")
        results[step] = rep
        if "error" in rep:
            break
    return results


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    try:
        import sqlalchemy

        sqla = sqlalchemy.__version__
    except ImportError:
        sqla = "?"

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqla,
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def _config_env_names(work: Path) -> set[str]:
    import re

    code = json.loads((work / "src" / "code.json").read_text(encoding="utf-8"))
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", code["config_yaml"]))


def _git(*a: str, binary: bool = False) -> Any:
    proc = subprocess.run(["git", *a], cwd=REPO, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace").strip())
    return proc.stdout if binary else proc.stdout.decode()


def snapshot_code(work: Path, which: str, rev: str = "HEAD") -> str:
    """Copy the engine (nudger/, channels/) into <work>/src, so every step runs the same code.

    Someone may be editing the repository during a run of several minutes. "head" takes the
    last commit (a consistent, named state), or the commit `rev`; "worktree" copies the working
    tree as it is now. Returns a description of what was measured.
    """
    import io
    import tarfile

    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    try:
        commit = _git("rev-parse", "--short", rev if which == "head" else "HEAD").strip()
        dirty = [line[3:] for line in _git("status", "--porcelain", "--", *SNAPSHOT_PATHS).splitlines()]
    except (OSError, RuntimeError, subprocess.SubprocessError):
        commit, dirty, which = "", [], "worktree"
    rules = str(REPO / "rules")
    if which == "head":
        archive = _git("archive", "--format=tar", rev, *SNAPSHOT_PATHS, binary=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
        config_yaml = (src / "config.yaml").read_text(encoding="utf-8")
        pinned = _git("rev-parse", rev).strip() != _git("rev-parse", "HEAD").strip()
        rules_dirty = [d for d in dirty if d.startswith("rules/")]
        if rules_dirty or pinned:
            # The working tree's rulebook may not match the committed engine: use the committed one.
            rules = str(src / "rules")
        if pinned:
            what = f"commit {commit} (`--commit {rev}`, not HEAD; extracted with git archive, rules/ from it too)"
        else:
            what = f"commit {commit} (HEAD, extracted with git archive)"
            if dirty:
                what += f"; not measured: uncommitted changes to {', '.join(dirty)}"
            if rules_dirty:
                what += "; rules/ from HEAD too, as the working tree's differ"
    else:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for pkg in ("nudger", "channels"):
            shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
        (src / "benchmarks").mkdir()
        shutil.copy2(HERE / "make_data.py", src / "benchmarks" / "make_data.py")
        config_yaml = (REPO / "config.yaml").read_text(encoding="utf-8")
        what = "the working tree" + (f" at {commit}" if commit else "")
        if dirty:
            what += f" with uncommitted changes to {', '.join(dirty)}"
    (src / "code.json").write_text(
        json.dumps({"config_yaml": config_yaml, "rules": rules, "what": what}), encoding="utf-8"
    )
    return what


def _fmt_counts(step: str, rep: dict[str, Any]) -> str:
    c = dict(rep.get("counts", {}))
    if "statuses" in c:
        st = c.pop("statuses")
        c["statuses"] = ", ".join(f"{k} {v}" for k, v in sorted(st.items()))
    if "files" in c:
        c["files"] = ", ".join(f"{k} {v:,}" for k, v in sorted(c["files"].items())) or "none"
    if "not_sent" in c:
        c["not_sent"] = "; ".join(f"{k} (x{v})" for k, v in c["not_sent"].items())
    parts = [f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in c.items() if k != "statuses"]
    if "statuses" in c:
        parts.append(f"({c['statuses']})")
    if "db_mb" in rep:
        parts.append(f"store {rep['db_mb']} MB")
    return "; ".join(parts)


def evaluate(res: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets of the issue, each with its figure and whether it was met."""
    ok = lambda s: s in res and "error" not in res[s]  # noqa: E731
    checks: list[dict[str, Any]] = []
    if ok("import"):
        w = res["import"]["wall"]
        checks.append(
            {
                "target": f"first import <= {TARGET_IMPORT_S:.0f} s",
                "figure": f"{w:.1f} s",
                "met": w <= TARGET_IMPORT_S,
                "step": "import",
                "kind": "time",
            }
        )
    for s in ("plan", "replan"):
        if ok(s):
            w = res[s]["wall"]
            checks.append(
                {
                    "target": f"{STEP_TITLES[s][4:]} <= {TARGET_PLAN_S:.0f} s",
                    "figure": f"{w:.1f} s",
                    "met": w <= TARGET_PLAN_S,
                    "step": s,
                    "kind": "time",
                }
            )
    peaks = {s: r["peak_rss_mb"] for s, r in res.items() if "error" not in r and s != "generate"}
    if peaks:
        worst = max(peaks, key=lambda s: peaks[s])
        checks.append(
            {
                "target": f"peak memory <= {TARGET_PEAK_MB:.0f} MB (every step)",
                "figure": f"{peaks[worst]:.0f} MB ({STEP_TITLES[worst][4:]})",
                "met": peaks[worst] <= TARGET_PEAK_MB,
                "step": worst,
                "kind": "memory",
                "over": [s for s, p in peaks.items() if p > TARGET_PEAK_MB],
            }
        )
    if ok("replan"):
        added = res["replan"]["counts"]["added"]
        checks.append(
            {
                "target": "re-import plans nothing new",
                "figure": f"{added} new nudges",
                "met": added == 0,
                "step": "replan",
                "kind": "correctness",
            }
        )
    if ok("reimport") and ok("import"):
        a, b = res["import"]["wall"], res["reimport"]["wall"]
        checks.append(
            {
                "target": "re-import not slower than first import",
                "figure": f"{b:.1f} s vs {a:.1f} s",
                "met": b <= a,
                "step": "reimport",
                "kind": "time",
            }
        )
    for s, r in res.items():
        if "error" in r:
            checks.append(
                {
                    "target": f"{STEP_TITLES[s]} completes",
                    "figure": r["error"],
                    "met": False,
                    "step": s,
                    "kind": "crash",
                }
            )
    return checks


def render(
    args: argparse.Namespace,
    machine: dict[str, str],
    res: dict[str, dict[str, Any]],
    checks: list[dict[str, Any]],
    diag: dict[str, dict[str, Any]],
    total_s: float,
) -> str:
    n = args.tenants
    pg = args.store == "postgresql"
    key = section_key(args)
    store_name = f"PostgreSQL {machine.get('postgres', '?')}" if pg else f"SQLite {machine['sqlite']}"
    lines = [
        f"<!-- {key} begin -->",
        f"## {n:,} tenants" + (f", {store_name} store" if pg else ""),
        "",
        f"Run on {machine['date']} with `python benchmarks/bench_pipeline.py --tenants {n}"
        + (" --store postgresql" if pg else "")
        + (f" --pg-url {args.pg_url}" if pg and args.pg_url != PG_URL else "")
        + (f" --dispatch-limit {args.dispatch_limit}" if args.dispatch_limit != 1000 else "")
        + (f" --seed {args.seed}" if args.seed != 2026 else "")
        + (" --code worktree" if args.code == "worktree" else "")
        + (f" --commit {args.commit}" if args.code == "head" and args.commit != "HEAD" else "")
        + f"` (whole run {total_s / 60:.1f} min).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, {machine['os']}; "
        f"Python {machine['python']}, {store_name}, SQLAlchemy {machine['sqlalchemy']}.",
        "",
        f"Code measured: {machine['code']}.",
        "",
        "| Step | Wall (s) | CPU (s) | Peak RSS (MB) | RSS before (MB) | Load | Counts |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for step, rep in res.items():
        if "error" in rep:
            lines.append(f"| {STEP_TITLES[step]} | **failed** | | | | | {rep['error']} |")
            continue
        lines.append(
            f"| {STEP_TITLES[step]} | {rep['wall']:.2f} | {rep['cpu_s']:.2f} | {rep['peak_rss_mb']:.0f} "
            f"| {rep['rss_before_mb']:.0f} "
            f"| {rep['load']:.1f} | {_fmt_counts(step, rep)} |"
        )
    lines += [
        "",
        "Wall: the engine call alone (`time.perf_counter`); CPU: user + system CPU time of the same call "
        "(much less than wall means the step waited: for the disk, or for a busy machine). Load: the 1-minute "
        "load average when the step started (other work on the machine slows a step down). "
        "Peak RSS: `ru_maxrss` of the step's own process, "
        "interpreter and imports included (RSS before: the same just before the call). "
        + (
            "Each step is a fresh process on the same PostgreSQL database (on this machine, public schema emptied "
            "first; its server's own memory is not in the peak RSS); "
            if pg
            else "Each step is a fresh process on the same SQLite store; "
        )
        + "clock fixed at 2026-11-30 10:00 Europe/Amsterdam.",
        "",
        "| Target | Figure | Met |",
        "|---|---|---|",
    ]
    for c in checks:
        lines.append(f"| {c['target']} | {c['figure']} | {'yes' if c['met'] else '**no**'} |")
    for step, rep in res.items():
        if "error" in rep:
            lines += [
                "",
                f"{STEP_TITLES[step]} failed: {rep['error']}",
                "",
                "```",
                rep.get("stderr", "").strip(),
                "```",
            ]
    if diag:
        heading = "every step" if args.profile == "always" else "missed targets"
        lines += ["", f"### Where the time and memory go ({heading})", ""]
        lines.append(
            "Diagnostic pass: the pipeline replayed in a new store, the listed steps under cProfile or tracemalloc "
            "(both slow a step down; the figures above are from the uninstrumented pass)."
        )
        for step, rep in diag.items():
            if "error" in rep:
                lines += ["", f"{STEP_TITLES[step]}: diagnostic run failed: {rep['error']}"]
                continue
            if "profile" in rep:
                prof = rep["profile"]
                lines += [
                    "",
                    f"**{STEP_TITLES[step]}**: cProfile, {rep['wall']:.1f} s profiled. "
                    "nudger functions by cumulative time:",
                    "",
                    "| Function | Calls | Cumulative (s) | Own (s) |",
                    "|---|---:|---:|---:|",
                ]
                for r in prof["cumulative"]:
                    lines.append(f"| `{r['function']}` | {r['ncalls']:,} | {r['cumtime']:.2f} | {r['tottime']:.2f} |")
                lines += [
                    "",
                    "Top by own time:",
                    "",
                    "| Function | Calls | Own (s) | Cumulative (s) |",
                    "|---|---:|---:|---:|",
                ]
                for r in prof["tottime"]:
                    lines.append(f"| `{r['function']}` | {r['ncalls']:,} | {r['tottime']:.2f} | {r['cumtime']:.2f} |")
            if "tracemalloc" in rep:
                tm = rep["tracemalloc"]
                lines += [
                    "",
                    f"**{STEP_TITLES[step]}**: tracemalloc peak {tm['peak_mb']:.0f} MB of Python allocations. "
                    f"Largest allocation sites when {tm['snapshot_mb']:.0f} MB were allocated "
                    "(the last snapshot before the peak):",
                    "",
                    "| Allocated at | Line | MB | Blocks |",
                    "|---|---|---:|---:|",
                ]
                for r in tm["top_lines"]:
                    code = r.get("code", "").replace("|", "\\|")
                    code = f"`{code}`" if code else ""
                    lines.append(f"| `{r['where']}` | {code} | {r['mb']:.1f} | {r.get('count', 0):,} |")
    if args.notes:
        lines += ["", args.notes]
    lines += ["", f"<!-- {key} end -->"]
    return "\n".join(lines) + "\n"


def section_key(args: argparse.Namespace) -> str:
    """The RESULTS.md section of a run: one per tenant count and store."""
    return f"bench:{args.tenants}" if args.store == "sqlite" else f"bench-postgresql:{args.tenants}"


RESULTS_HEADER = """# Benchmark results

Written by `python benchmarks/bench_pipeline.py --tenants N` (see README.md); one section per
tenant count, replaced by the next run with that count. Targets from the issue: first import
<= 30 s, plan <= 10 s, peak memory <= 1 GB, and an unchanged re-import plans nothing new and is
not slower than the first import.

"""


def record(section: str, n: int, key: str | None = None) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else RESULTS_HEADER
    key = key or f"bench:{n}"
    begin, end = f"<!-- {key} begin -->", f"<!-- {key} end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        # Keep sections ordered by tenant count.
        import re

        marks = [(int(m.group(1)), m.start()) for m in re.finditer(r"<!-- bench:(\d+) begin -->", text)]
        after = [pos for count, pos in marks if count > n]
        if key != f"bench:{n}":  # other stores: after the SQLite section of the same count, or at the end
            mark = f"<!-- bench:{n} end -->"
            after = [text.index(mark) + len(mark)] if mark in text else []
            section = "\n\n" + section.rstrip("\n")
        if after:
            pos = min(after)
            text = text[:pos] + section + ("" if key != f"bench:{n}" else "\n") + text[pos:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


def _memory_steps(over: list[str]) -> list[str]:
    """Steps to trace for memory: a re-run of the same call (re-import, plan again) only when the
    first one was within the target, as tracemalloc is slow (about ten times)."""
    twins = {"reimport": "import", "replan": "plan"}
    return [s for s in over if twins.get(s) not in over]


def run_parent(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    machine = machine_info()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix=f"nudger-bench-{args.tenants}-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"nudger benchmark: {args.tenants:,} tenants in {work}")
    machine["code"] = snapshot_code(work, args.code, args.commit)
    if args.store == "postgresql":
        machine["postgres"] = postgres_version(args.pg_url)
        print(f"store: PostgreSQL {machine['postgres']} at {args.pg_url} (its public schema is emptied)")
    print(f"code: {machine['code']}")
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']}; "
        f"Python {machine['python']}, SQLite {machine['sqlite']}"
    )
    failed = False
    try:
        res: dict[str, dict[str, Any]] = {}
        if (work / "data" / "payments.csv").exists() and args.reuse_data:
            print("  reusing data in", work / "data")
        else:
            res["generate"] = spawn("generate", args, work)
            if "error" in res["generate"]:
                failed = True
        if not failed:
            res.update(run_pass(args, work, "timed", {}))
        checks = evaluate(res)
        failed = any(c["kind"] == "crash" for c in checks)

        # Diagnostic pass for missed targets.
        diag: dict[str, dict[str, Any]] = {}
        modes: dict[str, str] = {}
        if args.profile != "never" and not failed:
            if args.profile == "always":
                modes = {s: "cprofile" for s in STEPS}
            else:
                for c in checks:
                    if c["met"]:
                        continue
                    if c["kind"] == "time":
                        modes[c["step"]] = "cprofile"
                    elif c["kind"] == "memory":
                        for s in _memory_steps(c["over"]):
                            modes.setdefault(s, "tracemalloc")
            if modes:
                print("diagnostic pass:", ", ".join(f"{s} [{m}]" for s, m in modes.items()))
                last = max(modes, key=STEPS.index)
                diag_res = run_pass(args, work, "diag", modes, upto=last)
                diag = {s: r for s, r in diag_res.items() if s in modes}
                # A step over the memory target that is also slow gets a tracemalloc run too.
                mem_too = [
                    s
                    for c in checks
                    if not c["met"] and c["kind"] == "memory"
                    for s in _memory_steps(c["over"])
                    if modes.get(s) == "cprofile"
                ]
                if mem_too and args.profile == "auto":
                    print("tracemalloc pass:", ", ".join(mem_too))
                    tm_res = run_pass(
                        args, work, "diagmem", {s: "tracemalloc" for s in mem_too}, upto=max(mem_too, key=STEPS.index)
                    )
                    for s in mem_too:
                        if s in tm_res and "tracemalloc" in tm_res[s]:
                            diag[s]["tracemalloc"] = tm_res[s]["tracemalloc"]
        total = time.perf_counter() - t_start
        section = render(args, machine, res, checks, diag, total)
        print()
        print(section)
        if not args.no_record:
            record(section, args.tenants, section_key(args))
            print(f"written to {RESULTS}")
    finally:
        if args.keep or failed or args.workdir:
            print(f"kept {work} (store, outbox, step reports{', profiles' if args.profile != 'never' else ''})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tenants", type=int, default=100_000, help="number of synthetic tenants (default 100000)")
    p.add_argument("--seed", type=int, default=2026, help="make_data.py seed (default 2026)")
    p.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the store the steps share: a SQLite file (default) or PostgreSQL (--pg-url)",
    )
    p.add_argument(
        "--pg-url", default=PG_URL, help=f"PostgreSQL database for --store postgresql, emptied first (default {PG_URL})"
    )
    p.add_argument(
        "--dispatch-limit", type=int, default=1000, help="nudges in the dispatch step; 0 skips it (default 1000)"
    )
    p.add_argument(
        "--code",
        choices=("head", "worktree"),
        default="head",
        help="measure the last commit (default) or the working tree, copied at the start",
    )
    p.add_argument(
        "--commit",
        default="HEAD",
        help="with --code head: measure this commit instead of HEAD (so several runs measure one version)",
    )
    p.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="diagnostic pass with cProfile/tracemalloc: for missed targets (auto), every step, or never",
    )
    p.add_argument("--top", type=int, default=15, help="functions listed per profile (default 15)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a step is given up (default 3600)")
    p.add_argument("--workdir", help="folder to work in (kept afterwards); default: a new temporary folder, removed")
    p.add_argument("--reuse-data", action="store_true", help="with --workdir: reuse data/ generated by an earlier run")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--no-record", action="store_true", help="print the results only; do not write RESULTS.md")
    p.add_argument("--notes", default="", help="a paragraph to add to the RESULTS.md section")
    # Internal: one step in a child process.
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--child-mode", default="plain", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--trace-frames", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    if args.tenants < 1:
        p.error("--tenants must be at least 1")
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
