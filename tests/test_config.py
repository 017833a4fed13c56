"""vknb.config: every ``VKNB_*`` variable parses its good values, falls back to its default when
unset or blank, and refuses a bad value with a ValueError that names the variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vknb import config

# Values that parse, and what they parse to (surrounding blanks are ignored everywhere).
GOOD: dict[str, list[tuple[str, Any]]] = {
    "VKNB_DEVICE": [("0", "0"), (" 1 ", "1"), ("NVIDIA H100", "NVIDIA H100")],
    "VKNB_VALIDATION": [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
    "VKNB_TIMEOUT_S": [("5", 5.0), ("0.25", 0.25), (" 1e3 ", 1000.0)],
    "VKNB_COMPILE_TIMEOUT_S": [("30", 30.0), ("0.5", 0.5)],
    "VKNB_CACHE_DIR": [("/tmp/vknb-cache", "/tmp/vknb-cache"), (" ~/c ", "~/c")],
    "VKNB_SHADERS": [("/opt/shaders", "/opt/shaders")],
    "VKNB_GLSLC": [("/usr/bin/glslangValidator", "/usr/bin/glslangValidator")],
    "VKNB_SPIN_US": [("0", 0.0), ("300", 300.0), ("12.5", 12.5)],
    "VKNB_TIMESTAMPS": [("0", False), ("1", True), ("yes", True)],
    "VKNB_TS_READOUT": [("host", "host"), (" COPY ", "copy")],
    "VKNB_STAGING_MB": [("1", 1), (" 64 ", 64), ("256", 256)],
    "VKNB_COPY_THREADS": [("1", 1), ("16", 16)],
    "VKNB_BAR": [("auto", "auto"), ("AUTO", "auto"), ("0", "0"), ("1", "1")],
    "VKNB_RECYCLE_MB": [("0", 0), ("1024", 1024)],
    "VKNB_ROBUST": [("1", True), ("off", False)],
    "VKNB_FORCE_STAGING": [("1", True), ("0", False)],
    "VKNB_HOST_IMPORT": [("auto", "auto"), (" AUTO ", "auto"), ("0", "0"), ("1", "1")],
    "VKNB_HOST_IMPORT_CACHE_MB": [("0", 0), ("4096", 4096)],
}

# Values that do not parse (the free-text variables take anything).
BAD: dict[str, list[str]] = {
    "VKNB_VALIDATION": ["2", "enabled", "y"],
    "VKNB_TIMEOUT_S": ["0", "-1", "soon", "nan", "inf"],
    "VKNB_COMPILE_TIMEOUT_S": ["0", "-5", "later"],
    "VKNB_SPIN_US": ["-1", "-0.5", "fast", "inf", "nan"],
    "VKNB_TIMESTAMPS": ["2", "maybe"],
    "VKNB_TS_READOUT": ["device", "auto"],
    "VKNB_STAGING_MB": ["0", "-3", "1.5", "big"],
    "VKNB_COPY_THREADS": ["0", "two", "2.0"],
    "VKNB_BAR": ["2", "yes", "true"],
    "VKNB_RECYCLE_MB": ["-1", "lots", "0.5"],
    "VKNB_ROBUST": ["2", "robust"],
    "VKNB_FORCE_STAGING": ["always"],
    "VKNB_HOST_IMPORT": ["2", "yes", "always"],
    "VKNB_HOST_IMPORT_CACHE_MB": ["-1", "lots", "0.5"],
}
FREE_TEXT = {"VKNB_DEVICE", "VKNB_CACHE_DIR", "VKNB_SHADERS", "VKNB_GLSLC"}

DEFAULTS: dict[str, Any] = {
    "VKNB_DEVICE": None,
    "VKNB_VALIDATION": False,
    "VKNB_TIMEOUT_S": 60.0,
    "VKNB_COMPILE_TIMEOUT_S": 60.0,
    "VKNB_CACHE_DIR": None,
    "VKNB_SHADERS": None,
    "VKNB_GLSLC": None,
    "VKNB_SPIN_US": 300.0,
    "VKNB_TIMESTAMPS": True,
    "VKNB_TS_READOUT": None,
    "VKNB_STAGING_MB": 64,
    "VKNB_COPY_THREADS": max(2, min(16, os.cpu_count() or 2)),
    "VKNB_BAR": "auto",
    "VKNB_RECYCLE_MB": None,
    "VKNB_ROBUST": False,
    "VKNB_FORCE_STAGING": False,
    "VKNB_HOST_IMPORT": "auto",
    "VKNB_HOST_IMPORT_CACHE_MB": min(
        4096, (os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20) // 4
    ),
}


def test_every_variable_is_tested():
    assert set(GOOD) == set(config.VARIABLES)
    assert set(DEFAULTS) == set(config.VARIABLES)
    assert set(BAD) == set(config.VARIABLES) - FREE_TEXT


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [(name, raw, value) for name, cases in GOOD.items() for raw, value in cases],
)
def test_good_values_parse(monkeypatch, name, raw, value):
    monkeypatch.setenv(name, raw)
    got = config.get(name)
    assert got == value and type(got) is type(value), (got, value)


@pytest.mark.parametrize(("name", "raw"), [(n, raw) for n, values in BAD.items() for raw in values])
def test_bad_values_raise_a_value_error_naming_the_variable(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=f"^{name}=") as ei:
        config.get(name)
    msg = str(ei.value)
    assert msg.startswith(f"{name}={raw!r} is not valid: expected "), msg
    assert config.VARIABLES[name].doc in msg  # says what the variable does
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


@pytest.mark.parametrize("name", list(config.VARIABLES))
@pytest.mark.parametrize("raw", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_unset_or_blank_gives_the_default(monkeypatch, name, raw):
    if raw is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, raw)
    assert config.get(name) == DEFAULTS[name]


def test_read_when_used_not_at_import(monkeypatch):
    monkeypatch.setenv("VKNB_STAGING_MB", "8")
    assert config.get("VKNB_STAGING_MB") == 8
    monkeypatch.setenv("VKNB_STAGING_MB", "16")
    assert config.get("VKNB_STAGING_MB") == 16


def test_unknown_variable_is_a_key_error():
    with pytest.raises(KeyError):
        config.get("VKNB_NO_SUCH_VARIABLE")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VKNB_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("VKNB_CACHE_DIR", "~/vknb-c")
    assert config.cache_dir() == Path.home() / "vknb-c"
    monkeypatch.delenv("VKNB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "vknb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.cache_dir() == Path.home() / ".cache" / "vknb"


def test_shader_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("VKNB_SHADERS", raising=False)
    shipped = config.shader_dir()
    assert (shipped / "saxpy.comp").is_file()
    assert shipped == Path(config.__file__).resolve().parent / "library" / "shaders"
    monkeypatch.setenv("VKNB_SHADERS", str(tmp_path / "mine"))
    assert config.shader_dir() == (tmp_path / "mine").resolve()


def test_table_lists_every_variable_in_order():
    rows = config.table()
    assert [r[0] for r in rows] == list(config.VARIABLES)
    for name, read, doc in rows:
        assert read and doc
        assert (read, doc) == (config.VARIABLES[name].read, config.VARIABLES[name].doc)
