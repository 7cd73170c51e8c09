"""Options from users (the run YAML, the command line) checked against the config dataclasses.

:func:`option_problems` checks a mapping against a dataclass's fields *strictly* with
pydantic: unknown keys, wrong types (``lr: "fast"``, ``epochs: 1.5``, ``bf16: "yes"``)
and non-finite numbers (``.inf``, ``.nan``) are problems, each named by its key, all
reported at once. :func:`nonfinite_fields` is the check every config's ``__post_init__``
runs, so ``--lr inf`` or ``--eta nan`` never reach a run.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from functools import cache
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

STRICT = ConfigDict(strict=True, allow_inf_nan=False)


def nonfinite_fields(obj: Any) -> list[str]:
    """Problems for every float field of a dataclass instance that is NaN or infinite."""
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            out.append(f"{f.name} must be a finite number (got {v})")
    return out


def nested_dataclass(hint: Any) -> type | None:
    """The dataclass inside a field's type (``X`` or ``X | None``), if any."""
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            return t
    return None


@cache
def _nested(cls: type) -> dict[str, tuple[type, bool]]:
    """``{field: (nested dataclass, None allowed)}`` for the fields of ``cls`` that hold a config."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        inner = nested_dataclass(hints.get(f.name, Any))
        if inner is not None:
            out[f.name] = (inner, type(None) in typing.get_args(hints[f.name]))
    return out


@cache
def _adapters(cls: type) -> dict[str, TypeAdapter]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name, Any)
        if nested_dataclass(hint) is not None:  # checked field by field (see option_problems)
            out[f.name] = TypeAdapter(Any)
            continue
        try:
            out[f.name] = TypeAdapter(hint, config=STRICT)
        except Exception:  # an annotation pydantic cannot check: accept any value
            out[f.name] = TypeAdapter(Any)
    return out


def option_problems(cls: type, options: Any, where: str, extra: dict[str, Any] | None = None) -> list[str]:
    """Problems of ``options`` (a mapping from a user) as keyword arguments of ``cls``.

    Nested configs (``harmonizer``, ``ist``) are checked key by key too, named
    ``where.field.key``.

    Args:
        cls: a config dataclass.
        options: the mapping.
        where: prefix naming the place (``finetune``, ``emulators[0]``).
        extra: additional allowed keys and their types (e.g. ``{"name": str}``).
    """
    if options is None:
        return []
    if not isinstance(options, dict):
        return [f"{where}: expected a mapping of options, found {type(options).__name__}"]
    adapters = dict(_adapters(cls))
    for k, t in (extra or {}).items():
        adapters[k] = TypeAdapter(t, config=STRICT)
    problems = []
    nested = _nested(cls)
    for key, value in options.items():
        if not isinstance(key, str) or key not in adapters:
            known = ", ".join(sorted(adapters))
            problems.append(f"{where}.{key}: unknown option (known: {known})")
            continue
        if key in nested and key not in (extra or {}):
            inner, optional = nested[key]
            if isinstance(value, dict):
                problems += option_problems(inner, value, f"{where}.{key}")
            elif not (value is None and optional) and not isinstance(value, inner):
                problems.append(f"{where}.{key}: a mapping of options is needed (got {value!r:.40})")
            continue
        try:
            adapters[key].validate_python(value)
        except ValidationError as e:
            first = e.errors()[0]
            problems.append(f"{where}.{key}: {first['msg']} (got {value!r:.40})")
    return problems
