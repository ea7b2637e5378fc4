"""Strict configuration: dataclasses are the single source of truth.

Every method has a ``*Config`` dataclass whose defaults are the thesis values. Users change
them with ``key=value`` overrides (CLI) or a YAML/JSON mapping; both go through
:func:`config_from_dict`, which rejects unknown keys (naming the valid ones) and values that
cannot be coerced to the field's type. Nothing here knows about Ray.

    >>> from priorlab.methods.memory.config import MemoryConfig
    >>> cfg = apply_overrides(MemoryConfig(), parse_overrides(["lr=3e-4", "label_injection=every"]))
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value the user must fix."""


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """Split ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}`` (values stay strings)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. lr=3e-4)"
            )
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        out[key] = value
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce ``value`` (possibly a CLI string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        # Try str last: "[0,2]" must become a list, not stay a string.
        for arg in sorted(args, key=lambda a: a is str):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}={value!r} matches none of {tp}: " + "; ".join(errors))
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{key}={value!r} is not one of {list(args)}")
    if origin in (list, tuple, Sequence, typing.Sequence):
        if isinstance(value, str):
            text = value.strip()
            try:
                value = yaml.safe_load(text) if text.startswith("[") else [
                    v for v in text.split(",") if v.strip()
                ]
            except yaml.YAMLError as err:
                raise ConfigError(f"{key}={value!r} is not a list: {err}") from None
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} should be a list")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r} should be true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} should be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise ConfigError(f"{key}={value!r} should be an integer") from None
            if f.is_integer():
                return int(f)
        raise ConfigError(f"{key}={value!r} should be an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} should be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} should be a number") from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}={value!r} should be a string")
    return value


def config_from_dict(cls: type[T], data: Mapping[str, Any], base: T | None = None) -> T:
    """Build ``cls`` from ``data`` strictly: unknown keys and ill-typed values raise ConfigError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _coerce(value, hints[key], key)
    obj = dataclasses.replace(base, **values) if base is not None else cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def apply_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """Return a copy of ``cfg`` with ``overrides`` applied strictly."""
    return config_from_dict(type(cfg), overrides, base=cfg)


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML or JSON mapping of config overrides."""
    with open(path) as fh:
        data = yaml.safe_load(fh) if not path.endswith(".json") else json.load(fh)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def check_bounds(cfg: Any, *, at_least_1: Sequence[str] = (), non_negative: Sequence[str] = (),
                 positive: Sequence[str] = ()) -> None:
    """ConfigError naming the first field of ``cfg`` outside its bound (for ``validate()``)."""
    for names, ok, bound in ((at_least_1, lambda v: v >= 1, ">= 1"),
                             (non_negative, lambda v: v >= 0, ">= 0"),
                             (positive, lambda v: v > 0, "> 0")):
        for name in names:
            value = getattr(cfg, name)
            if not ok(value):
                raise ConfigError(f"{name}={value} must be {bound}")
