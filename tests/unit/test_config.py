"""Settings: defaults, then HOMEFEED_* variables, then flags; invalid values are refused with
a message that names the setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from homefeed.config import ENV_PREFIX, Settings


def env(**values: str) -> dict[str, str]:
    return {ENV_PREFIX + k.upper(): v for k, v in values.items()}


def test_defaults_without_any_variable():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.port == 8080 and s.host == "127.0.0.1"
    assert s.timeline_cap == 800 and s.celebrity_threshold == 10_000
    assert s.max_post_length == 500 and s.inactive_days == 14.0
    assert s.sqlite_synchronous == "FULL"
    assert s.database_path == Path("./data") / "homefeed.db"


def test_reads_homefeed_variables_with_their_types():
    s = Settings.from_env(
        env(
            data_dir="/srv/homefeed",
            host="0.0.0.0",
            port="9090",
            celebrity_threshold="3",
            inactive_days="0.5",
            timeline_cap="5",
            max_post_length="280",
            max_body_bytes="1024",
            cache_max_timelines="10",
            cache_max_posts="20",
            sqlite_synchronous="NORMAL",
            group_commit_max="64",
            log_level="DEBUG",
        )
    )
    assert s.data_dir == Path("/srv/homefeed") and isinstance(s.data_dir, Path)
    assert s.database_path == Path("/srv/homefeed/homefeed.db")
    assert (s.host, s.port, s.celebrity_threshold) == ("0.0.0.0", 9090, 3)
    assert s.inactive_days == 0.5 and isinstance(s.inactive_days, float)
    assert (s.timeline_cap, s.max_post_length, s.max_body_bytes) == (5, 280, 1024)
    assert (s.cache_max_timelines, s.cache_max_posts, s.group_commit_max) == (10, 20, 64)
    assert (s.sqlite_synchronous, s.log_level) == ("NORMAL", "DEBUG")
    assert isinstance(s.port, int) and isinstance(s.timeline_cap, int)


def test_every_numeric_or_path_setting_has_a_variable():
    # a setting added later is configurable by environment too
    for f in dataclasses.fields(Settings):
        kind = str(f.type)
        if kind == "int":
            raw, want = "7", 7
        elif kind == "float":
            raw, want = "2.5", 2.5
        elif kind == "Path":
            raw, want = "/x/y", Path("/x/y")
        else:
            continue
        assert getattr(Settings.from_env({ENV_PREFIX + f.name.upper(): raw}), f.name) == want, f.name


def test_float_settings_take_integers_and_surrounding_blanks_are_tolerated():
    assert Settings.from_env(env(inactive_days="3")).inactive_days == 3.0
    assert Settings.from_env(env(port=" 8081 ")).port == 8081


def test_only_the_prefix_counts_and_empty_values_fall_through():
    s = Settings.from_env({"PORT": "1", "homefeed_port": "2", ENV_PREFIX + "PORT": ""})
    assert s.port == 8080


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("HOMEFEED_PORT", "7070")
    monkeypatch.setenv("HOMEFEED_TIMELINE_CAP", "12")
    s = Settings.from_env()
    assert (s.port, s.timeline_cap) == (7070, 12)


def test_flags_override_variables_and_unset_flags_fall_through():
    e = env(port="9090", timeline_cap="5", host="10.0.0.1")
    s = Settings.from_env(e, port=1234, timeline_cap=None, data_dir=Path("/flag"))
    assert s.port == 1234  # flag beats variable
    assert s.timeline_cap == 5  # None flag: the variable stands
    assert s.host == "10.0.0.1"
    assert s.data_dir == Path("/flag")


@pytest.mark.parametrize(
    "name, raw",
    [
        ("port", "eighty"),
        ("port", "80.5"),
        ("timeline_cap", "1e3"),
        ("celebrity_threshold", "many"),
        ("inactive_days", "two weeks"),
        ("cache_max_posts", "0x10"),
    ],
)
def test_unparsable_variable_names_itself(name, raw):
    with pytest.raises(ValueError) as err:
        Settings.from_env(env(**{name: raw}))
    message = str(err.value)
    assert ENV_PREFIX + name.upper() in message
    assert raw in message


@pytest.mark.parametrize(
    "name, raw",
    [
        ("timeline_cap", "0"),
        ("timeline_cap", "-5"),
        ("celebrity_threshold", "0"),
        ("max_post_length", "0"),
        ("inactive_days", "0"),
        ("inactive_days", "-1"),
        ("sqlite_synchronous", "OFF"),
        ("sqlite_synchronous", "fast"),
    ],
)
def test_out_of_range_values_are_refused_with_the_setting_named(name, raw):
    with pytest.raises(ValueError) as err:
        Settings.from_env(env(**{name: raw}))
    assert name in str(err.value)


def test_flags_are_validated_too_and_all_problems_are_listed():
    with pytest.raises(ValueError) as err:
        Settings.from_env({}, timeline_cap=0, max_post_length=-1)
    assert "timeline_cap" in str(err.value) and "max_post_length" in str(err.value)


def test_sqlite_synchronous_is_case_insensitive():
    assert Settings.from_env(env(sqlite_synchronous="normal")).sqlite_synchronous.upper() == "NORMAL"


def test_settings_are_frozen_and_replace_makes_a_copy():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    t = s.replace(port=1)
    assert (s.port, t.port) == (8080, 1)


@pytest.mark.parametrize(
    "name, raw",
    [
        ("port", "70000"),
        ("port", "-1"),
        ("inactive_days", "nan"),
        ("max_body_bytes", "-1"),
        ("cache_max_timelines", "-1"),
        ("cache_max_posts", "-1"),
        ("group_commit_max", "-1"),
    ],
)
def test_more_invalid_values_are_refused(name, raw):
    with pytest.raises(ValueError, match=name):
        Settings.from_env(env(**{name: raw}))
