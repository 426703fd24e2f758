"""The README's commands are run here, so they cannot rot."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from support import ROOT, copy_example, nudger, outbox_files

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(b.strip() for b in _blocks() if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_main_job_command_runs_on_the_example(tmp_path: Path) -> None:
    main = next(b.strip() for b in _blocks() if "run --once" in b and "pip install" in b)
    nudger_part = main.split("&& .venv/bin/nudger ", 1)[1]
    copy_example(tmp_path)
    result = nudger(tmp_path, *shlex.split(nudger_part))
    assert result.code == 0, result.text
    assert "sent 14" in result.out and outbox_files(tmp_path)


def test_walkthrough_commands_all_succeed(tmp_path: Path) -> None:
    walk = next(b for b in _blocks() if b.startswith("nudger check"))
    copy_example(tmp_path)
    outputs = []
    for line in walk.strip().splitlines():
        args = shlex.split(line)[1:]
        result = nudger(tmp_path, *args)
        assert result.code == 0, f"{line}\n{result.text}"
        outputs.append(result.out)
    assert "signed" in outputs[4] or "sent" in outputs[4]
    assert "sent by sms, signed by fatima (backup of sanne)" in outputs[5]
    assert "contact-made" in outputs[8] and "sent" in outputs[8]
