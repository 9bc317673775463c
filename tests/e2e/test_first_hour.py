"""The first hour of a newcomer, as issue 9 found it: each stumble, run as they ran it
(``python -m homefeed ...`` in a fresh directory), with what must happen instead.

- a port in use: one line naming the port and host, exit 2, within 5 s (it used to hang,
  ignoring SIGTERM);
- no process ignores SIGTERM, during start-up included (serve and worker waited for a
  backend that does not answer for 10 s);
- operator commands never create a data dir or a database (``homefeed audit`` used to make
  ``./data`` and report the empty database clean);
- ``serve`` writes its address and admin token in the data dir at start (mode 0600) and logs
  ``listening on http://...``; the operator commands find it there; it removes the file at
  exit;
- errors at start (unreachable server, unknown URL parameter, missing database) are one
  line naming the fix, the traceback only with ``--debug``;
- an optional package that is missing names the extra to install;
- ``--version``; each command's help lists only its own flags and speaks of both profiles.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable

#: A PostgreSQL nobody listens on: connecting is refused at once, the pool gives up after 10 s.
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nothing"


def _env(**extra: str) -> dict[str, str]:
    """This environment without any HOMEFEED_* of ours, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
    env["HOMEFEED_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


def homefeed(*args: str, cwd: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "homefeed", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]


def _one_line(text: str) -> str:
    """The human line among the (JSON) log lines on stderr."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("{")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# a port in use; signals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_one_line_and_exit_2_within_5_s(command: str, busy_port: int, tmp_path: Path) -> None:
    # Python's start-up and imports, measured beside it: on a loaded machine they alone can
    # take seconds; the 5 s are homefeed's own (no retrying, no waiting on the port)
    t0 = time.monotonic()
    homefeed(command, "--help", cwd=tmp_path, timeout=60)
    start_up = time.monotonic() - t0
    t0 = time.monotonic()
    proc = homefeed(command, "--data-dir", str(tmp_path / "d"), "--host", "127.0.0.1", "--port",
                    str(busy_port), cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert elapsed < 5 + 2 * start_up, f"{elapsed:.1f} s (start-up alone {start_up:.1f} s)"
    line = _one_line(proc.stderr)
    assert f"port {busy_port} on 127.0.0.1 is in use (" in line and "--port" in line, line
    _no_traceback(proc)


def _sigterm_during_start(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int | None]:
    proc = subprocess.Popen([PYTHON, "-m", "homefeed", *args], cwd=cwd, env=_env(**env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)  # imports done; waiting for PostgreSQL, which never answers
        assert proc.poll() is None, "it did not even wait for PostgreSQL"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return 99.0, None
        return time.monotonic() - t0, code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["worker", "--role", "indexer"]],
                         ids=["serve", "worker"])
def test_sigterm_during_start_up_is_obeyed_at_once(args: list[str], tmp_path: Path) -> None:
    elapsed, code = _sigterm_during_start(args, tmp_path, {"HOMEFEED_DATABASE_URL": UNREACHABLE_PG})
    assert code is not None and elapsed < 2, f"SIGTERM took {elapsed:.1f} s (exit {code})"
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM), code


# --------------------------------------------------------------------------------------------
# operator commands and the data dir
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["audit"],
    ["rebuild", "timelines", "--no-progress"],
    ["replay", "--consumer", "fanout", "--from", "0"],
    ["dead-letters", "list"],
], ids=lambda a: a[0])
def test_operator_commands_never_create_a_data_dir_or_database(args: list[str], tmp_path: Path) -> None:
    proc = homefeed(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "data/homefeed.db" in line and "--data-dir" in line and "HOMEFEED_DATA_DIR" in line, line
    assert "HOMEFEED_DATABASE_URL" in line, line
    assert list(tmp_path.iterdir()) == [], "it created something"
    _no_traceback(proc)

    # an existing but empty data dir: no database is made in it either
    (tmp_path / "elsewhere").mkdir()
    proc = homefeed(*args, "--data-dir", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 2 and "elsewhere/homefeed.db" in proc.stderr, proc.stderr
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_status_with_a_data_dir_that_no_server_announced_says_so(tmp_path: Path) -> None:
    proc = homefeed("status", "--data-dir", "d", cwd=tmp_path)
    assert proc.returncode == 2 and "server.json" in proc.stderr and "--url" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_announces_itself_in_the_data_dir_at_start_and_the_commands_find_it(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([PYTHON, "-m", "homefeed", "serve", "--data-dir", str(data), "--port", str(port)],
                            cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        server_file = data / "server.json"
        deadline = time.monotonic() + 30
        while not server_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        info = json.loads(server_file.read_text())
        assert info == {"url": f"http://127.0.0.1:{port}", "pid": proc.pid}
        for name in ("server.json", "admin-token"):  # written at start, before any admin call
            assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600, name
        text = (tmp_path / "serve.log").read_text()
        assert any(json.loads(ln).get("msg") == f"listening on http://127.0.0.1:{port}"
                   for ln in text.splitlines() if ln.startswith("{")), text

        # from another directory, with only --data-dir: the timelines are audited in the server
        other = tmp_path / "elsewhere"
        other.mkdir()
        got = homefeed("audit", "--data-dir", str(data), cwd=other, HOMEFEED_PORT="1")
        assert got.returncode == 0 and "audit: clean" in got.stdout, got.stdout + got.stderr
        assert "no serving process answered" not in got.stdout, got.stdout
        status = homefeed("status", "--data-dir", str(data), "--json", cwd=other)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.close()
    assert not (data / "server.json").exists(), "the address file outlived the server"


# --------------------------------------------------------------------------------------------
# one line, the traceback only with --debug
# --------------------------------------------------------------------------------------------
def test_an_unreachable_database_at_start_is_one_line(tmp_path: Path) -> None:
    proc = homefeed("serve", "--port", "0", cwd=tmp_path, timeout=40, HOMEFEED_DATABASE_URL=UNREACHABLE_PG)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "PostgreSQL" in line and "HOMEFEED_DATABASE_URL" in line, line
    _no_traceback(proc)


def test_an_unknown_url_parameter_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    bus = "nats://127.0.0.1:4222?bogus=1"
    proc = homefeed("serve", "--data-dir", "d", "--port", "0", cwd=tmp_path, HOMEFEED_BUS_URL=bus)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "'bogus'" in line and "HOMEFEED_BUS_URL" in line, line
    _no_traceback(proc)

    for how in (["--debug"], []):
        env = {} if how else {"HOMEFEED_LOG_LEVEL": "DEBUG"}
        proc = homefeed(*how, "serve", "--data-dir", "d", "--port", "0", cwd=tmp_path,
                        HOMEFEED_BUS_URL=bus, **env)
        assert proc.returncode != 0 and "Traceback" in proc.stderr, proc.stderr[-3000:]

    proc = homefeed("worker", "--role", "indexer", cwd=tmp_path, HOMEFEED_BUS_URL=bus,
                    HOMEFEED_DATABASE_URL=UNREACHABLE_PG)
    assert proc.returncode == 2 and "'bogus'" in _one_line(proc.stderr), proc.stderr[-3000:]


def test_an_unknown_redis_url_parameter_is_refused_at_start(tmp_path: Path) -> None:
    """redis-py hands an unknown parameter to its connection class, which fails only at the
    first connection (a TypeError in a request): it is refused when the adapters are built,
    naming the parameter and the ones Redis takes."""
    proc = homefeed("serve", "--data-dir", "d", "--port", "0", cwd=tmp_path,
                    HOMEFEED_CACHE_URL="redis://127.0.0.1:6379/0?bogus=1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "'bogus'" in line and "HOMEFEED_CACHE_URL" in line, line
    assert "db" in line and "socket_timeout" in line, line  # the accepted ones
    _no_traceback(proc)


def test_a_missing_postgresql_database_names_createdb(tmp_path: Path) -> None:
    proc = homefeed("migrate", cwd=tmp_path,
                    HOMEFEED_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/homefeed_no_such_db_9")
    if "cannot reach" in proc.stderr:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "createdb homefeed_no_such_db_9" in line, line
    _no_traceback(proc)


def test_a_worker_pointed_at_another_deployments_stream_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """The stream named in HOMEFEED_BUS_URL was claimed by another deployment: a worker
    refuses to consume it (a configuration error: one line naming the fix, exit 2; it used to
    be a traceback and exit status 1)."""
    import asyncio

    from homefeed.adapters.jetstream import JetStreamEventStream
    from homefeed.domain.deployment import Deployment
    from tests.backends import NATS_URL, require, scratch_pg_database, unique
    from tests.e2e.scaleout import pg_url

    require("nats")
    bus = f"{NATS_URL}?stream={unique('FH_')}&subject_prefix={unique('fh')}.events"
    with scratch_pg_database() as dsn:
        db = pg_url(dsn)
        proc = homefeed("migrate", cwd=tmp_path, timeout=60, HOMEFEED_DATABASE_URL=db)
        assert proc.returncode == 0, proc.stderr[-3000:]

        async def body() -> subprocess.CompletedProcess[str]:
            other = JetStreamEventStream.from_url(bus, deployment=Deployment("aaaaaaaaaaaa"))
            await other.open()  # the other deployment claims the stream first
            try:
                return await asyncio.to_thread(homefeed, "worker", "--role", "indexer", cwd=tmp_path,
                                               timeout=60, HOMEFEED_DATABASE_URL=db, HOMEFEED_BUS_URL=bus)
            finally:
                await other.delete_streams()
                await other.close()

        proc = asyncio.run(body())
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert line.startswith("homefeed worker: refusing to start:"), line
    assert "belongs to deployment aaaaaaaaaaaa" in line and "HOMEFEED_BUS_URL" in line, line
    _no_traceback(proc)


# --------------------------------------------------------------------------------------------
# optional packages
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,args", [
    ("hdrh", ["bench", "--quick"]),
    ("matplotlib", ["bench", "compare", "--world", "nowhere", "--charts", "charts"]),
])
def test_a_missing_optional_package_names_the_extra(module: str, args: list[str], tmp_path: Path) -> None:
    blocker = f"import sys; sys.modules[{module!r}] = None; from homefeed.entrypoints.cli import main; sys.exit(main())"
    proc = subprocess.run([PYTHON, "-c", blocker, *args], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert module in line and "pip install 'homefeed[bench]'" in line, line
    _no_traceback(proc)


# --------------------------------------------------------------------------------------------
# --version and help
# --------------------------------------------------------------------------------------------
def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    from importlib.metadata import version

    proc = homefeed("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"homefeed {version('homefeed')}", proc


def test_each_command_offers_only_its_own_flags_and_speaks_of_both_profiles(tmp_path: Path) -> None:
    def help_of(*command: str) -> str:
        proc = homefeed(*command, "--help", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return " ".join(proc.stdout.split())

    for command in (["migrate"], ["dead-letters"], ["replay"]):
        text = help_of(*command)
        assert "--celebrity-threshold" not in text and "--timeline-cap" not in text, (command, text)
    for command in (["serve"], ["migrate"], ["audit"], ["dead-letters"], ["worker"]):
        text = help_of(*command)
        assert "Embedded profile" in text or "embedded profile" in text, (command, text)
        assert "Scale-out profile" in text or "scale-out profile" in text, (command, text)
    serve = help_of("serve")
    assert "--celebrity-threshold" in serve and "stateless API process" in serve
    assert "--data-dir" not in help_of("worker")
    top = homefeed("--help", cwd=tmp_path).stdout
    assert "--version" in top and "--debug" in top
