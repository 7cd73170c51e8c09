"""Choosing alpha per model from held-out perplexity (``--target-ppl-ratio``; choose.py, issue 28 item 5)."""

from __future__ import annotations

import pytest

from scaleot.errors import ConfigError, ScaleOTError
from scaleot.evaluation.perplexity import perplexity
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.model_owner.emulator.choose import held_out_blocks
from tests.emulator_helpers import fake_importance, make_model


@pytest.fixture
def text(tmp_path):
    words = ["the", "cat", "is", "red", "the", "dog", "is", "blue", "the", "sky", "is", "blue", "the", "grass",
             "is", "green", "yes", "no"]
    docs = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range(40)]
    path = tmp_path / "text.txt"
    path.write_text("\n\n".join(docs))
    return str(path)


def _trained(blocks, steps: int = 60):
    """A tiny llama taught the text, so that removing its blocks raises the perplexity."""
    import torch

    model = make_model(n_layers=8).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(input_ids=blocks, labels=blocks).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _config(imp, text, **kw):
    return EmulatorConfig(method="drop", importance=str(imp), beta=0.0, corpus=text, block_size=16,
                          choice_blocks=4, autocast="none", diagnostic_blocks=0, **kw)


def test_the_smallest_alpha_reaching_the_target_is_chosen_and_recorded(tmp_path, hf_tokenizer, text):
    """Independent of choose.py: build every candidate by hand, score it on the same held-out
    blocks, and find the first one at or above the target; the build must choose that alpha,
    make the same emulator as a build at that alpha, and record every candidate it scored."""
    from scaleot.data import corpus_splits

    train, _ = corpus_splits(text, hf_tokenizer, block_size=16, max_train_blocks=16)
    model = _trained(train)  # middle 2..5: candidates alpha 1/4, 2/4, 3/4
    imp = fake_importance(tmp_path / "imp", model, ranking=[4, 2, 5, 3])
    blocks = held_out_blocks(_config(imp, text), hf_tokenizer)
    full = perplexity(model, blocks)
    ratios = [perplexity(build_emulator(model, _config(imp, text, alpha=k / 4), hf_tokenizer).model, blocks) / full
              for k in (1, 2, 3)]
    above = sorted(r for r in ratios if r > 1)
    assert above, ratios  # the random model's blocks matter to it (seeded)
    target = above[0]  # the first candidate at or above it need not be the one that set it
    expected = next(k for k, r in zip((1, 2, 3), ratios, strict=True) if r >= target)

    bundle = build_emulator(model, _config(imp, text, target_ppl_ratio=target), hf_tokenizer)
    choice = bundle.info["alpha_choice"]
    assert choice["alpha"] == pytest.approx(expected / 4)
    assert bundle.info["options"]["alpha"] == pytest.approx(expected / 4)
    assert bundle.info["options"]["target_ppl_ratio"] == target
    assert [c["replaced"] for c in choice["candidates"]] == list(range(1, expected + 1))
    for c, r in zip(choice["candidates"], ratios, strict=False):
        assert c["ratio"] == pytest.approx(r, rel=1e-3)
    assert choice["full_ppl"] == pytest.approx(full, rel=1e-4)
    assert choice["alpha_given"] == 0.5 and choice["autocast"] == "none" and choice["blocks"] == len(blocks)
    plain = build_emulator(model, _config(imp, text, alpha=expected / 4), hf_tokenizer)
    assert bundle.info["layer_map"] == plain.info["layer_map"]


def test_an_unreachable_target_is_one_clear_error(tmp_path, hf_tokenizer, text):
    model = make_model(n_layers=8)
    imp = fake_importance(tmp_path / "imp", model, ranking=[4, 2, 5, 3])
    with pytest.raises(ScaleOTError, match="no alpha reaches --target-ppl-ratio 1000000.0"):
        build_emulator(model, _config(imp, text, target_ppl_ratio=1e6), hf_tokenizer)


def test_target_ppl_ratio_is_validated_with_the_config():
    with pytest.raises(ConfigError, match="target_ppl_ratio must be 0"):
        EmulatorConfig(method="uniform", target_ppl_ratio=0.8)
    with pytest.raises(ConfigError, match="uniform-kd"):
        EmulatorConfig(method="uniform-kd", target_ppl_ratio=2.0)
    with pytest.raises(ConfigError, match="give one of them"):
        EmulatorConfig(method="uniform", target_ppl_ratio=2.0, keep=2)
    assert EmulatorConfig(method="uniform", target_ppl_ratio=2.0).target_ppl_ratio == 2.0


def test_cli_emulate_chooses_alpha_and_refuses_an_unreachable_target(tmp_path, hf_tokenizer, text, capsys):
    """Through ``scaleot emulate``: the chosen alpha and every candidate land in emulator.json;
    an unreachable target is one error line, exit 2, and no output folder."""
    import json

    from scaleot.cli import main
    from scaleot.data import corpus_splits

    train, _ = corpus_splits(text, hf_tokenizer, block_size=16, max_train_blocks=16)
    model = _trained(train)
    src = tmp_path / "tiny"
    model.save_pretrained(src)
    hf_tokenizer.save_pretrained(src)
    imp = fake_importance(tmp_path / "imp", model, ranking=[4, 2, 5, 3])
    args = ["emulate", "--model", str(src), "--method", "drop", "--importance", str(imp), "--corpus", text,
            "--block-size", "16", "--choice-blocks", "4", "--autocast", "none", "--device", "cpu",
            "--diagnostic-blocks", "0", "--no-progress"]
    rc = main([*args, "--target-ppl-ratio", "1.0001", "--out", str(tmp_path / "emu")])
    info = json.loads((tmp_path / "emu" / "emulator.json").read_text())
    choice = info["alpha_choice"]
    assert rc == 0 and choice["target_ppl_ratio"] == 1.0001
    assert choice["candidates"][-1]["ratio"] >= 1.0001 > max([c["ratio"] for c in choice["candidates"][:-1]] + [0])
    assert info["options"]["alpha"] == choice["alpha"] == choice["candidates"][-1]["alpha"]
    capsys.readouterr()
    rc = main([*args, "--target-ppl-ratio", "1e6", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("scaleot:")]  # not transformers' load bar
    assert rc == 2 and "Traceback" not in err and len(ours) == 1 and "no alpha reaches --target-ppl-ratio" in ours[0]
    assert not (tmp_path / "bad").exists()
