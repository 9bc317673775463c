"""The fault scenarios' final check: ``homefeed audit --json``, run as an operator runs it.

A separate process with the deployment's environment (``HOMEFEED_DATA_DIR`` for the embedded
profile, whose in-process caches it reaches through ``--url``; ``HOMEFEED_DATABASE_URL`` /
``CACHE_URL`` / ``BUS_URL`` for the scale-out one). Returns the parsed report; the scenario
asserts ``exit_code == 0`` and records ``len(differences)`` in its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable


@dataclass
class AuditResult:
    exit_code: int
    differences: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def divergences(self) -> int:
        return len(self.differences)

    def explain(self) -> str:
        lines = [f"audit exit {self.exit_code}; checked {self.checked}"]
        lines += [f"  {d['store']} {d['subject']}: {d['problem']}" for d in self.differences[:40]]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + ("\n" + self.output[-3000:] if self.exit_code not in (0, 1, 3) else "")


def run_audit(env: Mapping[str, str], url: str | None = None, sample: int | None = None,
              settle_timeout: float = 30.0, timeout: float = 600.0) -> AuditResult:
    """``homefeed audit --json`` with ``env`` on top of this process's environment (unset
    ``HOMEFEED_*`` keys of ours do not leak in). ``url``: the serving process, for the
    embedded profile's in-process timeline cache."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
    full.update(env)
    cmd = [PYTHON, "-m", "homefeed", "audit", "--json", "--settle-timeout", str(settle_timeout)]
    if url:
        cmd += ["--url", url]
    if sample is not None:
        cmd += ["--sample", str(sample)]
    proc = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    out = proc.stdout
    try:
        start = out.index("{")
        report = json.loads(out[start:])
    except ValueError:
        return AuditResult(proc.returncode, output=out + proc.stderr)
    return AuditResult(proc.returncode, report.get("differences", []), report.get("checked", {}),
                       report.get("notes", []), out + proc.stderr)
