"""bench/gradmatch.py: the captured gradients are autograd's, and the refit moves each harmonizer
toward its block's outputs (lam 0) and input gradients (lam > 0)."""

from __future__ import annotations

import copy

import torch

from bench.gradmatch import block_io_grads, fit_harmonizers, vjp
from bench.test_transfer import _tiny_llama
from scaleot.exchange.layers import Harmonizer, HarmonizerConfig


def test_block_io_grads_are_the_blocks_own_inputs_outputs_and_gradients():
    """dL/dx of block 2 equals J_f(x)^T dL/dy computed by calling the block on its captured input
    (so the capture saw the right tensors), and no weight of the model gets a gradient."""
    model = _tiny_llama()
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    io = block_io_grads(model, [1, 2], ids)
    x, y, gx, gy = io[2]
    assert x.shape == y.shape == gx.shape == gy.shape == (2, 9, 32)
    torch.testing.assert_close(io[1][1], x)  # block 1's output is block 2's input
    torch.testing.assert_close(io[1][3], gx)
    block = model.model.layers[2]
    pos = torch.arange(9).unsqueeze(0).expand(2, -1)
    emb = model.model.rotary_emb(x, pos)
    mask = torch.full((9, 9), float("-inf")).triu(1)[None, None].expand(2, 1, 9, 9)
    xx = x.clone().requires_grad_(True)
    out = block(xx, attention_mask=mask, position_ids=pos, position_embeddings=emb)
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(out, y, atol=1e-5, rtol=1e-4)
    (ref,) = torch.autograd.grad(out, xx, gy)
    torch.testing.assert_close(ref, gx, atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_vjp_of_a_harmonizer_matches_finite_differences():
    torch.manual_seed(0)
    h = Harmonizer(8, HarmonizerConfig(rank=4)).double()
    torch.nn.init.normal_(h.up.weight, std=0.3)
    x, g = torch.randn(1, 3, 8, dtype=torch.double), torch.randn(1, 3, 8, dtype=torch.double)
    _, back = vjp(h, x, g)
    eps, i = 1e-6, (0, 1, 5)
    dx = torch.zeros_like(x)
    dx[i] = eps
    fd = ((h(x + dx) - h(x - dx)) * g).sum() / (2 * eps)
    assert abs(back[i].item() - fd.item()) < 1e-6


def _emulator_with_harmonizers():
    full = _tiny_llama()
    emu = copy.deepcopy(full)
    layer_map = [{"position": 0, "kind": "adapter", "source": 0}, {"position": 1, "kind": "harmonizer", "source": 1},
                 {"position": 2, "kind": "kept", "source": 2}, {"position": 3, "kind": "adapter", "source": 3}]
    emu.model.layers[1] = Harmonizer(32, HarmonizerConfig(rank=8))
    return full, emu, layer_map


def test_fit_lowers_the_output_error_and_with_lam_the_gradient_error_only_the_harmonizers_change():
    text = torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(2))
    full, emu, layer_map = _emulator_with_harmonizers()
    before = copy.deepcopy(emu)
    out0 = fit_harmonizers(full, emu, layer_map, text, lam=0.0, steps=60, lr=1e-2)
    assert out0["final"]["out_nmse"] < 0.8 * out0["first"]["out_nmse"]
    # a fresh harmonizer is the identity: its gradient error is the identity's
    assert abs(out0["first"]["grad_nmse"] - out0["first"]["identity_grad_nmse"]) < 1e-4
    for (name, a), b in zip(emu.named_parameters(), before.parameters(), strict=True):
        assert torch.equal(a, b) == (not name.startswith("model.layers.1.")), name
    full, emu_g, layer_map = _emulator_with_harmonizers()
    out1 = fit_harmonizers(full, emu_g, layer_map, text, lam=10.0, steps=60, lr=1e-2)
    # same batches (same seed): the gradient term lowers the gradient error below the control's
    assert out1["final"]["grad_nmse"] < out0["final"]["grad_nmse"]
    assert out1["final"]["grad_nmse"] < out1["first"]["grad_nmse"]
