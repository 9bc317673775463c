"""The repository as a newcomer clones and installs it: no stray binaries, a LICENSE that
matches pyproject's, the current (PEP 639) license form so that installs print no
setuptools deprecation warning, package data for the files kept beside the code, and the
benchmark's histograms in the base install so that ``homefeed bench --quick`` works after
``make demo``."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_no_binaries_are_committed() -> None:
    stray = [p for p in _tracked() if p.endswith((".whl", ".tar.gz", ".zip", ".so", ".egg"))]
    assert stray == []


def test_the_license_is_apache_2_in_pep_639_form() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX string, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    requires = PYPROJECT["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") and
               int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires), requires


def test_files_kept_beside_the_code_ship_with_the_package() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["homefeed"]
    for ext in ("lua", "html", "js", "css"):
        assert f"**/*.{ext}" in patterns


def test_bench_quick_needs_nothing_beyond_the_base_install() -> None:
    base = [d.split(">")[0].split("=")[0].split(";")[0].strip().lower() for d in PYPROJECT["project"]["dependencies"]]
    assert "hdrhistogram" in base and "numpy" in base
    assert "matplotlib" not in base  # large: charts only, in the bench extra
    assert any(d.startswith("matplotlib") for d in PYPROJECT["project"]["optional-dependencies"]["bench"])


def test_the_type_checker_is_part_of_the_test_install() -> None:
    assert any(d.startswith("mypy") for d in PYPROJECT["project"]["optional-dependencies"]["test"])
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"
