"""lm-eval multiple-choice accuracy and perplexity, checked against by-hand references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scaleot.data import SplitConfig, load_task
from scaleot.evaluation import evaluate_mc, mc_table, perplexity, task_slug


def _reference_correct(model, tokenizer, examples):
    """Per-example by-hand ``acc`` (True/False), in the order of ``examples``."""
    return _reference_scores(model, tokenizer, examples, per_example=True)


def _reference_scores(model, tokenizer, examples, per_example=False):
    """Sum of log-probabilities of each choice's tokens given the context, by hand."""
    acc, acc_norm = [], []
    for ex in examples:
        ctx = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
        lls = []
        for choice in ex.choices:
            cont = tokenizer(choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            target = ids[0, 1:]
            lls.append(logp[len(ctx) - 1:, :].gather(1, target[len(ctx) - 1:, None]).sum().item())
        acc.append(max(range(len(lls)), key=lls.__getitem__) == ex.label)
        norm = [ll / len(c) for ll, c in zip(lls, ex.choices, strict=True)]
        acc_norm.append(max(range(len(norm)), key=norm.__getitem__) == ex.label)
    if per_example:
        return acc
    return sum(acc) / len(acc), sum(acc_norm) / len(acc_norm)


def test_lm_eval_accuracy_matches_reference(tiny_llama, hf_tokenizer, tiny_task_file):
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    torch.manual_seed(1)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(hf_tokenizer))).eval()
    splits = load_task(str(tiny_task_file), SplitConfig(seed=0, n_test=20, n_val=5))
    result = evaluate_mc(model, hf_tokenizer, [splits], batch_size=4)[str(tiny_task_file)]
    ref_acc, ref_norm = _reference_scores(model, hf_tokenizer, splits.test)
    assert result["n"] == 20
    assert result["acc"] == pytest.approx(ref_acc)
    assert result["acc_norm"] == pytest.approx(ref_norm)
    assert result["acc_stderr"] == pytest.approx(math.sqrt(ref_acc * (1 - ref_acc) / 19), abs=1e-6)
    assert result["split"]["seed"] == 0 and result["split"]["n_test"] == 20
    correct = result["correct"]  # per-example acc in document order, for the paired Delta
    assert len(correct) == result["n"] and set(correct) <= {0, 1}
    assert all(type(c) is int for c in correct)
    assert sum(correct) / len(correct) == pytest.approx(result["acc"])
    assert correct == [int(a) for a in _reference_correct(model, hf_tokenizer, splits.test)]
    assert "| **mean**" not in mc_table({"t": result})


def test_limit_and_slug(tiny_llama, hf_tokenizer, tiny_task_file):
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(hf_tokenizer))).eval()
    splits = load_task(str(tiny_task_file), SplitConfig(n_test=20, n_val=5))
    assert evaluate_mc(model, hf_tokenizer, [splits], limit=7)[str(tiny_task_file)]["n"] == 7
    assert task_slug("bigbench:goal_step_wikihow/goal_inference") == "scaleot_goal_step_wikihow_goal_inference"


def test_perplexity_matches_manual_cross_entropy(tiny_llama):
    blocks = torch.randint(3, 128, (5, 12))
    ppl = perplexity(tiny_llama, blocks, batch_size=2)
    with torch.no_grad():
        logits = tiny_llama(input_ids=blocks).logits[:, :-1]
    ce = F.cross_entropy(logits.reshape(-1, 128), blocks[:, 1:].reshape(-1))
    assert ppl == pytest.approx(math.exp(ce.item()), rel=1e-5)


def _row(correct: list[int] | None, acc: float | None = None) -> dict:
    """An evaluate_mc-like result; without ``correct`` like results saved before it was kept."""
    n = len(correct) if correct else 10
    acc = sum(correct) / n if acc is None else acc
    row = {"acc": acc, "acc_stderr": math.sqrt(acc * (1 - acc) / (n - 1)), "n": n}
    if correct is not None:
        row["correct"] = correct
    return row


def test_delta_paired_stderr_matches_numpy():
    import numpy as np

    from scaleot.evaluation.offsite import summarise
    from scaleot.evaluation.tables import offsite_table

    # Positively correlated: Emu FT gets right a subset of what Plug-in gets right.
    plug_a = [1, 1, 1, 0, 1, 1, 0, 1, 1, 0]
    emu_a = [1, 0, 1, 0, 1, 0, 0, 1, 1, 0]
    plug_b = [0, 1, 1, 1, 0, 1, 1, 0, 1, 1]
    emu_b = [0, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    rows = {"a": {"Plug-in": _row(plug_a), "Emu FT": _row(emu_a)},
            "b": {"Plug-in": _row(plug_b), "Emu FT": _row(emu_b)}}
    doc = summarise(rows)
    ses, unpaired = [], []
    for task, p, e in (("a", plug_a, emu_a), ("b", plug_b, emu_b)):
        d = doc["delta"][task]
        diff = np.array(p) - np.array(e)
        se = np.std(diff, ddof=1) / np.sqrt(len(diff))
        old = math.sqrt(rows[task]["Plug-in"]["acc_stderr"] ** 2 + rows[task]["Emu FT"]["acc_stderr"] ** 2)
        assert d["paired"] is True
        assert d["acc"] == pytest.approx(np.mean(p) - np.mean(e))
        assert d["stderr"] == pytest.approx(se)
        assert d["stderr_unpaired"] == pytest.approx(old)
        assert d["stderr"] < d["stderr_unpaired"]  # positive correlation shrinks it
        ses.append(se)
        unpaired.append(old)
    avg = doc["delta"]["average"]
    assert avg["paired"] is True
    assert avg["stderr"] == pytest.approx(math.sqrt(sum(s**2 for s in ses)) / 2)
    assert avg["stderr_unpaired"] == pytest.approx(math.sqrt(sum(s**2 for s in unpaired)) / 2)
    assert "(paired for Delta)" in offsite_table(doc)


def test_delta_without_correct_falls_back_to_unpaired():
    from scaleot.evaluation.offsite import summarise
    from scaleot.evaluation.tables import offsite_table

    old = {"Plug-in": _row(None, 0.6), "Emu FT": _row(None, 0.4)}  # saved before `correct` existed
    new = {"Plug-in": _row([1, 0] * 5), "Emu FT": _row([1, 0, 0, 0, 1] * 2)}
    mismatched = {"Plug-in": _row([1, 0] * 5), "Emu FT": _row([1, 0, 0] * 3)}  # lengths differ
    doc = summarise({"old": old, "new": new, "mismatched": mismatched})
    for task, rows in (("old", old), ("mismatched", mismatched)):
        d = doc["delta"][task]
        expect = math.hypot(rows["Plug-in"]["acc_stderr"], rows["Emu FT"]["acc_stderr"])
        assert d["paired"] is False
        assert d["stderr"] == pytest.approx(expect) and d["stderr_unpaired"] == pytest.approx(expect)
    assert doc["delta"]["new"]["paired"] is True
    assert doc["delta"]["average"]["paired"] is False
    assert "(conservative, unpaired for Delta)" in offsite_table(doc)
