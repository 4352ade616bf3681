"""Config ↔ dicts and files: `to_dict` / `from_dict` (unknown keys listed), `--set` overrides coerced to the
field types, YAML/JSON files, the three-layer `resolve`, the config hash and the resolved record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mindhier.config.pipeline import MindhierConfig
from mindhier.config.presets import preset
from mindhier.errors import ConfigError

# ------------------------------------------------------------------------------------- dict conversion


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def from_dict(cls: type, data: Mapping[str, Any], base: Any | None = None, where: str = "") -> Any:
    """Build `cls` from a (partial) mapping, on top of `base` (default: the class defaults).

    Unknown keys raise `ConfigError` naming them and listing the valid keys.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where or 'config'} must be a mapping of keys to values, got {type(data).__name__};"
            " write the config as key: value lines"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        shown = unknown[0] if str(unknown[0]).isprintable() else repr(unknown[0])  # one line, whatever was typed
        key = f"{where}.{shown}" if where else shown
        scope = f" of {where}" if where else ""
        raise ConfigError(f"unknown config key {key}; valid keys{scope}: {', '.join(names)}")
    base = base if base is not None else cls()
    changes = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            changes[key] = from_dict(type(current), value, base=current, where=path)
        else:
            changes[key] = _coerce(value, hints[key], path)
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as err:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"cannot build {cls.__name__}: {err}; fix the config values it names") from err


# ------------------------------------------------------------------------------------------- overrides


def apply_overrides(cfg: MindhierConfig, overrides: Iterable[str]) -> MindhierConfig:
    """Apply `a.b=value` strings together (a later value of the same key wins), so that fields checked against each
    other (`adapt.steps` and `adapt.alone_steps`) can change in one go; each value is coerced to the field's type."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--set expects key=value (e.g. simulator.n_train=200), got {item!r}; write --set key=value"
            )
        if key == "preset":  # the label says which preset the values came from: only --preset chooses it
            raise ConfigError(
                f"--set {item}: the preset is chosen with --preset NAME, not set as a value;"
                " drop this --set and pass --preset NAME"
            )
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"--set {key}: {part} is a value, not a section; set a key inside the section, not below a value"
                )
        node[parts[-1]] = _RawString(raw.strip())
    return from_dict(type(cfg), nested, base=cfg) if nested else cfg


class _RawString(str):
    """A value typed on the command line: parsed according to the target field's type."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    raw = isinstance(value, _RawString)

    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (raw and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if raw:
            text = value.strip()
            if text.startswith("["):
                value = _yaml_scalar(text, where)
            else:
                value = [_RawString(v.strip()) for v in text.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} expects a list, got {value!r}; write a comma-separated list, e.g. 1,2")
        element = args[0] if args else str
        return tuple(_coerce(v if not isinstance(v, str) else _RawString(v), element, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where} expects true or false, got {value!r}; write true or false")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} expects an integer, got {value!r}; write a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{where} expects an integer, got {value!r}; write a whole number")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} expects a number, got {value!r}; write a finite number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} expects a number, got {value!r}; write a finite number")
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{where} expects a string, got {value!r}; write text")
    raise ConfigError(f"{where}: unsupported config type {hint!r}; report this as a bug")  # pragma: no cover


def _yaml_scalar(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: cannot parse {text!r} ({err}); fix the file's syntax") from err


# ----------------------------------------------------------------------------------------- files, hash


def load_file(path: str | Path, base: MindhierConfig) -> MindhierConfig:
    """Apply a YAML or JSON config file on top of `base`.

    A `config.json` written by `save_resolved` (keys `config` and `provenance`) is accepted as is.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; check the --config path")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {p} is not UTF-8 text ({err}); save it as UTF-8") from err
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as err:
        raise ConfigError(f"config file {p} cannot be parsed ({' '.join(str(err).split())}); fix its syntax") from err
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"config file {p} cannot be parsed ({' '.join(str(err).split())}); fix its syntax") from err
    if data is None:
        return base
    resolved_run_config = isinstance(data, Mapping) and "config" in data and "provenance" in data
    if resolved_run_config:
        data = data["config"]
    _check_preset_label(data, base, p, resolved_run_config)
    return from_dict(type(base), data, base=base)


def _check_preset_label(data: Any, base: MindhierConfig, path: Path, resolved_run_config: bool) -> None:
    """The `preset` label names the preset the values started from: a partial file may only repeat --preset's; a
    run's resolved config.json (every value written out) keeps its own, if it is a preset's name."""
    from mindhier.config.presets import PRESETS

    label = data.get("preset") if isinstance(data, Mapping) else None
    if label is None or label == base.preset:
        return
    if resolved_run_config and label in PRESETS:
        return
    raise ConfigError(
        f"config file {path} says preset: {label}, but its values start from --preset {base.preset}; pass "
        f"--preset {label}, or drop the file's preset line (the label names where the values came from)"
    )


def resolve(
    preset_name: str = "demo", config_file: str | Path | None = None, overrides: Iterable[str] = ()
) -> MindhierConfig:
    """Preset, then file, then overrides."""
    cfg = preset(preset_name)
    if config_file is not None:
        cfg = load_file(config_file, cfg)
    return apply_overrides(cfg, overrides)


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config (or any sub-config): keys finished stages in caches."""
    canonical = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolved_record(cfg: MindhierConfig) -> dict[str, Any]:
    """The config plus the provenance that produced an output."""
    from mindhier.provenance import provenance

    return {"config": to_dict(cfg), "provenance": provenance()}


def save_resolved(cfg: MindhierConfig, path: str | Path) -> None:
    """Write the resolved config with package version and git revision, atomically."""
    from mindhier.fileio import write_json

    write_json(path, resolved_record(cfg))
