"""Strict TOML configuration, shared by the bot and the services.

One configuration file serves every Hushbrief process; each process validates
the sections it owns and leaves the others to their owners. Loading is strict:
an unknown key, a wrong type or a value out of range is a one-line
``ConfigError`` that names the file (or the environment variable), the key and
what was expected. A typo in a privacy setting must never be silently ignored.

Any key can be overridden by ``HUSHBRIEF_<SECTION>_<KEY>``; environment values
are strings, so they are also tried as the integer or boolean they spell.

This module imports nothing else of Hushbrief, so the backend can use it
without depending on the bot.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "HUSHBRIEF_"

Check = Callable[[Any], Any]
"""Takes a TOML (or environment) value, returns the typed value or raises ValueError(expected)."""


class ConfigError(Exception):
    """The configuration cannot be used. The message is one line for the operator."""


# --- checks -------------------------------------------------------------------------------

def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("true or false")


def integer(low: int, high: int) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return v
    return check


def number(low: float, high: float) -> Check:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return float(v)
    return check


def string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("a string")
    return v


def choice(*choices: str) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError("one of " + ", ".join(f'"{c}"' for c in choices))
        return v.lower()
    return check


def path(v: Any) -> Path:
    if not isinstance(v, str) or not v:
        raise ValueError("a non-empty path")
    return Path(v)


def url(*schemes: str, empty: bool = True) -> Check:
    """A URL with one of ``schemes`` ("http", "https", …), or empty if ``empty``."""
    def check(v: Any) -> str:
        s = string(v).strip()
        if (not s and empty) or any(s.startswith(f"{scheme}://") for scheme in schemes):
            return s.rstrip("/") if s.startswith("http") else s
        shown = " or ".join(f'"{scheme}://…"' for scheme in schemes)
        raise ValueError(("empty, or " if empty else "") + f"a URL starting with {shown}")
    return check


def string_list(*choices: str) -> Check:
    """A list of strings, each one of ``choices`` if any are given; duplicates dropped."""
    def check(v: Any) -> tuple[str, ...]:
        if isinstance(v, str):  # the environment gives "a,b"
            v = [part.strip() for part in v.split(",") if part.strip()]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError("a list of strings" + (
                " from " + ", ".join(f'"{c}"' for c in choices) if choices else ""))
        if choices and any(x not in choices for x in v):
            raise ValueError("a list of strings from " + ", ".join(f'"{c}"' for c in choices))
        return tuple(dict.fromkeys(v))
    return check


def int_table(keys: tuple[str, ...], low: int, high: int) -> Check:
    """An inline table mapping some of ``keys`` to whole numbers from ``low`` to ``high``."""
    def check(v: Any) -> dict[str, int]:
        expected = ("a table such as { " + ", ".join(f"{k} = 0" for k in keys)
                    + f" }} with numbers from {low} to {high}")
        if not isinstance(v, dict):
            raise ValueError(expected)
        out: dict[str, int] = {}
        for key, value in v.items():
            if key not in keys or isinstance(value, bool) or not isinstance(value, int) \
                    or not low <= value <= high:
                raise ValueError(expected)
            out[key] = value
        return out
    return check


# --- loading ------------------------------------------------------------------------------

_ENV_BOOLS = {"true": True, "1": True, "yes": True, "on": True,
              "false": False, "0": False, "no": False, "off": False}


def _env_candidates(raw: str) -> list[Any]:
    """An environment variable is always a string; TOML would have said 80 or true."""
    out: list[Any] = [raw]
    stripped = raw.strip()
    if stripped.lstrip("-").isdigit():
        out.append(int(stripped))
    elif stripped.replace(".", "", 1).lstrip("-").isdigit():
        out.append(float(stripped))
    if stripped.lower() in _ENV_BOOLS:
        out.append(_ENV_BOOLS[stripped.lower()])
    return out


def section_values(
    checks: Mapping[str, Check], table: Mapping[str, Any], where: str,
    what: Callable[[str], str], *, from_env: bool = False,
) -> dict[str, Any]:
    """Validate one section's ``table`` against ``checks``; raise ConfigError naming the key."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        check = checks.get(key)
        if check is None:
            known = ", ".join(checks)
            raise ConfigError(f"{where}: unknown key {what(key)}; known keys: {known}")
        expected = "valid"
        for candidate in (_env_candidates(value) if from_env else [value]):
            try:
                out[key] = check(candidate)
                break
            except ValueError as exc:
                expected = str(exc)
        else:
            raise ConfigError(f"{where}: {what(key)} must be {expected}")
    return out


@dataclass(frozen=True, slots=True)
class Document:
    sections: dict[str, dict[str, Any]]
    """Validated values of the owned sections, only the keys that were given."""
    source: str
    base: Path
    """The file's directory (or the working directory): relative paths start here."""


def load_sections(
    file: Path | None,
    environ: Mapping[str, str],
    schema: Mapping[str, Mapping[str, Check]],
    *,
    others: frozenset[str] = frozenset(),
) -> Document:
    """Read ``file`` (if any) and the environment, validating the sections in ``schema``.

    Sections named in ``others`` belong to another process and are skipped here
    (their owner validates them); any other unknown section is an error.
    """
    sections: dict[str, dict[str, Any]] = {name: {} for name in schema}
    source, base = "defaults", Path.cwd()
    if file is not None:
        where = str(file)
        doc = read_toml(file)
        for name, table in doc.items():
            if name in others:
                continue
            if name not in schema:
                known = ", ".join(f"[{s}]" for s in (*schema, *sorted(others)))
                raise ConfigError(f"{where}: unknown section [{name}]; known sections: {known}")
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: {name} must be a [{name}] table")
            sections[name].update(section_values(schema[name], table, where, _in_section(name)))
        source, base = where, file.resolve().parent
    for name, checks in schema.items():
        prefix = f"{ENV_PREFIX}{name.upper()}_"
        for var, value in environ.items():
            if var.startswith(prefix):
                key = var[len(prefix):].lower()
                sections[name].update(section_values(
                    checks, {key: value}, "environment", _as_variable(var), from_env=True))
    return Document(sections=sections, source=source, base=base)


def read_toml(file: Path) -> dict[str, Any]:
    where = str(file)
    try:
        with open(file, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{where}: cannot be read (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None


def _in_section(section: str) -> Callable[[str], str]:
    return lambda key: f"[{section}] {key}"


def _as_variable(var: str) -> Callable[[str], str]:
    return lambda _key: var
