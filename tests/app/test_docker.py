"""docker/postgresql.conf, the production PostgreSQL settings docker/compose.yaml mounts: every line names a
setting this PostgreSQL 15 knows, with a value of that setting's type, so a typo cannot stop the database
container from starting (nothing here can run Docker)."""

from __future__ import annotations

import re

import psycopg
import pytest
import yaml

from tests.support.servers import PG_ADMIN_DSN, REQUIRE_PG, ROOT

CONF = ROOT / "docker" / "postgresql.conf"
_LINE = re.compile(r"^\s*([a-z_.]+)\s*=\s*('(?:[^']*)'|\S+)")
_MEMORY_UNITS = ("B", "kB", "MB", "GB", "TB")
_TIME_UNITS = ("us", "ms", "s", "min", "h", "d")


def _settings() -> dict[str, str]:
    lines = (_LINE.match(line) for line in CONF.read_text().splitlines())
    return {m.group(1): m.group(2).strip("'") for m in lines if m}


@pytest.fixture(scope="module")
def known() -> dict[str, tuple[str, str | None, list[str] | None]]:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=5) as conn:
            rows = conn.execute("SELECT name, vartype, unit, enumvals FROM pg_settings").fetchall()
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (PLANFIT_TEST_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return {name: (vartype, unit, enumvals) for name, vartype, unit, enumvals in rows}


def _valid(value: str, vartype: str, unit: str | None, enumvals: list[str] | None) -> bool:
    if vartype == "bool":
        return value in ("on", "off", "true", "false")
    if vartype == "enum":
        return value in (enumvals or [])
    if vartype in ("integer", "real"):
        number = re.fullmatch(r"(-?[0-9.]+)([a-zA-Z]*)", value)
        if not number:
            return False
        suffix = number.group(2)
        if not suffix:
            return True
        units = _MEMORY_UNITS if unit and unit[-1] == "B" else _TIME_UNITS
        return unit is not None and suffix in units
    return True  # string


def test_every_setting_is_one_postgresql_15_knows_with_a_value_of_its_type(known):
    settings = _settings()
    assert {"shared_buffers", "max_wal_size", "effective_cache_size", "work_mem"} <= settings.keys()
    preloaded = settings["shared_preload_libraries"].split(",")
    for name, value in settings.items():
        if "." in name:  # an extension's setting: its library must be preloaded
            assert name.split(".")[0] in preloaded, name
            continue
        assert name in known, f"{name}: not a PostgreSQL setting"
        assert _valid(value, *known[name]), f"{name} = {value}: not a value of type {known[name]}"


def test_compose_starts_the_database_on_that_file():
    db = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["db"]
    assert "config_file=/etc/postgresql/postgresql.conf" in db["command"]
    assert "./postgresql.conf:/etc/postgresql/postgresql.conf:ro" in db["volumes"]
