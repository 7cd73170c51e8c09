"""Command-line options generated from the config dataclasses: one source of truth per option.

A config dataclass (:class:`~scaleot.model_owner.importance.config.ImportanceConfig`,
:class:`~scaleot.model_owner.emulator.config.EmulatorConfig`,
:class:`~scaleot.data_owner.finetune.config.FinetuneConfig`) declares each option once: its name,
type, default and ``metadata["help"]``. :func:`config_command` turns those fields into
typer options (``snake_case`` -> ``--kebab-case``, booleans as ``--x/--no-x``, nested
dataclasses flattened as ``--<field>-<subfield>``, the pair ``n_bottom``/``n_top`` as
``--adapter N_BOTTOM,N_TOP``) beside the command's own run-level options (``--out``,
``--resume``, ``--device`` ...), and :func:`config_from_section` reads a run YAML section
into the same dataclass under the same names. Field metadata the generator reads:

- ``help``: the ``--help`` text;
- ``aliases``: extra flag spellings kept for old command lines (``--steps``);
- ``switch``: a boolean offered as ``--x`` only (no ``--no-x``);
- ``cli``: False for a field no command line sets (what ``scaleot run`` passes between steps).

:func:`step_command` does the same for a step's whole config (``ImportanceRun``...): its
``run`` field becomes the run-level options it names (:func:`~scaleot.recipes.run_options.run_field`),
a field marked ``flatten`` (the method's config) contributes its fields at the top level,
and every other field (the step's inputs: ``--task``, ``--emulator``...) is one option.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Annotated, Any

import typer

from scaleot.errors import ScaleOTError, check
from scaleot.split import AdapterSplit

SPLIT_FIELDS = ("n_bottom", "n_top")
SEP = "__"  # python parameter name of a nested field: <field>__<subfield>


def _default(f) -> Any:
    """A field's default; ``inspect.Parameter.empty`` (a required option) when it has none."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


def _skipped(f) -> bool:
    """Fields that are no option of their own (the run-level options, flattened, or not for the CLI)."""
    m = f.metadata
    return bool(m.get("flatten") or m.get("run_level_options")) or m.get("cli") is False


def _dataclass_in(tp) -> type | None:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), if any."""
    for t in (tp, *typing.get_args(tp)):
        if isinstance(t, type) and is_dataclass(t):
            return t
    return None


def flag_name(path: str) -> str:
    """``ist__n_update`` -> ``--ist-n-update`` (case kept: ``--ist-T``)."""
    return "--" + path.replace(SEP, "-").replace("_", "-")


def config_flags(cls: type, prefix: str = "") -> dict[str, str]:
    """``{field path: flag}`` for every field of ``cls`` reached through the generated options
    (nested fields as ``parent__child``; ``n_bottom``/``n_top`` -> ``--adapter``)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        path = prefix + f.name
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            out.update(config_flags(inner, path + SEP))
        elif f.name in SPLIT_FIELDS:
            out[path] = "--adapter"
        else:
            out[path] = flag_name(path)
    return out


def _parameters(cls: type, prefix: str = "", nested: bool = False) -> list[inspect.Parameter]:
    """typer parameters for the fields of ``cls`` (its run-level and flattened fields left to the caller)."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        if _skipped(f):
            continue
        path, tp, default = prefix + f.name, hints[f.name], _default(f)
        inner = _dataclass_in(tp)
        if inner is not None:
            params += _parameters(inner, path + SEP, nested=True)
            continue
        if f.name in SPLIT_FIELDS:
            if f.name == "n_bottom":
                split = AdapterSplit(_default(f), _default(next(g for g in fields(cls) if g.name == "n_top")))
                option = typer.Option("--adapter", help="adapter blocks N_BOTTOM,N_TOP (the sandwich split N_a)")
                params.append(inspect.Parameter(prefix + "adapter", inspect.Parameter.KEYWORD_ONLY,
                                                default=str(split), annotation=Annotated[str, option]))
            continue
        help_text = f.metadata.get("help", "")
        if nested:  # unset = the nested config's own default (or what its parent derives)
            help_text += f" [default: {default}]" if f.name != "seed" else " [default: the run's seed]"
            default, tp = None, tp | None
        flag = flag_name(path)
        negatable = tp in (bool, bool | None) and not f.metadata.get("switch")
        decls = [f"{flag}/--no-{flag[2:]}"] if negatable else [flag]
        decls += list(f.metadata.get("aliases", ()))
        option = typer.Option(*decls, help=help_text, show_default=not nested)
        params.append(inspect.Parameter(path, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[tp, option]))
    return params


def _collect(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Generated option values -> constructor keyword arguments of ``cls`` (nested as dicts)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = prefix + f.name
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            sub = _collect(inner, values, path + SEP)
            if sub:
                kwargs[f.name] = sub
        elif f.name in SPLIT_FIELDS:
            if prefix + "adapter" in values:
                kwargs[f.name] = getattr(AdapterSplit.parse(values[prefix + "adapter"]), f.name)
        elif path in values and not (prefix and values[path] is None):
            kwargs[f.name] = values[path]
    return kwargs


def config_command(cls: type, name: str = "config"):
    """Decorate a command ``fn(..., config: cls)``: its options become the command's own
    (run-level) parameters plus one generated option per field of ``cls``; the decorated
    function receives ``config=cls(**options)``."""

    def wrap(fn):
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != name]
        generated = _parameters(cls)
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{fn.__qualname__}: options {sorted(clash)} are both hand-written and generated")
        names = {p.name for p in generated}

        @functools.wraps(fn)
        def command(**kwargs):
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(**kwargs, **{name: cls(**_collect(cls, values))})

        command.__signature__ = inspect.Signature(own + generated)
        command.__annotations__ = {}
        del command.__wrapped__  # typer must read __signature__, not fn's
        return command

    return wrap


def run_parameters(spec) -> list[inspect.Parameter]:
    """typer parameters for the run-level options a command offers (a
    :class:`~scaleot.recipes.run_options.RunLevel`): the shared help, the command's note."""
    from scaleot.recipes.run_options import NOTE, RunOptions

    by_name = {p.name: p for p in _parameters(RunOptions)}
    params = []
    for name in spec.names:
        p = by_name[name]
        tp, option = typing.get_args(p.annotation)
        if name in spec.notes:
            option.help += NOTE + spec.notes[name]
        default = inspect.Parameter.empty if name in spec.required else spec.defaults.get(name, p.default)
        params.append(p.replace(default=default, annotation=Annotated[tp, option]))
    return params


def _step_parts(cls: type) -> tuple[list[inspect.Parameter], dict[str, tuple[str, Any]]]:
    """``(parameters, {field: (how, detail)})`` of a step config ``cls`` (see :func:`step_command`)."""
    hints = typing.get_type_hints(cls)
    params, parts = _parameters(cls), {}
    for f in fields(cls):
        if f.metadata.get("run_level_options"):
            spec = f.metadata["run_level_options"]
            params += run_parameters(spec)
            parts[f.name] = ("run", spec)
        elif f.metadata.get("flatten"):
            params += _parameters(hints[f.name])
            parts[f.name] = ("flatten", hints[f.name])
        elif not _skipped(f):
            parts[f.name] = ("own", None)
    return params, parts


def step_command(cls: type, name: str = "config"):
    """Decorate a command ``fn(..., config: cls)`` whose ``cls`` is a step config (``ImportanceRun``):
    its run-level options, its method config's fields and its own inputs become the command's
    options (beside ``fn``'s own parameters, such as ``scaleot run``'s YAML argument); ``fn``
    receives ``config=cls(...)``."""
    from scaleot.recipes.run_options import RunOptions

    def wrap(fn):
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != name]
        generated, parts = _step_parts(cls)
        names = [p.name for p in generated]
        clash = sorted({n for n in names if names.count(n) > 1} | ({p.name for p in own} & set(names)))
        if clash:
            raise TypeError(f"{fn.__qualname__}: options {clash} are declared twice")

        @functools.wraps(fn)
        def command(**kwargs):
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            built = {}
            for field_name, (how, detail) in parts.items():
                if how == "run":
                    built[field_name] = RunOptions(**dict(detail.defaults, **{k: values[k] for k in detail.names}))
                elif how == "flatten":
                    built[field_name] = detail(**_collect(detail, values))
                else:
                    built[field_name] = values[field_name]
            return fn(**kwargs, **{name: cls(**built)})

        generated.sort(key=lambda p: p.default is not inspect.Parameter.empty)  # required first, as typer lists them
        command.__signature__ = inspect.Signature(own + generated)
        command.__annotations__ = {}
        del command.__wrapped__  # typer must read __signature__, not fn's
        return command

    return wrap


def run_options_command(spec):
    """Decorate a utility command ``fn(..., run: RunOptions)`` (``fetch``, ``doctor``): the
    run-level options ``spec`` names become its options; ``fn`` receives ``run=RunOptions(...)``."""
    from scaleot.recipes.run_options import RunOptions

    def wrap(fn):
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "run"]
        generated = run_parameters(spec)

        @functools.wraps(fn)
        def command(**kwargs):
            values = {k: kwargs.pop(k) for k in spec.names}
            return fn(**kwargs, run=RunOptions(**dict(spec.defaults, **values)))

        command.__signature__ = inspect.Signature(own + generated)
        command.__annotations__ = {}
        del command.__wrapped__
        return command

    return wrap


def config_from_section(cls: type, section: dict | None, where: str, extra: tuple[str, ...] = (),
                        **fixed) -> dict:
    """Check a run-YAML section against ``cls``: known names only (``adapter:`` or
    ``n_bottom``/``n_top``), each value strictly of its field's type and finite
    (:func:`scaleot.validate.options.option_problems`, nested configs key by key; ``extra``
    keys are strings), then valid for ``cls`` itself; returns the section's keyword
    arguments (``adapter`` expanded, ``extra`` keys kept); ``fixed`` are defaults for the
    check only.

    Raises:
        ConfigError: unknown keys, wrong types, or what ``cls`` itself rejects (all at once,
            each named ``where.key``).
    """
    from scaleot.validate.options import option_problems

    if section is not None and not isinstance(section, dict):
        raise ScaleOTError(f"{where}: expected a mapping of options, found {type(section).__name__}")
    section = dict(section or {})
    names = {f.name for f in fields(cls)}
    known = names | ({"adapter"} if set(SPLIT_FIELDS) <= names else set()) | set(extra)
    unknown = sorted(set(section) - known)
    check(where, [f"unknown options {unknown} (known: {sorted(known - set(extra))})"] if unknown else [])
    if "adapter" in section:
        if set(SPLIT_FIELDS) & set(section):
            raise ScaleOTError(f"{where}: give adapter or n_bottom/n_top, not both")
        section.update(AdapterSplit.parse(section.pop("adapter"), name=f"{where}: adapter").to_dict())
    check(where, option_problems(cls, section, where, extra={k: str for k in extra}))
    kwargs = {k: v for k, v in section.items() if k not in extra}  # what cls itself must accept
    try:
        cls(**dict(fixed, **kwargs))
    except TypeError as e:
        raise ScaleOTError(f"{where}: {e}") from None
    except ScaleOTError as e:
        raise ScaleOTError(f"{where}: {e}") from None
    return section
