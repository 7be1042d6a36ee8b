"""Typed dataclass configs: a YAML file plus `key=value` overrides.

Every field is declared with `option(default, "meaning")`, so `--help` can list each option with
its default and meaning. An unknown key or a value of the wrong type is a ConfigError (one line,
exit code 2) that lists the valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from posttrain.errors import ConfigError
from posttrain.smoke import cap_values
from posttrain.trl_compat import resolve as resolve_trl_keys
from posttrain.trl_compat import trl_names


def option(default: Any, help: str, choices: tuple | None = None):
    """A config field with its meaning (shown by --help) and, optionally, its allowed values."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _strip_optional(tp):
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), True
    return tp, False


def _parse_scalar_text(text: str) -> Any:
    """`key=value` text on the command line is read as YAML so `1e-4`, `true`, `[a, b]` work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(key: str, value: Any, tp) -> Any:
    """Convert `value` to type `tp`, or raise a ConfigError naming the key and expected type."""
    inner, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"config key '{key}' must not be empty (expected {_type_name(tp)})")
    origin = get_origin(inner)
    if origin is Literal:
        allowed = get_args(inner)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' got {value!r}; expected one of {', '.join(map(str, allowed))}")
        return value
    if origin in (list, tuple):
        (item_tp,) = get_args(inner)[:1] or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' got {value!r}; expected a list")
        return [coerce(key, v, item_tp) for v in value]
    if inner is Any:
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key '{key}' got {value!r}; expected true or false")
    if inner is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"config key '{key}' got {value!r}; expected an integer")
        return int(value)
    if inner is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' got {value!r}; expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' got {value!r}; expected a number") from None
    if inner is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' got {value!r}; expected a string")
        return str(value)
    return value


def _type_name(tp) -> str:
    inner, optional = _strip_optional(tp)
    if get_origin(inner) is Literal:
        name = " | ".join(map(str, get_args(inner)))
    elif get_origin(inner) in (list, tuple):
        name = f"list of {_type_name(get_args(inner)[0])}"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} or null" if optional else name


def _unknown_key_error(key: str, cls) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}; valid keys: {', '.join(valid)}")


def _defaults(cls) -> dict[str, Any]:
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)}


def build_config(cls, values: dict[str, Any]):
    """Instantiate `cls` from a dict, checking every key and type; runs the class's `validate()`.
    Under POSTTRAIN_SMOKE=1 the options that drive a run's cost are capped first (posttrain.smoke)."""
    types_by_name = field_types(cls)
    values = resolve_trl_keys(values, cls)  # TRL's names (model_name_or_path, ...) -> ours; a no-op on resolved values
    values = cap_values(values, _defaults(cls), cls.__name__)
    kwargs = {}
    for key, value in values.items():
        if key not in types_by_name:
            raise _unknown_key_error(key, cls)
        field = next(f for f in dataclasses.fields(cls) if f.name == key)
        value = coerce(key, value, types_by_name[key])
        choices = field.metadata.get("choices")
        if choices and value is not None:
            for v in value if isinstance(value, list) else [value]:
                if v not in choices:
                    raise ConfigError(f"config key '{key}' got {v!r}; expected one of {', '.join(map(str, choices))}")
        kwargs[key] = value
    cfg = cls(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}' (e.g. learning_rate=1e-4)")
        key, text = item.split("=", 1)
        out[key.strip()] = _parse_scalar_text(text)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return data


def load_config(cls, config_file: str | None = None, overrides: list[str] | None = None, preset: dict | None = None):
    """Defaults < preset < YAML file < command-line overrides. TRL's key names are read per source,
    so `model=...` on the command line overrides a file's `model_name_or_path`."""
    values: dict[str, Any] = dict(preset or {})
    if config_file:
        values.update(resolve_trl_keys(read_yaml(config_file), cls))
    values.update(resolve_trl_keys(parse_overrides(overrides or []), cls))
    return build_config(cls, values)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def format_help(cls) -> str:
    """One block per option: name, type, default and meaning."""
    lines = []
    defaults = _defaults(cls)
    for f in dataclasses.fields(cls):
        default = defaults[f.name]
        tp = _type_name(field_types(cls)[f.name])
        choices = f.metadata.get("choices")
        tp = " | ".join(map(str, choices)) if choices else tp
        trl = trl_names(f.name)
        lines.append(f"  {f.name} ({tp}, default: {default!r})" + (f"  [TRL: {', '.join(trl)}]" if trl else ""))
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)
