"""scaleot audit: the hardened leak scan, the recovery attack, the recipe and its errors (issue 16)."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.model_owner.audit import AuditConfig, near_copies, scan
from scaleot.model_owner.audit.leak_scan import effective_ranks, withheld_weights
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from tests.emulator_helpers import make_model
from tests.finetune_helpers import one_thread  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def uniform():
    """A tiny model (8 blocks, adapter 2+2) and its uniform emulator keeping 2 of 4 middle blocks."""
    model = make_model()
    bundle = build_emulator(model, EmulatorConfig(method="uniform", keep=2, beta=0.0, diagnostic_blocks=0))
    return model, bundle


def _dropped_and_kept(bundle):
    lm = bundle.info["layer_map"]
    kept = [e for e in lm if e["kind"] == "kept"]
    dropped = sorted(set(range(2, 6)) - {e["source"] for e in kept})
    return dropped, kept


def test_clean_emulator_passes_the_scan(uniform):
    model, bundle = uniform
    doc = scan(bundle.model, model, bundle.info)
    assert doc["ok"], doc
    assert doc["withheld_tensors"] > 0 and len(doc["ranks"]) == 4 * 6  # q,k,v,o of 2+2 adapter and 2 kept blocks


def test_planted_withheld_block_is_caught(uniform):
    model, bundle = uniform
    emu = copy.deepcopy(bundle.model)
    dropped, kept = _dropped_and_kept(bundle)
    withheld_block = model.model.layers[dropped[0]]
    target = emu.model.layers[kept[0]["position"]]
    target.load_state_dict(withheld_block.state_dict())  # ship a withheld block in a kept slot
    doc = scan(emu, model, bundle.info)
    assert not doc["ok"]
    assert any(f"block{dropped[0]}.mlp.down_proj.weight" in line for line in doc["exact"])
    assert any(r["withheld"] == f"block{dropped[0]}.self_attn.q_proj.weight" for r in doc["near_copies"])


@pytest.mark.parametrize("disguise", ["scaled", "transposed", "row slice", "column slice", "noisy", "negated"])
def test_near_copy_is_caught_where_exact_match_is_not_needed(uniform, disguise):
    model, bundle = uniform
    withheld, _ = withheld_weights(model, bundle.info)
    name = next(k for k in withheld if k.endswith("mlp.up_proj.weight"))
    w = withheld[name]  # [64, 32]
    g = torch.Generator().manual_seed(1)
    shipped = {
        "scaled": w * 1.0001,
        "transposed": w.t().contiguous(),
        "row slice": w[10:40].clone(),
        "column slice": w[:, 5:30].clone(),
        "noisy": w + 0.05 * w.std() * torch.randn(w.shape, generator=g),  # cos ~0.999, rel err ~5%
        "negated": -w,
    }[disguise]
    found = near_copies({"planted": shipped, "innocent": torch.randn(64, 32, generator=g)}, withheld)
    assert found and all(r["shipped"] == "planted" for r in found)
    assert any(r["withheld"] == name and r["min_cos"] >= 0.99 for r in found)


def test_rank_above_the_promise_is_caught(uniform):
    model, bundle = uniform
    info = copy.deepcopy(bundle.info)
    info["options"]["beta"] = 0.5  # the config promises SRC rank; the kept blocks ship dense
    ranks = effective_ranks(bundle.model, info)
    bad = [r for r in ranks if not r["ok"]]
    assert bad and {r["kind"] for r in bad} == {"kept"}
    src = build_emulator(model, EmulatorConfig(method="uniform", keep=2, beta=0.5, diagnostic_blocks=0))
    assert all(r["ok"] for r in effective_ranks(src.model, src.info))  # honest SRC factors keep their promise


def test_config_errors_are_one_line():
    with pytest.raises(ScaleOTError) as e:
        AuditConfig(budgets="100,50", attack_corpus="kjv")
    msg = str(e.value)
    assert "\n" not in msg and "budgets" in msg and "attack_corpus" in msg
    assert AuditConfig(budgets="1e3,20k").budget_list == [1000, 20000]


LETTERS = {c: i % 2 for i, c in enumerate("abcdefgh")}  # a fixed yes/no per letter


def _tiny_world(root):
    """A random 6-block llama with a word-level tokenizer, its uniform emulator, a learnable
    task (``Q: <letter>`` -> `` yes``/`` no``) and public text that teaches it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import _build_hf_tokenizer

    tok = _build_hf_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                                         max_position_embeddings=128, tie_word_embeddings=True,
                                         pad_token_id=0, bos_token_id=1, eos_token_id=2))
    model_dir = root / "tiny"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    emu = root / "emu"
    cfg = EmulatorConfig(method="uniform", n_bottom=1, n_top=1, keep=2, beta=0.0, diagnostic_blocks=0)
    build_emulator(model.eval(), cfg, tokenizer=tok, base_model=str(model_dir)).save(emu)
    rng = random.Random(0)
    task = root / "letters.jsonl"
    with open(task, "w") as f:
        for _ in range(80):
            c = rng.choice(list(LETTERS))
            f.write(json.dumps({"context": f"Q: {c}", "choices": [" yes", " no"], "label": LETTERS[c]}) + "\n")
    text = root / "public.txt"
    text.write_text("\n\n".join(" ".join(f"Q: {c} {['yes', 'no'][LETTERS[c]]}" for c in rng.choices(list(LETTERS), k=8))
                                for _ in range(300)))
    return model_dir, emu, task, text


def test_attack_recovers_a_learnable_task_and_gates_the_release(tmp_path, one_thread):  # noqa: F811
    """End to end through the CLI: the attack is not a no-op; R undefined or high -> exit 1."""
    from scaleot.cli import main

    model_dir, emu, task, text = _tiny_world(tmp_path)
    out = tmp_path / "audit"
    args = ["audit", "--emulator", str(emu), "--model", str(model_dir), "--out", str(out), "--tasks", str(task),
            "--n-test", "40", "--ppl-corpus", str(text), "--ppl-blocks", "4", "--attack-corpus", str(text),
            "--budgets", "1024,4096", "--attack-lr", "1e-2", "--attack-batch", "8", "--block-size", "16",
            "--checkpoint-every", "10", "--no-progress", "--device", "cpu", "--transfer-tasks", ""]
    assert main(args) == 1
    doc = json.loads((out / "audit.json").read_text())
    emu_zs, attacked = doc["emulator_zs"]["acc"], doc["attack"][-1]["acc"]
    assert attacked >= emu_zs + 0.25, (emu_zs, [r["acc"] for r in doc["attack"]])
    assert [r["tokens"] for r in doc["attack"]] == [1024, 4096]
    assert doc["attack_recipe"]["steps"] == [8, 32] and doc["attack_recipe"]["corpus"] == str(text)
    assert "max_recovery (R at 4096 tokens)" in doc["verdict"]["broken"][0]
    assert {"audit.json", "report.md", "manifest.json", "log.jsonl"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()
    assert "Verdict: FAIL" in (out / "report.md").read_text()
    from scaleot.model_owner.audit.report import audit_columns

    row = audit_columns({"tiny": doc}).splitlines()[4]  # scaleot run's audit section
    assert row.startswith("| tiny | - | ") and "FAIL: max_recovery" in row and "| 4096 |" in row


def test_adding_a_budget_on_resume_continues_the_same_attack(tmp_path, one_thread):  # noqa: F811
    """Budget 1 kept, then --resume with a larger budget == one run with both budgets (same batches)."""
    from scaleot.cli import main

    model_dir, emu, task, text = _tiny_world(tmp_path)

    def audit(out, budgets, *extra):
        args = ["audit", "--emulator", str(emu), "--model", str(model_dir), "--out", str(tmp_path / out),
                "--tasks", str(task), "--n-test", "16", "--ppl-corpus", str(text), "--ppl-blocks", "2",
                "--attack-corpus", str(text), "--budgets", budgets, "--attack-lr", "1e-2", "--attack-batch", "4",
                "--block-size", "16", "--checkpoint-every", "100", "--no-progress", "--device", "cpu",
                "--transfer-tasks", "", *extra]
        assert main(args) in (0, 1)
        doc = json.loads((tmp_path / out / "audit.json").read_text())
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in doc["attack"]]

    audit("grown", "256", "--keep-checkpoints")
    grown = audit("grown", "256,1024", "--resume")
    whole = audit("whole", "256,1024")
    assert [r["tokens"] for r in whole] == [256, 1024]
    assert grown == whole


@pytest.mark.parametrize("extra, needle", [
    (["--emulator", "/nonexistent/emu"], "not a folder"),
    (["--budgets", "10,5"], "budgets must be positive and increasing"),
    (["--attack-corpus", "kjv"], "must differ"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, needle):
    from scaleot.cli import main

    args = ["audit", "--emulator", str(tmp_path), "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scaleot: error:") and needle in err and "\n" not in err


def test_run_yaml_audit_section(tmp_path):
    """``audit:`` in the run YAML: checked at load time, its tasks default to the job's."""
    import yaml

    from scaleot.recipes.run import load_run_config

    base = {"tasks": ["gen:arithmetic"], "emulators": [{"name": "u", "method": "uniform"}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(dict(base, audit={"budgets": "1000,5000"})))
    cfg = load_run_config(path)
    assert cfg["audit"]["tasks"] == "gen:arithmetic" and AuditConfig(**cfg["audit"]).budget_list == [1000, 5000]
    path.write_text(yaml.safe_dump(dict(base, audit={"budget": "1000", "max_recovery": 2})))
    with pytest.raises(ScaleOTError) as e:
        load_run_config(path)
    assert "audit: unknown options ['budget']" in str(e.value) and "\n" not in str(e.value)


def test_attack_resumes_to_the_uninterrupted_run(tmp_path):
    """A budget is a resumable step: stop after budget 1, resume, finish = one uninterrupted run."""
    from scaleot.model_owner.audit import RecoveryAttack
    from scaleot.run_folder import RunFolder

    blocks = torch.randint(3, 128, (10, 16), generator=torch.Generator().manual_seed(0))
    budgets = [(64, 2), (192, 6)]

    def attack(folder, model):
        return RecoveryAttack(model, blocks, RunFolder(folder, {"lr": 1e-3}), lr=1e-3, batch=4, checkpoint_every=3)

    def evaluate():
        return {"acc": 0.5}

    whole = attack(tmp_path / "a", make_model(n_layers=2))
    whole.run(budgets, evaluate, progress=False)
    from scaleot.model_owner.audit.recovery import AttackPaused

    first = attack(tmp_path / "b", make_model(n_layers=2))
    first.run(budgets[:1], evaluate, progress=False)
    paused = attack(tmp_path / "b", make_model(n_layers=2))
    paused.resume()
    paused.deadline = 0.0  # a time limit: checkpoint after the next step and stop
    with pytest.raises(AttackPaused):
        paused.run(budgets, evaluate, progress=False)
    second = attack(tmp_path / "b", make_model(n_layers=2))
    assert second.resume() and second.step == 3 and [r["tokens"] for r in second.results] == [64]
    results = second.run(budgets, evaluate, progress=False)
    assert [r["tokens"] for r in results] == [64, 192] and second.step == 6
    for name, p in whole.named.items():
        torch.testing.assert_close(second.named[name], p)


def test_attack_corpus_refused_when_stage1_trained_on_it(tmp_path):
    """emulator.json records stage 1's corpus (``importance.corpus``): an attack on that text is
    refused without the owner repeating it as ``--owner-corpus``; other text is accepted."""
    from scaleot.recipes.audit import AuditRecipe, AuditRun
    from scaleot.recipes.run_options import RunOptions

    owner_text, other_text = tmp_path / "owner.jsonl", tmp_path / "other.jsonl"
    owner_text.write_text('{"text": "harmonizer text"}\n')
    other_text.write_text('{"text": "public text"}\n')
    (tmp_path / "emu").mkdir()
    info = {"method": "scaleot", "options": {}, "importance": {"corpus": str(owner_text)}}

    def recipe(corpus):
        return AuditRecipe(AuditRun(emulator=tmp_path / "emu", run=RunOptions(out=tmp_path / "audit"),
                                    config=AuditConfig(attack_corpus=str(corpus))))

    with pytest.raises(ScaleOTError, match="trained this emulator on it"):
        recipe(owner_text).check_corpus(info)
    recipe(other_text).check_corpus(info)  # not the harmonizers' text: allowed
    recipe(other_text).check_corpus({"method": "uniform", "options": {}, "importance": None})


def test_recovery_view_of_the_privacy_utility_plot(tmp_path):
    """The third view: one point per attacked emulator at (recovered ZS, Plug-in), from its Emu ZS."""
    from scaleot.report.plots import recovery_plot, recovery_points

    def audit(emu, attacked):
        return {"full": {"acc": 0.5}, "emulator_zs": {"acc": emu},
                "attack": [{"tokens": 100, "acc": emu + 0.01}, {"tokens": 1000, "acc": attacked}]}

    def evals(plug):
        return {"average": {"Plug-in": {"acc": plug, "acc_stderr": 0.01}}}

    audits = {"a": audit(0.2, 0.35), "b": audit(0.3, 0.32), "never_attacked": {**audit(0.3, 0.3), "attack": []}}
    docs = {"a": evals(0.45), "b": evals(0.48), "never_attacked": evals(0.4)}
    points = recovery_points(audits, docs)
    assert [p[0] for p in points] == ["a", "b"]
    assert points[0][1:] == pytest.approx((20.0, 35.0, 45.0)) and points[1][1:] == pytest.approx((30.0, 32.0, 48.0))
    path = recovery_plot(audits, docs, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert recovery_plot({"c": {**audit(0.2, 0.2), "attack": []}}, docs, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_recovered_accuracy_threshold_judges_the_end_accuracy_not_r():
    """Two emulators end at the same attacked accuracy: R passes the one that started high and
    fails the one that started low; max_recovered_acc treats them alike."""
    from scaleot.model_owner.audit.report import verdict

    clean = {"exact": [], "near_copies": [], "rank_violations": []}
    cfg = AuditConfig(max_recovery=0.5, max_recovered_acc=0.37)
    high = verdict(cfg, clean, {"zs": 0.145}, [{"tokens": 100000, "acc": 0.36, "R": 0.48, "fidelity": 0.6}])
    low = verdict(cfg, clean, {"zs": 0.223}, [{"tokens": 100000, "acc": 0.36, "R": 0.79, "fidelity": 0.6}])
    assert high["ok"] and high["checks"][-1] == {"check": "max_recovered_acc (at 100000 tokens)", "value": 0.36,
                                                  "threshold": 0.37, "ok": True}
    assert low["broken"] == ["max_recovery (R at 100000 tokens)"]  # R alone tells them apart
    strict = verdict(AuditConfig(max_recovery=None, max_recovered_acc=0.35), clean, {"zs": 0.145},
                     [{"tokens": 100000, "acc": 0.36, "R": 0.48, "fidelity": 0.6}])
    assert strict["broken"] == ["max_recovered_acc (at 100000 tokens)"]
    assert not any("recovered_acc" in c["check"] for c in verdict(AuditConfig(), clean, {"zs": 0.1},
                                                                   [{"tokens": 1, "acc": 0.9, "R": 0.1,
                                                                     "fidelity": 0.5}])["checks"])


def test_transfer_check_runs_on_the_shipped_emulator_and_gates_the_release(tmp_path, one_thread, monkeypatch):  # noqa: F811
    """The audit runs the transfer check on the emulator as shipped (before the attack changes
    it), reports it, judges it by --min-transfer-ratio, and --resume reuses transfer.json."""
    import scaleot.model_owner.audit.transfer_check as tc
    from scaleot.cli import main
    from scaleot.models import fingerprint_model

    model_dir, emu, task, text = _tiny_world(tmp_path)
    calls = []

    def fake_check(full, emulator, layer_map, tokenizer, cfg, autocast=None, progress=True):
        calls.append((fingerprint_model(emulator), list(cfg.tasks), [e["kind"] for e in layer_map]))
        row = {"full_zs": 50.0, "emu_zs": 40.0, "emu_ft": 60.0, "plug_in": 55.0, "reference": 70.0, "n": 10,
               "gain": 5.0, "gain_se": 1.0, "delta": -5.0, "delta_se": 1.0, "ceiling_ratio": 0.25}
        return {"config": {"tasks": list(cfg.tasks), "n_train": 400, "n_dev": 300, "n_heldout": 400, "seed": 0,
                           "tuning": cfg.tuning, "autocast": "none"}, "tasks": {"proxy": row},
                "median_ceiling_ratio": 0.25}

    monkeypatch.setattr(tc, "transfer_check", fake_check)
    out = tmp_path / "audit"

    def audit(*extra):
        return main(["audit", "--emulator", str(emu), "--model", str(model_dir), "--out", str(out), "--tasks",
                     str(task), "--n-test", "16", "--ppl-corpus", str(text), "--ppl-blocks", "2", "--attack-corpus",
                     str(text), "--budgets", "256", "--attack-lr", "1e-2", "--attack-batch", "4", "--block-size", "16",
                     "--transfer-tasks", "gen:arithmetic,gen:sequence", "--no-progress",
                     "--device", "cpu", "--keep-checkpoints", *extra])

    from scaleot.models.emulator import load_emulator

    shipped = fingerprint_model(load_emulator(emu).model)
    assert audit("--min-transfer-ratio", "0.5") == 1
    assert calls == [(shipped, ["gen:arithmetic", "gen:sequence"], calls[0][2])] and "adapter" in calls[0][2]
    doc = json.loads((out / "audit.json").read_text())
    assert doc["transfer"]["median_ceiling_ratio"] == 0.25
    assert "min_transfer_ratio (median over the proxy tasks)" in doc["verdict"]["broken"]
    report = (out / "report.md").read_text()
    assert "## Transfer check" in report and "| proxy | 50.0 | 40.0 | 60.0 | 55.0 | 70.0 | +5.0 ± 1.0 |" in report
    audit("--resume", "--min-transfer-ratio", "0.2")  # the check passes now, and is not redone
    doc = json.loads((out / "audit.json").read_text())
    assert not any("transfer" in b for b in doc["verdict"]["broken"]) and doc["transfer"]["tasks"]["proxy"]["gain"] == 5.0
    assert len(calls) == 1
