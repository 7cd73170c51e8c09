"""The transfer diagnostic: gradient cosine between the emulator and the full model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.model_owner.emulator.diagnostic import block_gradients, gradient_alignment, lm_loss
from tests.emulator_helpers import fake_importance, make_model


def _batches(vocab: int, n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (2, 12), generator=g) for _ in range(n)]


def _emulator(tmp_path, model, alpha: float, method: str = "scaleot"):
    imp = fake_importance(tmp_path / "imp", model, ranking=[2, 3, 4, 5])
    cfg = EmulatorConfig(method=method, alpha=alpha, beta=0.0, importance=str(imp), autocast="none")
    return build_emulator(model, cfg, base_model="tiny")


def test_identical_emulator_has_cosine_one(tmp_path):
    """alpha 0 keeps every block: the adapter's gradient is the full model's, per block and overall."""
    model = make_model()
    bundle = _emulator(tmp_path, model, alpha=0.0)
    d = gradient_alignment(model, bundle.model, bundle.layer_map, _batches(model.config.vocab_size))
    assert d["all"] > 0.9999 and d["min_block"] > 0.9999
    assert set(d["per_block"]) == {"0", "1", "6", "7"}
    assert abs(d["grad_norm_ratio"] - 1) < 1e-4


def test_replaced_blocks_lower_the_cosine(tmp_path):
    model = make_model()
    bundle = _emulator(tmp_path, model, alpha=0.75)
    d = gradient_alignment(model, bundle.model, bundle.layer_map, _batches(model.config.vocab_size))
    assert d["all"] < 0.99
    assert -1 <= d["min_block"] <= d["all"] + 1  # a cosine, and per block


def test_block_gradients_match_autograd_reference_and_leave_no_trace():
    """Equal to a plain backward pass's .grad; requires_grad flags and .grad untouched afterwards."""
    model = make_model()
    batches = _batches(model.config.vocab_size)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    got = block_gradients(model, [1], batches, lm_loss)[0]
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())

    ref = make_model()
    loss = sum(F.cross_entropy(ref(input_ids=b).logits[:, :-1].reshape(-1, ref.config.vocab_size),
                               b[:, 1:].reshape(-1)) for b in batches)
    loss.backward()
    block = ref.model.layers[1]
    want = torch.cat([p.grad.reshape(-1) for _, p in sorted(block.named_parameters())])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
