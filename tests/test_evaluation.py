"""lm-eval multiple-choice accuracy and perplexity, checked against by-hand references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scaleot.data import SplitConfig, load_task
from scaleot.evaluation import evaluate_mc, mc_table, perplexity, task_slug


def _reference_scores(model, tokenizer, examples):
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
