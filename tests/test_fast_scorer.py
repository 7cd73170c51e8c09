"""The context-sharing scorer against lm-eval: same predictions, same log-likelihoods (fp32, 1e-3).

Tiny random models of every architecture family in the table, on random examples whose
contexts run past the model's window (left truncation) and past gemma3's sliding window;
the real default model on three BIG-bench tasks (smoke); the edge cases; the fallback.
Runs single-threaded: these models are tiny, and two threads on a shared CPU cost 100x.
"""

from __future__ import annotations

import logging
import random

import pytest
import torch

from scaleot.data import MCExample
from scaleot.data.tasks import TaskSplits
from scaleot.errors import ScaleOTError
from scaleot.evaluation import evaluate_mc
from scaleot.evaluation.fast_mc import (
    LmEvalEncoder,
    encode_examples,
    fast_scorer_problem,
    score_examples,
)
from tests.finetune_helpers import one_thread  # noqa: F401
from tests.test_arch import make

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2", "opt"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(model_type: str):
    """A 4-block random model (window 64; gemma3: sliding window 8)."""
    if model_type == "qwen3":
        import transformers as tf

        torch.manual_seed(0)
        cfg = tf.Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, vocab_size=96, max_position_embeddings=64)
        return tf.AutoModelForCausalLM.from_config(cfg).eval()
    return make(model_type)


def random_task(tokenizer, n: int = 16, seed: int = 0, longest: int = 70) -> TaskSplits:
    """Examples of 1..``longest`` words (past a 64-token window), 2-5 choices of 1-4 words; some
    contexts end in a space (lm-eval moves it onto the choices), one is empty (BOS prefix)."""
    words = [w for w in tokenizer.get_vocab() if not w.startswith("<")]
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        context = " ".join(rng.choice(words) for _ in range(rng.randint(1, longest)))
        if i % 5 == 0:
            context += " "
        if i == 3:
            context = ""
        k = rng.randint(2, 5)
        choices = [" " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(k)]
        examples.append(MCExample(context, choices, rng.randrange(k)))
    return TaskSplits("random", [], [], examples)


def assert_same(reference: dict, fast: dict, tol: float = 1e-3) -> None:
    assert reference["scorer"] == "lm-eval" and fast["scorer"] == "fast"
    assert fast["correct"] == reference["correct"]
    for key in ("acc", "acc_norm", "acc_stderr", "acc_norm_stderr", "n", "truncated"):
        assert fast[key] == pytest.approx(reference[key], abs=1e-9), key
    for ref, got in zip(reference["loglikelihoods"], fast["loglikelihoods"], strict=True):
        assert got == pytest.approx(ref, abs=tol)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_fast_scorer_matches_lm_eval(model_type, hf_tokenizer, monkeypatch):
    from scaleot.evaluation import fast_mc

    monkeypatch.setattr(fast_mc, "CONTEXT_BUDGET", 100)  # several batches, several choice chunks per batch
    monkeypatch.setattr(fast_mc, "CACHE_BUDGET", 200)
    model = tiny(model_type)
    task = random_task(hf_tokenizer)
    kw = dict(batch_size=4, keep_loglikelihoods=True)
    reference = evaluate_mc(model, hf_tokenizer, [task], scorer="lm-eval", **kw)["random"]
    fast = evaluate_mc(model, hf_tokenizer, [task], scorer="fast", **kw)["random"]
    assert_same(reference, fast)
    assert fast["truncated"] >= 1  # contexts of up to 70 words in a 64-token window


def test_emulator_like_model_with_replaced_blocks(hf_tokenizer):
    """Blocks without attention (harmonizer / dropped) at the first position of each attention type."""
    from scaleot.exchange.layers import IdentityBlock
    from scaleot.models import get_blocks, set_blocks

    model = tiny("gemma3_text")  # layer 0 sliding, layer 1 full: both replaced
    blocks = get_blocks(model)
    set_blocks(model, [IdentityBlock(), IdentityBlock(), blocks[2], blocks[3]], [0, 1, 2, 3])
    assert fast_scorer_problem(model) is None
    task = random_task(hf_tokenizer, n=8, seed=1)
    kw = dict(batch_size=4, keep_loglikelihoods=True)
    assert_same(evaluate_mc(model, hf_tokenizer, [task], scorer="lm-eval", **kw)["random"],
                evaluate_mc(model, hf_tokenizer, [task], scorer="fast", **kw)["random"])


def test_tokenisation_is_lm_evals(hf_tokenizer):
    """Our encoder against HFLM's own ``loglikelihood`` tokenisation, trailing spaces and empty contexts."""
    from lm_eval.models.huggingface import HFLM

    model = tiny("llama")
    lm = HFLM(pretrained=model, tokenizer=hf_tokenizer, batch_size=1, device="cpu")
    enc = LmEvalEncoder(hf_tokenizer)
    for context, cont in [("Q: the sky is A:", " blue"), ("Q: the sky is A: ", "blue"), ("the  cat ", " is red"),
                          ("<bos> the dog", " is"), ("", " yes"), ("", "<bos> no")]:
        if context:
            assert enc.pair(context, cont) == lm._encode_pair(context, cont)
        else:  # TemplateLM.loglikelihood's empty-context branch
            ids = lm.tok_encode(cont, add_special_tokens=False)
            want = ([lm.prefix_token_id], ids) if ids[0] != lm.prefix_token_id else (ids[:1], ids[1:])
            assert enc.pair(context, cont) == want


def test_truncation_counts_and_bound(hf_tokenizer):
    model = tiny("llama")
    long = " ".join(["the cat is red"] * 20)  # 80 words
    task = [MCExample(long, [" yes", " no the dog"], 0), MCExample("the dog is", [" red", " blue"], 1)]
    encoded = encode_examples("t", task, hf_tokenizer, window=64)
    assert encoded.truncated == 1
    # the truncated example's choices keep different amounts of context: two groups, both of <= 64 tokens
    groups = [g for g in encoded.groups if g.example == 0]
    assert len(groups) == 2
    assert all(len(g.context) + len(g.choices[0][1]) == 65 for g in groups)
    assert encoded.tokens_fast < encoded.tokens_lm_eval
    lls = score_examples(model, hf_tokenizer, task, window=64).loglikelihoods
    assert all(ll < 0 for row in lls for ll in row)


@pytest.mark.parametrize("scorer", ["fast", "lm-eval"])
@pytest.mark.parametrize("choices, message", [
    ([" yes", ""], "empty choice"),
    ([" yes"], "at least 2"),
    ([" yes", " " * 1], "no tokens of its own"),
    ([" yes", " the" * 70], "more than the model's window"),
])
def test_bad_choices_give_one_line_errors(hf_tokenizer, scorer, choices, message):
    model = tiny("llama")
    task = TaskSplits("bad", [], [], [MCExample("the sky is", choices, 0)])
    with pytest.raises(ScaleOTError, match=message) as err:
        evaluate_mc(model, hf_tokenizer, [task], scorer=scorer)
    assert "\n" not in str(err.value)


def test_unknown_scorer_is_refused(hf_tokenizer):
    with pytest.raises(ScaleOTError, match="unknown scorer"):
        evaluate_mc(tiny("llama"), hf_tokenizer, [random_task(hf_tokenizer, n=2)], scorer="quick")


def test_falls_back_to_lm_eval_and_says_so(hf_tokenizer, caplog):
    """An architecture outside the table: lm-eval scores it, the result and the log say so."""
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           vocab_size=96, max_position_embeddings=64)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    task = random_task(hf_tokenizer, n=4, longest=10)
    with caplog.at_level(logging.WARNING, logger="scaleot.evaluation.mc"):
        row = evaluate_mc(model, hf_tokenizer, [task], scorer="fast")["random"]
    assert row["scorer"] == "lm-eval"
    assert "gpt_neox" in row["scorer_fallback"]
    assert "fast scorer unavailable" in caplog.text


def test_validation_accuracy_uses_the_same_scorer(hf_tokenizer):
    from scaleot.data_owner.finetune import mc_accuracy

    model = tiny("llama")
    task = random_task(hf_tokenizer, n=12, longest=20)
    row = evaluate_mc(model, hf_tokenizer, [task], scorer="fast")["random"]
    assert mc_accuracy(model, hf_tokenizer, task.test, batch_size=3) == pytest.approx(row["acc"])


@pytest.mark.smoke
def test_real_model_matches_lm_eval_on_generated_and_packaged_tasks():
    from scaleot.data import SplitConfig, load_task
    from scaleot.models import load_model

    torch.set_num_threads(2)
    model, tok = load_model("smollm2-135m", device="cpu")
    tasks = [load_task(t, SplitConfig(seed=0, n_test=500, n_val=100)) for t in
             ("gen:arithmetic", "gen:calendar", "pkg:word_sentiment", "pkg:subdivision")]
    kw = dict(limit=10, batch_size=16, keep_loglikelihoods=True)
    reference = evaluate_mc(model, tok, tasks, scorer="lm-eval", **kw)
    fast = evaluate_mc(model, tok, tasks, scorer="fast", **kw)
    for t in tasks:
        assert_same(reference[t.name], fast[t.name])


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text"])
def test_chunked_perplexity_equals_full_logits(model_type):
    """The chunked head + cross-entropy gives the formula on the whole ``[n, T-1, V]`` logits."""
    import math

    import torch.nn.functional as F

    from scaleot.evaluation import perplexity

    model = tiny(model_type)
    if model_type == "gemma3_text":
        model.config.final_logit_softcapping = 5.0  # the head's soft-capping must be applied too
    blocks = torch.randint(3, 96, (5, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=blocks).logits[:, :-1].float()
    want = math.exp(F.cross_entropy(logits.reshape(-1, logits.size(-1)), blocks[:, 1:].reshape(-1)).item())
    assert perplexity(model, blocks, batch_size=2, chunk_tokens=7) == pytest.approx(want, rel=1e-5)


def test_evaluate_command_records_the_scorer(tmp_path, capsys):
    """``scaleot evaluate --scorer``: a BPE tokenizer (SmolLM2's) on a tiny model; JSON and table say which ran."""
    import json

    from scaleot.cli import main
    from scaleot.evaluation import DEFAULT_SCORER
    from scaleot.evaluation.config import EvaluateConfig
    from tests.finetune_helpers import tiny_model_dir, tiny_task

    assert EvaluateConfig().scorer == DEFAULT_SCORER
    model_dir, task = tiny_model_dir(tmp_path), tiny_task(tmp_path, n=40)
    docs = {}
    for scorer in ("lm-eval", "fast"):
        out = tmp_path / f"{scorer}.json"
        code = main(["evaluate", "--model", str(model_dir), "--task", str(task), "--n-test", "16", "--n-val", "4",
                     "--scorer", scorer, "--out", str(out)])
        assert code in (0, None)
        assert f"scorer: {scorer}" in capsys.readouterr().out
        docs[scorer] = json.loads(out.read_text())
        assert docs[scorer]["scorer"] == scorer and docs[scorer]["options"]["scorer"] == scorer
    ref, fast = (docs[s]["tasks"][str(task)] for s in ("lm-eval", "fast"))
    assert fast["correct"] == ref["correct"] and fast["acc_norm"] == ref["acc_norm"]


@pytest.mark.parametrize("args", [["evaluate", "--scorer", "quick"],
                                  ["evaluate", "--offsite", "--emulator", "e", "--adapter", "a", "--scorer", "quick"]])
def test_bad_scorer_is_one_line_exit_2(capsys, args):
    from scaleot.cli import main

    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("scaleot: error: ") and "--scorer must be one of fast, lm-eval" in err
    assert err.count("\n") == 1


def test_run_config_checks_the_evaluate_section(tmp_path):
    import yaml

    from scaleot.recipes.run import load_run_config

    path = tmp_path / "run.yaml"
    cfg = {"tasks": ["gen:arithmetic"], "emulators": [{"name": "u", "method": "uniform"}],
           "evaluate": {"scorer": "fast", "batch_size": 8}}
    path.write_text(yaml.safe_dump(cfg))
    assert load_run_config(path)["evaluate"]["scorer"] == "fast"
    cfg["evaluate"] = {"scorer": "quick", "beams": 2}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ScaleOTError, match=r"unknown options \['beams'\].*scorer must be one of fast, lm-eval"):
        load_run_config(path)


def test_probe_catches_a_cached_path_that_disagrees(monkeypatch):
    from scaleot.evaluation import fast_mc

    model = tiny("llama")
    assert fast_scorer_problem(model) is None
    monkeypatch.setattr(fast_mc.ContextSharingScorer, "score_groups",
                        lambda self, groups: [[-1.0] * len(g.choices) for g in groups])
    assert "differs from a plain forward pass" in fast_scorer_problem(model)


def test_probe_under_bf16_is_held_to_the_plain_bf16_error(monkeypatch):
    """Under bf16 the fast path passes where it is as close to fp32 as a plain bf16 pass, and
    fails where it is far off (a fixed 5e-2 failed correct code on one CPU: 0.13 nats of bf16
    rounding on a 10-token sum)."""
    from scaleot.evaluation import fast_mc

    model = tiny("llama")
    assert fast_scorer_problem(model, bf16=True) is None
    real = fast_mc.ContextSharingScorer.score_groups
    monkeypatch.setattr(fast_mc.ContextSharingScorer, "score_groups",
                        lambda self, groups: [[ll - 5.0 for ll in lls] for lls in real(self, groups)])
    assert "differs from an fp32 forward pass" in fast_scorer_problem(model, bf16=True)
