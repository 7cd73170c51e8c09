"""Generated bad inputs at every trust boundary (issue 13), with hypothesis.

Five targets, each a real artifact of the tiny world: an emulator bundle (read by
``load_emulator``), a returned LoRA and full adapter (read by ``scaleot plug`` through the
CLI: exit 0 or 2 with one line), a checkpoint folder (read by ``finetune --resume``), a
run YAML (``load_run_config``) and a task file (``load_jsonl_task``). Mutations: JSON type swaps, key deletions, NaN, truncation, bit
flips, links, unlisted files, wrong tensor shapes and dtypes, added modules and blocks;
each with and without the manifest recomputed (a forger's move).

Every case must end in a :class:`ScaleOTError` or in documented success, and never
change the folder it reads. Documented success means: the bundle loads with finite
weights; the plug-in model is finite and differs from the base only in the emulator's
adapter blocks; a resumed run continues; the config builds every dataclass; every task
example validates. ``CASES`` counts what ran (printed by ``-s``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from scaleot.errors import ScaleOTError
from tests.finetune_helpers import tiny_world  # noqa: F401
from tests.trust_helpers import adapters, folder_digest, remanifest, tune_config  # noqa: F401

CASES: dict[str, int] = {}
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
OPS = ("type_swap", "delete_key", "nan", "truncate", "bitflip", "link", "unlisted", "wrong_shape", "int_dtype",
       "add_module", "add_block")
SWAPS = [None, True, -1, 0, 10**9, 1.5, "x", "", [], [1, "a"], {}, {"k": None}]
HOSTILE_NAMES = ["../../escape", "/abs/elsewhere", "..", ".", "a/b", "a\\b", ".hidden", "-flag", "x" * 101, "é", " ",
                 "a\x00b", "~", "$HOME"]
HOSTILE_TASKS = ["gen:arithmetic?n=40&seed=1", "gen:arithmetic?n=../..&seed=.", "gen:../../x", "pkg:..", "..jsonl",
                 "...", "/", "bigbench:../..", "hf:../../x", "gen:arithmetic?n=40&seed=1&seed=2"]


# ----------------------------------------------------------------------------- mutations
def _paths(doc, prefix=()):
    """Every key path in a JSON document."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:8]):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _set(doc, path, value=None, delete=False):
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def mutate_json_doc(doc, op: str, draw):
    paths = _paths(doc)
    if not paths:
        return SWAPS[draw(st.integers(0, len(SWAPS) - 1))]
    path = paths[draw(st.integers(0, len(paths) - 1))]
    if op == "delete_key":
        _set(doc, path, delete=True)
    elif op == "nan":
        _set(doc, path, draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e308 * 10])))
    else:
        _set(doc, path, SWAPS[draw(st.integers(0, len(SWAPS) - 1))])
    return doc


def mutate_tensors(path: Path, op: str, draw, extra_key: str, extra_shape: tuple) -> None:
    state = load_file(str(path))
    names = sorted(state)
    name = names[draw(st.integers(0, len(names) - 1))]
    t = state[name]
    if op == "nan" and t.is_floating_point() and t.numel():
        t = t.clone()
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
    elif op == "wrong_shape" and t.numel() > 1:
        t = t.reshape(-1)[:-1].clone()
    elif op == "int_dtype":
        t = t.to(torch.int32)
    elif op in ("add_module", "add_block"):
        state[extra_key] = torch.full(extra_shape, 0.01)
    state[name] = t.contiguous()
    save_file(state, str(path))


def mutate_folder(folder: Path, op: str, draw, outside: Path, extra: dict) -> None:
    """One mutation of one file of ``folder`` (see the module docstring)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    target = files[draw(st.integers(0, len(files) - 1))]
    if op == "link":
        target.unlink()
        target.symlink_to(outside)
    elif op == "unlisted":
        (target.parent / draw(st.sampled_from(["notes.txt", "x.json", "evil.pkl", "more.safetensors"]))).write_bytes(
            b"\x80\x04K\x01.")
    elif op == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    elif op == "bitflip":
        data = bytearray(target.read_bytes())
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
            target.write_bytes(bytes(data))
    elif target.suffix == ".safetensors":
        key, shape = extra["add_block" if op == "add_block" else "add_module"]
        mutate_tensors(target, op, draw, key, shape)
    elif target.suffix == ".json":
        doc = json.loads(target.read_text())
        target.write_text(json.dumps(mutate_json_doc(doc, op, draw)))
    else:
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])


@st.composite
def folder_mutation(draw):
    return draw(st.sampled_from(OPS)), draw(st.booleans())


def _fuzz_folder(src: Path, draw, op: str, recompute: bool, extra: dict):
    """Copy ``src``, mutate it (re-manifesting if asked); returns ``(tmpdir, copy, digest)``."""
    tmp = Path(tempfile.mkdtemp(prefix="scaleot-fuzz-"))
    outside = tmp / "outside.txt"
    outside.write_text("not part of the artifact")
    copy = tmp / src.name
    shutil.copytree(src, copy, symlinks=True)
    mutate_folder(copy, op, draw, outside, extra)
    if recompute:
        with contextlib.suppress(Exception):  # a manifest mutated beyond reading stays as it is
            remanifest(copy)
    return tmp, copy, folder_digest(copy)


def _count(target: str, outcome: str, error: Exception | None = None) -> None:
    if error is not None:  # what the CLI prints: exactly one line
        assert str(error) and "\n" not in str(error), repr(error)
    CASES[f"{target}:{outcome}"] = CASES.get(f"{target}:{outcome}", 0) + 1


# ----------------------------------------------------------------------------- targets
@settings(max_examples=15, **SETTINGS)
@given(data=st.data(), mutation=folder_mutation())
def test_fuzz_emulator_bundle(tiny_world, data, mutation):  # noqa: F811
    from scaleot.models.emulator import load_emulator

    root, model_dir, task, emu = tiny_world
    before = folder_digest(emu)
    op, recompute = mutation
    extra = {"add_module": ("lm_head.weight", (49152, 32)), "add_block": ("model.layers.9.mlp.up_proj.weight", (64, 32))}
    tmp, copy, digest = _fuzz_folder(emu, data.draw, op, recompute, extra)
    try:
        bundle = load_emulator(copy, device="cpu")
    except ScaleOTError as e:
        _count("bundle", "refused", e)
    else:
        _count("bundle", "loaded")
        assert all(torch.isfinite(p).all() for p in bundle.model.state_dict().values() if p.is_floating_point())
    finally:
        assert folder_digest(copy) == digest and folder_digest(emu) == before
        shutil.rmtree(tmp)


@pytest.fixture(scope="module")
def base_state(tiny_world):  # noqa: F811
    from scaleot.models import load_model

    model, _ = load_model(str(tiny_world[1]), device="cpu")
    return {k: v.clone() for k, v in model.state_dict().items()}


@settings(max_examples=20, **SETTINGS)
@given(data=st.data(), mutation=folder_mutation(), method=st.sampled_from(["lora", "full"]))
def test_fuzz_returned_adapter(tiny_world, adapters, base_state, capsys, data, mutation, method):  # noqa: F811
    """Through the CLI: ``scaleot plug`` exits 0 or 2 with one line, never a traceback."""
    from transformers import AutoModelForCausalLM

    from scaleot.cli import main as cli_main

    root, model_dir, task, emu = tiny_world
    op, recompute = mutation
    extra = {"add_module": ("base_model.model.lm_head.lora_A.weight" if method == "lora" else "lm_head.weight",
                            (8, 32) if method == "lora" else (49152, 32)),
             "add_block": ("base_model.model.model.layers.2.mlp.up_proj.lora_A.weight" if method == "lora"
                           else "blocks.2.mlp.up_proj.weight", (8, 32) if method == "lora" else (64, 32))}
    before = folder_digest(emu), folder_digest(adapters[method])
    tmp, copy, digest = _fuzz_folder(adapters[method], data.draw, op, recompute, extra)
    out = tmp / "plugged"
    capsys.readouterr()
    try:
        code = cli_main(["plug", "--model", str(model_dir), "--adapter", str(copy), "--emulator", str(emu),
                         "--out", str(out), "--device", "cpu"])
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "it/s]" not in x and "%|" not in x]
        assert code in (0, 2), code
        if code == 2:
            assert len(err) == 1 and err[0].startswith("scaleot: error: "), err
            _count("adapter", "refused")
            assert not out.exists()
        else:
            _count("adapter", "plugged")
            plugged = AutoModelForCausalLM.from_pretrained(out).state_dict()
            for k, v in plugged.items():
                assert torch.isfinite(v).all(), k
                if not torch.equal(v, base_state[k]):  # only the emulator's adapter blocks may change
                    assert k.startswith(("model.layers.0.", "model.layers.5.")), k
    finally:
        assert folder_digest(copy) == digest
        assert (folder_digest(emu), folder_digest(adapters[method])) == before
        shutil.rmtree(tmp)


@pytest.fixture(scope="module")
def resumable(tiny_world, adapters):  # noqa: F811
    """A finetune recipe set up once on the tiny emulator, and the finished run folder to resume."""
    from scaleot.recipes.finetune import FinetuneRecipe

    root, model_dir, task, emu = tiny_world
    run_dir = adapters["full"].with_name("full.run")
    tmp = Path(tempfile.mkdtemp(prefix="scaleot-resume-"))
    recipe = FinetuneRecipe.of(tmp / "out", str(task), tune_config(method="full"), device="cpu", emulator=emu, progress=False,
                            run_dir=tmp / "unused.run")
    recipe.setup()
    yield recipe, run_dir
    shutil.rmtree(tmp)


@settings(max_examples=20, **SETTINGS)
@given(data=st.data(), mutation=folder_mutation())
def test_fuzz_checkpoint_folder(resumable, data, mutation):
    recipe, run_dir = resumable
    op, recompute = mutation
    extra = {"add_module": ("model.lm_head.weight", (4, 4)), "add_block": ("model.model.layers.3.x", (2,))}
    before = folder_digest(run_dir)
    tmp, copy, digest = _fuzz_folder(run_dir / "checkpoints", data.draw, op, False, extra)
    recipe.run_dir, recipe.resume = copy.parent, True
    (copy.parent / "log.jsonl").touch()
    digest = folder_digest(copy)
    try:
        recipe.execute()
    except ScaleOTError as e:
        _count("checkpoint", "refused", e)
    else:
        _count("checkpoint", "resumed")
    finally:
        assert folder_digest(copy) == digest and folder_digest(run_dir) == before
        shutil.rmtree(tmp)


def _run_config(model_dir: Path, task: Path) -> dict:
    return {"model": str(model_dir), "tasks": [str(task)], "device": "cpu",
            "importance": {"n_bottom": 1, "n_top": 1, "steps": 3, "group_size": 2, "n_configs": 2,
                           "autocast": "none", "harmonizer": {"rank": 8}},
            "emulators": [{"name": "s", "method": "scaleot", "n_bottom": 1, "n_top": 1, "alpha": 0.5, "beta": 0.25},
                          {"name": "u", "method": "uniform", "n_bottom": 1, "n_top": 1}],
            "finetune": {"method": "full", "epochs": 1, "n_train": 32, "n_val": 16, "n_test": 24, "lr": 1e-3},
            "ft": {"lr": 1e-4}, "evaluate": {"batch_size": 16, "limit": 10}}


@settings(max_examples=80, **SETTINGS)
@given(data=st.data(), op=st.sampled_from(["type_swap", "delete_key", "nan", "unknown_key", "truncate", "bitflip",
                                           "hostile_name", "duplicate_key", "hostile_task"]))
def test_fuzz_run_yaml(tiny_world, data, op):  # noqa: F811
    from scaleot.data_owner.finetune import FinetuneConfig
    from scaleot.model_owner.emulator import EmulatorConfig
    from scaleot.model_owner.importance.config import ImportanceConfig
    from scaleot.recipes.run import load_run_config

    root, model_dir, task, emu = tiny_world
    cfg = _run_config(model_dir, task)
    if op == "unknown_key":
        paths = [p for p in _paths(cfg) if isinstance(cfg.get(p[0]), dict | list)]
        parent = cfg
        for k in paths[data.draw(st.integers(0, len(paths) - 1))]:
            if not isinstance(parent[k], dict | list):
                break
            parent = parent[k]
        if isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["limitt", "lrr", "rank2", "nme"]))] = 1
        text = yaml.safe_dump(cfg).encode()
    elif op == "hostile_name":  # issue 30: an emulator name is a folder inside --out, never a path out of it
        cfg["emulators"][data.draw(st.integers(0, 1))]["name"] = data.draw(st.one_of(
            st.sampled_from(HOSTILE_NAMES), st.text(min_size=0, max_size=120)))
        text = yaml.safe_dump(cfg, allow_unicode=True).encode()
    elif op == "duplicate_key":  # issue 30: the last one silently winning hides a typo
        lines = yaml.safe_dump(cfg).splitlines()
        keyed = [i for i, ln in enumerate(lines) if re.match(r"\s*[A-Za-z_]+:( |$)", ln)]
        i = keyed[data.draw(st.integers(0, len(keyed) - 1))]
        text = "\n".join([*lines[:i + 1], lines[i], *lines[i + 1:]]).encode() + b"\n"  # the key twice
    elif op == "hostile_task":  # issue 30: a task name becomes a folder name inside --out
        cfg["tasks"] = [str(task), data.draw(st.sampled_from(HOSTILE_TASKS))]
        text = yaml.safe_dump(cfg, allow_unicode=True).encode()
    elif op in ("truncate", "bitflip"):
        text = bytearray(yaml.safe_dump(cfg).encode())
        if op == "truncate":
            text = text[: data.draw(st.integers(0, len(text) - 1))]
        else:
            i = data.draw(st.integers(0, len(text) - 1))
            text[i] ^= 1 << data.draw(st.integers(0, 7))
        text = bytes(text)
    else:
        text = yaml.safe_dump(mutate_json_doc(cfg, op, data.draw), allow_unicode=True).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.yaml"
        path.write_bytes(text)
        try:
            loaded = load_run_config(path)
        except ScaleOTError as e:
            _count("yaml", "refused", e)
            return
    _count("yaml", "accepted")
    assert op != "duplicate_key", text
    # documented success: every name that becomes a path is a name inside --out
    from scaleot.outputs import check_name
    from scaleot.recipes.run import IGNORED_KEYS, task_dir

    for e in loaded["emulators"]:
        assert check_name(e["name"], "emulator") not in (".", "..")
    assert len({task_dir(t) for t in loaded["tasks"]}) == len(loaded["tasks"])
    # documented success: every step's options build (no TypeError after work has started)
    imp = {k: v for k, v in (loaded.get("importance") or {}).items() if k != "corpus"}
    if "from" not in imp:
        ImportanceConfig(**imp)
    for e in loaded["emulators"]:
        EmulatorConfig(importance="x", **{k: v for k, v in e.items() if k not in ("name", *IGNORED_KEYS["emulators"])})
    base = dict(loaded.get("finetune") or {})
    FinetuneConfig(**base)
    FinetuneConfig(**dict(base, **(loaded.get("ft") or {})))


@settings(max_examples=80, **SETTINGS)
@given(data=st.data(), op=st.sampled_from(["type_swap", "delete_key", "nan", "truncate", "bitflip", "dup_choice",
                                           "empty_choice", "bool_label", "surrogate"]))
def test_fuzz_task_file(data, op):
    from scaleot.data.tasks import load_jsonl_task

    rows = [{"context": f"Is {i} even?", "choices": [" yes", " no"], "label": i % 2} for i in range(6)]
    i = data.draw(st.integers(0, len(rows) - 1))
    lines = [json.dumps(r).encode() for r in rows]
    if op == "dup_choice":
        rows[i]["choices"] = [" yes", " yes"]
    elif op == "empty_choice":
        rows[i]["choices"][1] = data.draw(st.sampled_from(["", "   "]))
    elif op == "bool_label":
        rows[i]["label"] = data.draw(st.booleans())
    elif op == "surrogate":  # issue 30: a lone surrogate is refused at its line, like non-UTF-8 bytes
        key = data.draw(st.sampled_from(["context", "choice"]))
        bad = data.draw(st.sampled_from(["\ud800", "\udfff", "x\udc80y"]))
        if key == "context":
            rows[i]["context"] += bad
        else:
            rows[i]["choices"][0] += bad
    elif op in ("type_swap", "delete_key", "nan"):
        rows[i] = mutate_json_doc(rows[i], op, data.draw)
    if op in ("truncate", "bitflip"):
        blob = bytearray(lines[i])
        if op == "truncate":
            blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
        else:
            j = data.draw(st.integers(0, len(blob) - 1))
            blob[j] ^= 1 << data.draw(st.integers(0, 7))
        lines[i] = bytes(blob)
    else:
        lines[i] = json.dumps(rows[i]).encode()
    fd, name = tempfile.mkstemp(suffix=".jsonl")
    with os.fdopen(fd, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    try:
        examples = load_jsonl_task(name)
    except ScaleOTError as e:
        _count("task", "refused", e)
    else:
        _count("task", "accepted")
        assert op != "surrogate"
        for ex in examples:  # documented success: every example is usable
            assert isinstance(ex.context, str) and all(isinstance(c, str) and c.strip() for c in ex.choices)
            assert type(ex.label) is int and 0 <= ex.label < len(ex.choices) and len(set(ex.choices)) == len(ex.choices)
    finally:
        os.unlink(name)


def test_fuzz_report():
    """Runs last in this module: at least one case per target ran, and some of each refused."""
    print("fuzz cases:", dict(sorted(CASES.items())), "total", sum(CASES.values()))
    for target in ("bundle", "adapter", "checkpoint", "yaml", "task"):
        assert CASES.get(f"{target}:refused", 0) > 0, (target, CASES)


@settings(max_examples=60, **SETTINGS)
@given(header=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
       body=st.binary(max_size=200), framed=st.booleans())
def test_fuzz_model_card(tmp_path_factory, header, body, framed):
    """A bundle's README.md (model card) is read as hostile text: any bytes give the header
    mapping or a one-line ScaleOTError, never another exception."""
    from scaleot.validate.files import check_model_card

    path = tmp_path_factory.mktemp("card") / "README.md"
    path.write_bytes((b"---\n" + header + b"\n---\n" + body) if framed else header + body)
    try:
        doc = check_model_card(path, "README.md", "bundle")
    except ScaleOTError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(doc, dict)
