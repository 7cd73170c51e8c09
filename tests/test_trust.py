"""Trust boundaries (issue 13): each reported failure, reproduced and refused.

Order follows the issue: outputs, plug's exchange, non-finite numbers, resume provenance,
malformed content, run YAML, task files, kinds, smaller gaps, metadata.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from scaleot.cli import main as cli_main
from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ConfigError, ScaleOTError
from scaleot.exchange.manifest import atomic_output_dir
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.model_owner.plug import plug
from scaleot.models.emulator import load_emulator
from scaleot.outputs import check_output, check_run_dir
from scaleot.recipes.finetune import FinetuneRecipe
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401
from tests.trust_helpers import (  # noqa: F401
    adapters,
    copy_artifact,
    edit_json,
    edit_tensors,
    folder_digest,
    lora_pair,
    remanifest,
)
from tests.trust_helpers import (
    tune_config as _cfg,
)


def _one_error_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.strip().splitlines()
             if x.strip() and "it/s]" not in x and "%|" not in x]
    assert len(lines) == 1 and lines[0].startswith("scaleot: error: "), lines
    assert "Traceback" not in lines[0]
    return lines[0]


# --------------------------------------------------------------------------- 1. outputs
def test_check_output_refuses_every_destructive_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inp = tmp_path / "emu"
    inp.mkdir()
    (inp / "manifest.json").write_text(json.dumps({"format": "scaleot-manifest", "kind": "emulator"}))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    cases = {
        inp: "overlaps an input", inp / "sub": "overlaps an input", tmp_path: "overlaps an input",
        Path("."): "is ", notes: "not a scaleot adapter", afile: "not a folder",
        afile / "sub": "is not a folder",
    }
    for out, message in cases.items():
        with pytest.raises(ScaleOTError, match=message):
            check_output(out, "adapter", overwrite=True, inputs=[inp])
    with pytest.raises(ScaleOTError, match="holds a 'emulator' artifact"):
        check_output(inp, "adapter", overwrite=True)
    with pytest.raises(ScaleOTError, match="pass --overwrite"):
        check_output(inp, "emulator")
    assert check_output(inp, "emulator", overwrite=True) == inp
    assert check_output(tmp_path / "new" / "deeper", "adapter") == tmp_path / "new" / "deeper"
    assert (notes / "todo.txt").read_text() == "mine" and afile.read_text() == "x"
    # a fresh run into an old run folder needs --overwrite, which clears only the run's own entries
    run = tmp_path / "r.run"
    (run / "checkpoints" / "step-00000002").mkdir(parents=True)
    with pytest.raises(ScaleOTError, match="--resume to continue it or --overwrite"):
        check_run_dir(run, resume=False, overwrite=False)
    check_run_dir(run, resume=False, overwrite=True)
    assert not (run / "checkpoints").exists() and run.is_dir()


def test_atomic_output_dir_cleans_up_and_never_renames_a_file(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:
        (tmp / "big").write_bytes(b"0" * 1000)
        raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == []
    f = tmp_path / "plain"
    f.write_text("keep")
    with pytest.raises(ScaleOTError, match="not a folder"), atomic_output_dir(f):
        pass
    assert sorted(os.listdir(tmp_path)) == ["plain"] and f.read_text() == "keep"


def test_cli_never_destroys_inputs_or_user_folders(tiny_world, adapters, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    lora = adapters["lora"]
    before = {p: folder_digest(p) for p in (emu, lora)}
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "n.txt").write_text("my notes")
    afile = tmp_path / "afile"
    afile.write_text("data")
    calls = [
        (["finetune", "--emulator", str(emu), "--task", str(task), "--out", str(emu)], "overlaps an input"),
        (["plug", "--model", str(model_dir), "--adapter", str(lora), "--emulator", str(emu), "--out", str(lora)],
         "overlaps an input"),
        (["plug", "--model", str(model_dir), "--adapter", str(lora), "--emulator", str(emu), "--out", str(notes)],
         "not a scaleot"),
        (["plug", "--model", str(model_dir), "--adapter", str(lora), "--emulator", str(emu), "--out", str(afile)],
         "not a folder"),
        (["plug", "--model", str(model_dir), "--adapter", str(lora), "--emulator", str(emu), "--out", "."],
         "holds it"),
        (["emulate", "--model", str(model_dir), "--method", "uniform", "--adapter", "1,1", "--out", str(emu)],
         "pass --overwrite"),
        (["finetune", "--emulator", str(emu), "--task", str(task), "--out", str(notes)], "not a scaleot"),
    ]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args, message in calls:
            capsys.readouterr()
            assert cli_main(args) == 2, args
            assert message in _one_error_line(capsys), args
    finally:
        os.chdir(cwd)
    assert {p: folder_digest(p) for p in (emu, lora)} == before
    assert (notes / "n.txt").read_text() == "my notes" and sorted(os.listdir(notes)) == ["n.txt"]
    assert afile.read_text() == "data"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no hidden leftovers


# --------------------------------------------------------------------------- 2. plug enforces the exchange
def _forge(adapter: Path, dst: Path, edit) -> Path:
    forged = copy_artifact(adapter, dst)
    edit(forged)
    remanifest(forged)
    return forged


def _add_lora(path: str, r: int, out_f: int, in_f: int, scale: float = 0.1):
    def edit(folder: Path) -> None:
        a, b = lora_pair(r, out_f, in_f, scale)

        def add(state):
            state[f"base_model.model.{path}.lora_A.weight"] = a
            state[f"base_model.model.{path}.lora_B.weight"] = b

        edit_tensors(folder / "adapter_model.safetensors", add)
    return edit


def _lora_edit(fn):
    return lambda folder: edit_tensors(folder / "adapter_model.safetensors", fn)


def _config_edit(**kw):
    return lambda folder: edit_json(folder / "adapter_config.json", lambda d: d.update(kw))


def _info_edit(**kw):
    return lambda folder: edit_json(folder / "adapter.json", lambda d: d.update(kw))


def _first(state, part):
    return next(k for k in state if part in k)


LORA_FORGERIES = {
    "pair on middle block 2": (_add_lora("model.layers.2.self_attn.q_proj", 8, 32, 32), "outside the adapter"),
    "pair on lm_head": (_add_lora("lm_head", 8, 49152, 32), "outside the adapter"),
    "pair on the embeddings": (_add_lora("model.embed_tokens", 8, 32, 49152), "outside the adapter"),
    "claims a middle block": (_info_edit(adapter_sources=[0, 2, 5]), "not the bundle's adapter blocks"),
    "NaN weight": (_lora_edit(lambda s: s[_first(s, "lora_B")].fill_(math.nan)), "NaN or infinite"),
    "int32 weight": (_lora_edit(lambda s: s.update({_first(s, "lora_B"): s[_first(s, "lora_B")].to(torch.int32)})),
                     "dtype"),
    "missing lora_B": (_lora_edit(lambda s: s.pop(_first(s, "lora_B"))), "needs lora_A and lora_B"),
    "wrong shape": (_lora_edit(lambda s: s.update({_first(s, "lora_A"): torch.zeros(8, 7)})), "shape"),
    "absurd lora_alpha": (_config_edit(lora_alpha=1e30), "lora_alpha"),
    "scale just too large": (_config_edit(lora_alpha=8 * 65.0), "LoRA scale"),
    "r zero": (_config_edit(r=0), "r"),
    "r as a string": (_config_edit(r="8"), "r"),
    "unknown method": (_info_edit(method="bogus"), "method"),
    "other emulator": (_info_edit(emulator_fingerprint="sha256:" + "0" * 64), "not tuned on this emulator"),
    "no base fingerprint": (lambda f: edit_json(f / "adapter.json", lambda d: d.pop("base_fingerprint")),
                            "base_fingerprint"),
}


@pytest.mark.parametrize("case", sorted(LORA_FORGERIES))
def test_plug_refuses_forged_lora_adapters(tiny_world, adapters, tmp_path, case):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    edit, message = LORA_FORGERIES[case]
    forged = _forge(adapters["lora"], tmp_path / "forged", edit)
    with pytest.raises(ScaleOTError, match=message):
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged"]


def test_plug_refuses_a_full_adapter_overwriting_a_middle_block(tiny_world, adapters, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world

    def add_block(folder):
        edit_json(folder / "adapter.json", lambda d: d.update(adapter_sources=[0, 3, 5]))
        state = load_file(str(folder / "adapter.safetensors"))
        edit_tensors(folder / "adapter.safetensors",
                     lambda s: s.update({k.replace("blocks.0.", "blocks.3."): torch.zeros_like(v)
                                         for k, v in state.items() if k.startswith("blocks.0.")}))

    forged = _forge(adapters["full"], tmp_path / "forged", add_block)
    with pytest.raises(ScaleOTError, match="not the bundle's adapter blocks"):
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)
    # the same tensors without the claim: refused as tensors outside the adapter blocks
    edit_json(forged / "adapter.json", lambda d: d.update(adapter_sources=[0, 5]))
    remanifest(forged)
    with pytest.raises(ScaleOTError, match="outside the adapter blocks"):
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)


def test_plug_needs_the_emulator(tiny_world, adapters, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    assert cli_main(["plug", "--model", str(model_dir), "--adapter", str(adapters["lora"]),
                     "--out", str(tmp_path / "o")]) == 2
    assert "--emulator" in _one_error_line(capsys)
    # --self-tuned is for the model owner's own full-model adapter, never a data owner's
    assert cli_main(["plug", "--model", str(model_dir), "--adapter", str(adapters["lora"]), "--self-tuned",
                     "--out", str(tmp_path / "o")]) == 2
    assert "tuned on an emulator" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 3. non-finite numbers
@pytest.mark.parametrize("make", [
    lambda: FinetuneConfig(lr=math.inf), lambda: FinetuneConfig(lr=math.nan),
    lambda: FinetuneConfig(warmup_ratio=math.nan), lambda: ImportanceConfig(eta=math.inf),
    lambda: ImportanceConfig(lr=math.nan),
])
def test_non_finite_options_are_refused(make):
    with pytest.raises(ConfigError, match="finite"):
        make()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_cli_lr_non_finite_is_one_line(tiny_world, tmp_path, capsys, value):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    code = cli_main(["finetune", "--emulator", str(emu), "--task", str(task), "--out", str(tmp_path / "a"),
                     "--lr", value])
    assert code == 2 and "finite" in _one_error_line(capsys)
    assert not (tmp_path / "a").exists()


def test_diverging_training_writes_nothing(tiny_world, one_thread, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    recipe = FinetuneRecipe.of(tmp_path / "a", str(task), _cfg(method="full", lr=1e30, max_grad_norm=0.0), device="cpu", emulator=emu,
                            progress=False)
    with pytest.raises(ScaleOTError, match="diverged"):
        recipe.run()
    assert not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- 4. resume provenance
def test_resume_with_another_task_is_refused(tiny_world, one_thread, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    out = tmp_path / "a"
    FinetuneRecipe.of(out, str(task), _cfg(method="full"), device="cpu", emulator=emu, progress=False).run()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(json.dumps({"context": f"{i} is odd?", "choices": [" yes", " no"], "label": i % 2})
                               for i in range(80)))
    with pytest.raises(ScaleOTError, match="trained on other inputs: task"):
        FinetuneRecipe.of(tmp_path / "b", str(other), _cfg(method="full"), device="cpu", emulator=emu, progress=False,
                       run_dir=out.with_name("a.run"), resume=True).run()
    with pytest.raises(ScaleOTError, match="holds an earlier run"):
        FinetuneRecipe.of(tmp_path / "b", str(other), _cfg(method="full"), device="cpu", emulator=emu, progress=False,
                       run_dir=out.with_name("a.run"))


def test_pruning_touches_only_this_runs_checkpoints(tmp_path):
    from scaleot.checkpoint import latest_checkpoint, save_checkpoint

    w = {"x": torch.zeros(2)}
    for step in (50, 60, 70):  # an old run with higher step numbers
        save_checkpoint(tmp_path, step, w, None, {"provenance": {"task": "old"}}, keep=5)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, w, None, {"provenance": {"task": "new"}}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000004", "step-00000050", "step-00000060", "step-00000070"]
    assert latest_checkpoint(tmp_path).name == "step-00000070"


# --------------------------------------------------------------------------- 5. malformed content
BUNDLE_DAMAGE = {
    "emulator.json is a list": (lambda f: (f / "emulator.json").write_text("[1, 2]"), "expected a JSON object"),
    "emulator.json not UTF-8": (lambda f: (f / "emulator.json").write_bytes(b"{\"a\": \"\xff\xfe\"}"), "UTF-8"),
    "layer map wrong shape": (lambda f: edit_json(f / "emulator.json", lambda d: d.update(layer_map={"a": 1})),
                              "layer_map"),
    "negative SRC rank": (lambda f: edit_json(f / "emulator.json", lambda d: d["layer_map"][1].update(
        src_rank={"q": -3})), "src_rank"),
    "SRC rank string": (lambda f: edit_json(f / "emulator.json", lambda d: d["layer_map"][1].update(
        src_rank={"q": "8"})), "src_rank"),
    "source out of range": (lambda f: edit_json(f / "emulator.json", lambda d: d["layer_map"][1].update(source=99)),
                            "outside the base model"),
    "missing base_fingerprint": (lambda f: edit_json(f / "emulator.json", lambda d: d.pop("base_fingerprint")),
                                 "base_fingerprint"),
    "importance record a list": (lambda f: edit_json(f / "emulator.json", lambda d: d.update(importance=[1])),
                                 "importance"),
    "NaN in JSON": (lambda f: (f / "emulator.json").write_text((f / "emulator.json").read_text().replace(
        '"format_version": 1', '"format_version": NaN')), "NaN"),
    "oversized safetensors header": (lambda f: (f / "model.safetensors").write_bytes(
        (10**12).to_bytes(8, "little") + b"{}"), "corrupt safetensors header"),
    "pickle named .json": (lambda f: (f / "extra.json").write_bytes(b"\x80\x04\x95 pickle"), "not UTF-8|not valid JSON"),
    "bad tokenizer": (lambda f: (f / "tokenizer.json").write_text('{"model": {"type": "Nope"}}'), "tokenizer"),
    "auto_map": (lambda f: edit_json(f / "config.json", lambda d: d.update(auto_map={"AutoModel": "x.Y"})),
                 "remote code"),
}


@pytest.mark.parametrize("case", sorted(BUNDLE_DAMAGE))
def test_malformed_bundles_behind_a_consistent_manifest(tiny_world, tmp_path, case):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    edit, message = BUNDLE_DAMAGE[case]
    bad = copy_artifact(emu, tmp_path / "bad")
    edit(bad)
    remanifest(bad)
    with pytest.raises(ScaleOTError, match=message):
        load_emulator(bad, device="cpu")


def test_links_and_unlisted_files_are_refused(tiny_world, adapters, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    bad = copy_artifact(emu, tmp_path / "bad")
    (tmp_path / "secret.txt").write_text("outside")
    (bad / "notes.txt").symlink_to(tmp_path / "secret.txt")
    remanifest(bad)
    with pytest.raises(ScaleOTError, match="link"):
        load_emulator(bad, device="cpu")
    ad = copy_artifact(adapters["lora"], tmp_path / "ad")
    (ad / "unlisted.json").write_text("{}")
    from scaleot.exchange.adapter import read_adapter

    with pytest.raises(ScaleOTError, match="not listed"):
        read_adapter(ad)
    edit_json(ad / "manifest.json", lambda d: d["files"].update({"../x.json": d["files"]["adapter.json"]}))
    with pytest.raises(ScaleOTError, match="leaves the folder"):
        read_adapter(ad)


# --------------------------------------------------------------------------- 6. run YAML
def test_run_yaml_is_checked_key_by_key_before_work(tmp_path, tiny_world):  # noqa: F811
    from scaleot.recipes.run import load_run_config

    root, model_dir, task, emu = tiny_world
    cfg = {"model": str(model_dir), "tasks": [str(task)],
           "importance": {"steps": "many", "harmonizer": {"rank": 1.5}},
           "emulators": [{"name": "u", "method": "uniform", "alphaa": 0.1}, {"name": "v", "beta": ".inf"}],
           "finetune": {"lr": "fast", "epochs": True}, "ft": {"lr": math.inf},
           "evaluate": {"limitt": 5}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ScaleOTError) as e:
        load_run_config(path)
    msg = str(e.value)
    # unknown keys are listed per section (emulators[u]: unknown options ['alphaa']), bad values by key
    for key in ("importance.steps", "importance.harmonizer.rank", "emulators[u]", "alphaa", "emulators[v].beta",
                "finetune.lr", "finetune.epochs", "ft.lr", "evaluate: unknown options ['limitt']"):
        assert key in msg, (key, msg)
    assert "\n" not in msg
    path.write_bytes(b"tasks: [\xff]\n")
    with pytest.raises(ScaleOTError, match="UTF-8"):
        load_run_config(path)


# --------------------------------------------------------------------------- 7. task files
@pytest.mark.parametrize("line, message", [
    (b'{"context": "q", "choices": ["a", "\xff"], "label": 0}', "UTF-8"),
    (b'{"context": "q", "choices": ["a", 3], "label": 0}', "choice 1"),
    (b'{"context": "q", "choices": ["a", ""], "label": 0}', "choice 1"),
    (b'{"context": "q", "choices": ["a", "b"], "label": true}', "label"),
    (b'{"context": "q", "choices": ["a", "a"], "label": 0}', "the same"),
    (b'{"context": "q", "choices": ["a", "b"], "label": 1.0}', "label"),
    (b'{"context": "' + b"x" * 40_000 + b'", "choices": ["a", "b"], "label": 0}', "longer than"),
])
def test_bad_task_lines_are_refused(tmp_path, line, message):
    from scaleot.data.tasks import load_jsonl_task

    p = tmp_path / "t.jsonl"
    p.write_bytes(b'{"context": "ok", "choices": ["a", "b"], "label": 0}\n' + line + b"\n")
    with pytest.raises(ScaleOTError, match=message):
        load_jsonl_task(p)


# --------------------------------------------------------------------------- 8. kinds
def test_wrong_kinds_of_folder_are_refused(tiny_world, adapters, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    from scaleot.evaluation.offsite import evaluate_offsite
    from scaleot.models import load_model

    with pytest.raises(ScaleOTError, match="'emulator' artifact, not a full model"):
        load_model(str(emu), device="cpu")
    with pytest.raises(ScaleOTError, match="data owner's adapter"):
        evaluate_offsite(str(model_dir), emu, [adapters["lora"]], [adapters["full"]], device="cpu",
                         tasks=[str(task)])


# --------------------------------------------------------------------------- 9. smaller gaps
@pytest.mark.parametrize("args, message", [
    (["emulate", "--adapter", "0,0", "--method", "uniform", "--out", "{tmp}/e"], "at least one block"),
    (["emulate", "--adapter", "-1,2", "--method", "uniform", "--out", "{tmp}/e"], ">= 0"),
    (["fetch", "--model", "nosuchmodel"], "nosuchmodel"),
    (["evaluate", "--autocast", "fp7", "--task", "gen:arithmetic"], "autocast"),
    (["evaluate", "--out", "{tmp}/file/inside.json", "--task", "gen:arithmetic"], "not a folder"),
])
def test_small_gaps_fail_fast_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("x")
    code = cli_main([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2 and message in _one_error_line(capsys)


def test_finetune_negative_sandwich_is_refused(tiny_world, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    with pytest.raises(ScaleOTError, match=">= 0"):
        FinetuneRecipe.of(tmp_path / "a", str(task), _cfg(), device="cpu", model=str(model_dir), blocks="sandwich", adapter="-1,2")
    with pytest.raises(ScaleOTError, match="at least one adapter block"):
        FinetuneRecipe.of(tmp_path / "a", str(task), _cfg(), device="cpu", model=str(model_dir), blocks="sandwich", adapter="0,0")


# --------------------------------------------------------------------------- 10. metadata
def test_shipped_artifacts_carry_no_paths_or_command_lines(tiny_world, adapters):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    for folder in (emu, adapters["lora"], adapters["full"]):
        for name in ("manifest.json", "emulator.json", "adapter.json", "adapter_config.json"):
            p = folder / name
            if p.is_file():
                text = p.read_text()
                assert str(root) not in text and str(task) not in text, (p, text[:300])
                assert "/tmp" not in text, p
        manifest = json.loads((folder / "manifest.json").read_text())
        assert isinstance(manifest["command"], str) and " --" not in manifest["command"]
    data = json.loads((adapters["lora"] / "adapter.json").read_text())["data"]
    assert data["task"] == "undisclosed" and "task_sha256" not in data  # opt-in: finetune --disclose-task


def test_documented_success_still_works(tiny_world, adapters, tmp_path):  # noqa: F811
    """The honest path: an unmodified adapter plugs in, and --overwrite replaces the same kind."""
    root, model_dir, task, emu = tiny_world
    out = plug(str(model_dir), adapters["lora"], tmp_path / "p", device="cpu", emulator=emu)
    with pytest.raises(ScaleOTError, match="pass --overwrite"):
        plug(str(model_dir), adapters["lora"], out, device="cpu", emulator=emu)
    plug(str(model_dir), adapters["lora"], out, device="cpu", emulator=emu, overwrite=True)
    assert (out / "manifest.json").is_file()
    shutil.rmtree(out)


def test_importance_json_schema_names_every_problem():
    from scaleot.exchange.schemas import ImportanceDoc, validate_doc

    doc = {"format_version": 1, "model_fingerprint": "sha256:" + "0" * 64, "num_blocks": 6,
           "adapter": {"n_bottom": 1, "n_top": 1}, "middle": [1, 2, 3, 4], "ranking": [2, 1, 3, 4],
           "scores": {str(i): {"logit": 0.1, "keep_prob": 0.5} for i in (1, 2, 3, 4)}, "harmonizer": {}, "steps": 3}
    validate_doc(ImportanceDoc, doc, "importance.json")
    bad = json.loads(json.dumps(doc))
    bad["ranking"] = [2, 2, 9]
    with pytest.raises(ScaleOTError, match="ranking"):
        validate_doc(ImportanceDoc, bad, "importance.json")
    bad = json.loads(json.dumps(doc))
    bad["scores"]["1"]["keep_prob"] = 2.0
    del bad["model_fingerprint"]
    with pytest.raises(ScaleOTError) as e:
        validate_doc(ImportanceDoc, bad, "importance.json x")
    assert "scores.1.keep_prob" in str(e.value) and "model_fingerprint" in str(e.value)
    assert "importance.json x" in str(e.value)


# =========================================================================== issue 30: the second pass
# Every case of the second fuzz, most severe first: a one-line error before any work, or a
# documented success.
HOSTILE_NAMES = ["../../escape", "/abs/elsewhere", "..", ".", "a/b", ".hidden", "-flag", "x" * 101, "tab\tname",
                 "é"]


def _job(model_dir, task, **kw) -> dict:
    return dict({"model": str(model_dir), "tasks": [str(task)], "device": "cpu",
                 "emulators": [{"name": "u", "method": "uniform", "n_bottom": 1, "n_top": 1}],
                 "finetune": {"max_steps": 1, "n_train": 8, "n_val": 4, "n_test": 16}}, **kw)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_30_1_emulator_names_stay_inside_out(tiny_world, tmp_path, name):  # noqa: F811
    from scaleot.recipes.run import RunRecipe, load_run_config

    root, model_dir, task, emu = tiny_world
    cfg = _job(model_dir, task, emulators=[{"name": name, "method": "uniform", "n_bottom": 1, "n_top": 1}])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ScaleOTError, match="cannot name a folder") as e:
        load_run_config(path)
    assert "\n" not in str(e.value)
    with pytest.raises(ScaleOTError, match="cannot name a folder"):  # the Python API with a dict, too
        RunRecipe(cfg, tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]  # nothing made, nothing replaced


def _bundle_edits():
    def swap_tokens(folder):
        def fn(doc):
            vocab = doc["model"]["vocab"]
            a, b = "the", "and"
            vocab[a], vocab[b] = vocab[b], vocab[a]
        edit_json(folder / "tokenizer.json", fn)

    def share_source(folder):
        def fn(doc):
            middle = [e for e in doc["layer_map"] if e["kind"] not in ("adapter",)]
            middle[-1]["source"] = middle[0]["source"]
        edit_json(folder / "emulator.json", fn)

    return {
        "tokenizer.json token ids swapped": swap_tokens,
        "config.json edited": lambda f: edit_json(f / "config.json", lambda d: d.update(rms_norm_eps=1e-5)),
        "emulator.json relabelled": lambda f: edit_json(f / "emulator.json", lambda d: d.update(method="crash")),
        "layer map shares a source": share_source,
    }


@pytest.mark.parametrize("case", sorted(_bundle_edits()))
def test_30_2_fingerprint_covers_the_whole_bundle(tiny_world, adapters, tmp_path, case):  # noqa: F811
    from scaleot.exchange.bundle import read_bundle_info

    root, model_dir, task, emu = tiny_world
    other = copy_artifact(emu, tmp_path / "other")
    _bundle_edits()[case](other)
    remanifest(other)
    try:
        _, theirs = read_bundle_info(other)
    except ScaleOTError:
        return  # refused outright (a layer map the schema rejects): no adapter can be tuned on it
    _, mine = read_bundle_info(emu)
    assert theirs != mine
    # an adapter tuned on the other bundle (it records that bundle's fingerprint) ...
    forged = _forge(adapters["lora"], tmp_path / "forged", _info_edit(emulator_fingerprint=theirs))
    with pytest.raises(ScaleOTError, match="not tuned on this emulator bundle"):  # ... and the model owner's bundle
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)
    with pytest.raises(ScaleOTError, match="not tuned on this emulator bundle"):  # the honest adapter, other bundle
        plug(str(model_dir), adapters["lora"], tmp_path / "out", device="cpu", emulator=other)
    assert not (tmp_path / "out").exists()


def test_30_2_adapter_really_tuned_on_a_swapped_tokenizer_is_refused(tiny_world, one_thread, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    other = copy_artifact(emu, tmp_path / "other")
    _bundle_edits()["tokenizer.json token ids swapped"](other)
    remanifest(other)
    adapter = FinetuneRecipe.of(tmp_path / "a", str(task), _cfg(method="full", max_steps=1), device="cpu", emulator=other,
                             progress=False).run()  # finetune accepts the data owner's (edited) bundle
    assert cli_main(["plug", "--model", str(model_dir), "--adapter", str(adapter), "--emulator", str(emu),
                     "--out", str(tmp_path / "p"), "--device", "cpu"]) == 2
    assert "not tuned on this emulator bundle" in _one_error_line(capsys)


def test_30_2_an_older_weights_only_fingerprint_is_named(tiny_world, adapters, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    weights = "sha256:" + json.loads((emu / "manifest.json").read_text())["files"]["model.safetensors"]["sha256"]
    forged = _forge(adapters["lora"], tmp_path / "forged", _info_edit(emulator_fingerprint=weights))
    with pytest.raises(ScaleOTError, match="older emulator fingerprint"):
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)


def test_30_3_plug_takes_the_base_model_from_the_bundle_not_the_adapter(  # noqa: F811
        tiny_world, adapters, tmp_path, capsys, monkeypatch):  # noqa: F811
    import scaleot.model_owner.plug as plug_module
    from scaleot.recipes.plug import recorded_base_model

    root, model_dir, task, emu = tiny_world
    opened = []
    monkeypatch.setattr(plug_module, "load_model", lambda m, **kw: opened.append(m) or (_ for _ in ()).throw(
        ScaleOTError(f"opened {m}")))
    for claim in ("/etc", "smollm2-135m", "../../x"):
        forged = _forge(adapters["lora"], tmp_path / f"forged{len(opened)}{claim[:2]}", _info_edit(base_model=claim))
        assert cli_main(["plug", "--adapter", str(forged), "--emulator", str(emu), "--out", str(tmp_path / "p"),
                         "--device", "cpu"]) == 2
        line = _one_error_line(capsys)
        assert "pass --model" in line and claim not in line.split("records")[-1], line  # the bundle's name, local
        shutil.rmtree(forged)
    assert opened == []  # nothing the adapter named was opened
    # a bundle recording a hub id or known name gives the default; paths never do
    assert recorded_base_model({"base_model": "HuggingFaceTB/SmolLM2-135M"}) == "HuggingFaceTB/SmolLM2-135M"
    for bad in ("/etc", "../x/y", "~/m", "./m", "a/../b", "", None):
        with pytest.raises(ScaleOTError, match="pass --model"):
            recorded_base_model({"base_model": bad})
    # --self-tuned has no bundle: --model is needed
    assert cli_main(["plug", "--adapter", str(adapters["full"]), "--self-tuned", "--out", str(tmp_path / "p")]) == 2
    assert "--self-tuned needs --model" in _one_error_line(capsys)


def test_30_4_out_without_a_name_and_lone_surrogates_are_one_line(tiny_world, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    for out in ("/", ".", ".."):
        assert cli_main(["finetune", "--task", str(task), "--emulator", str(emu), "--out", out]) == 2, out
        _one_error_line(capsys)
    bad = tmp_path / "sur.jsonl"
    bad.write_text('{"context": "Q \\ud800", "choices": [" a", " b"], "label": 0}\n'
                   + "".join(json.dumps({"context": f"q{i}", "choices": [" a", " b"], "label": 0}) + "\n"
                             for i in range(40)))
    assert cli_main(["finetune", "--task", str(bad), "--emulator", str(emu), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert "line 1" in line or ":1:" in line, line
    assert "surrogate" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sur.jsonl"]  # refused at load: no run folder


def test_30_5_duplicate_yaml_keys_are_refused(tiny_world, tmp_path):  # noqa: F811
    from scaleot.recipes.run import load_run_config

    root, model_dir, task, emu = tiny_world
    path = tmp_path / "job.yaml"
    text = yaml.safe_dump(_job(model_dir, task))
    for dup in (text + "device: cuda\n", text.replace("finetune:\n", "finetune:\n  max_steps: 5\n")):
        path.write_text(dup)
        with pytest.raises(ScaleOTError, match="duplicate key") as e:
            load_run_config(path)
        assert "\n" not in str(e.value)
    from scaleot.validate.files import load_yaml_unique

    assert load_yaml_unique("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n") == {"a": {"k": 1}, "b": {"k": 2}}


def test_30_5_out_names_near_the_limit_fail_before_work(tiny_world, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    for n in (255, 245, 236):  # 236 + ".run" + the hidden working name's 16 bytes > 255
        out = tmp_path / ("o" * n)
        assert cli_main(["finetune", "--task", str(task), "--emulator", str(emu), "--out", str(out)]) == 2, n
        assert "name is" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # no .run folder left behind
    from scaleot.outputs import check_out_name

    assert check_out_name(tmp_path / ("o" * 239)).name == "o" * 239  # fits on its own (plug, emulate)


@pytest.mark.parametrize("flag, value, message", [
    ("--max-length", "99999999999999999999", "max_length must be <="),
    ("--max-length", "200000", "max_length must be <="),
    ("--batch-size", "99999999999999999999", "batch_size must be below"),
    ("--steps", "99999999999999999999", "max_steps must be below"),
])
def test_30_5_absurd_numbers_are_refused(tiny_world, tmp_path, capsys, flag, value, message):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    assert cli_main(["finetune", "--task", str(task), "--emulator", str(emu), "--out", str(tmp_path / "o"),
                     flag, value]) == 2
    assert message in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_30_5_a_task_repeating_its_examples_is_warned(tiny_world, one_thread, tmp_path, caplog):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    same = tmp_path / "same.jsonl"
    same.write_text("".join(json.dumps({"context": "Is 2 even?\nA:", "choices": [" yes", " no"], "label": 0}) + "\n"
                              for _ in range(60)))
    with caplog.at_level("WARNING", logger="scaleot.recipes.finetune"):
        out = FinetuneRecipe.of(tmp_path / "a", str(same), _cfg(method="full", max_steps=1), device="cpu", emulator=emu,
                             progress=False).run()
    assert (out / "manifest.json").is_file()  # documented success, with the warning
    assert any("16 of 16 test examples" in r.getMessage() and "memory" in r.getMessage() for r in caplog.records)


def test_30_5_adapter_split_claim_must_match_the_bundle(tiny_world, adapters, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    for edit in (_info_edit(adapter={"n_bottom": 3, "n_top": 1}), _info_edit(n_bottom=3)):
        forged = _forge(adapters["lora"], tmp_path / "forged", edit)
        with pytest.raises(ScaleOTError, match="claims the adapter split"):
            plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)
        shutil.rmtree(forged)


def test_30_6_empty_context_is_named_not_divergence(tiny_world, one_thread, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    empty = tmp_path / "empty.jsonl"
    empty.write_text("".join(json.dumps({"context": "", "choices": [" yes", " no"], "label": i % 2}) + "\n"
                             for i in range(60)))
    assert cli_main(["finetune", "--task", str(empty), "--emulator", str(emu), "--out", str(tmp_path / "o"),
                     "--device", "cpu", "--n-val", "4", "--n-test", "8", "--steps", "1"]) == 2
    line = _one_error_line(capsys)
    assert "no answer token" in line and "diverged" not in line, line


def test_30_6_float64_adapter_names_the_dtypes(tiny_world, adapters, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    forged = _forge(adapters["lora"], tmp_path / "forged",
                    _lora_edit(lambda s: s.update({_first(s, "lora_B"): s[_first(s, "lora_B")].double()})))
    with pytest.raises(ScaleOTError, match="dtype float64, expected float32, float16 or bfloat16"):
        plug(str(model_dir), forged, tmp_path / "out", device="cpu", emulator=emu)


def test_30_6_resume_names_every_difference(tiny_world, one_thread, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    out = tmp_path / "a"
    FinetuneRecipe.of(out, str(task), _cfg(method="full", max_steps=1), device="cpu", emulator=emu, progress=False).run()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(json.dumps({"context": f"{i} is odd?", "choices": [" yes", " no"], "label": i % 2})
                               for i in range(80)))
    with pytest.raises(ScaleOTError) as e:
        FinetuneRecipe.of(tmp_path / "b", str(other), _cfg(method="full", max_steps=1, lr=5e-3, seed=3), device="cpu", emulator=emu,
                       progress=False, run_dir=out.with_name("a.run"), resume=True).run()
    msg = str(e.value)
    assert "options differ (lr, seed)" in msg and "task" in msg.split("other inputs")[-1] and "\n" not in msg, msg


def test_30_7_task_name_and_hash_are_opt_in(tiny_world, one_thread, tmp_path):  # noqa: F811
    from scaleot.exchange.disclosure import public_task, task_matches

    root, model_dir, task, emu = tiny_world
    cfg = _cfg(method="full", max_steps=1)
    quiet = FinetuneRecipe.of(tmp_path / "q", str(task), cfg, device="cpu", emulator=emu, progress=False).run()
    told = FinetuneRecipe.of(tmp_path / "t", str(task), cfg, device="cpu", emulator=emu, progress=False, disclose_task=True).run()
    q = json.loads((quiet / "adapter.json").read_text())["data"]
    t = json.loads((told / "adapter.json").read_text())["data"]
    assert q["task"] == "undisclosed" and "task_sha256" not in q and task.name not in json.dumps(q)
    assert t["task"] == task.name and t["task_sha256"].startswith("sha256:")
    assert q["n_train"] == t["n_train"]  # the split sizes always travel (documented)
    assert public_task("gen:arithmetic") == {"task": "gen:arithmetic"}  # public names as given
    assert public_task("pkg:rhyme?n=10") == {"task": "pkg:rhyme?n=10"}
    assert public_task("hf:me/private") == {"task": "undisclosed"}
    assert task_matches(q, str(task)) and task_matches(t, str(task)) and not task_matches(q, "gen:arithmetic")
