"""Harmonizers fitted to the replaced blocks' outputs *and* input gradients (issue 28 item 3).

A harmonizer stands in for one replaced block ``f``. Stage 1 trains it end to end (next-token
loss in random configurations); this refit asks it also to pass gradients back as ``f`` does,
since the adapter below it learns from what comes back through the middle. On public text
(KJV), one forward and backward pass of the full model's next-token loss gives, for every
replaced block ``i``, its input ``x``, output ``y`` and the gradients ``dL/dy`` and ``dL/dx``
(``= J_f(x)^T dL/dy``). Each harmonizer ``H`` then minimises::

    NMSE(H(x), y) + lam * NMSE(J_H(x)^T dL/dy, dL/dx)

(the second term through a double backward of ``H``, which is a small MLP). ``lam = 0`` is the
control: the same data and steps, outputs only. Used by bench/transfer.py's ``"gradmatch"``
treatment; tested in bench/test_gradmatch.py.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from scaleot.model_owner.emulator.distill import nmse
from scaleot.models import get_blocks


@contextlib.contextmanager
def _frozen(model: nn.Module):
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


def block_io_grads(model: nn.Module, indices: list[int], ids: torch.Tensor) -> dict[int, tuple]:
    """One forward and backward pass of ``model``'s mean next-token loss on ``ids`` ``[B, T]``.

    Returns ``{i: (x, y, dL/dx, dL/dy)}`` for each block ``i`` in ``indices``, every tensor
    ``[B, T, d]`` and detached. The model's weights get no gradient.
    """
    blocks = get_blocks(model)
    seen: dict[int, tuple] = {}

    def hook(i):
        def record(_module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            x.retain_grad()
            y.retain_grad()
            seen[i] = (x, y)
        return record

    with _frozen(model):
        handles = [blocks[i].register_forward_hook(hook(i), with_kwargs=True) for i in indices]
        # the embeddings' output needs a graph for the hidden states to have gradients
        handles.append(model.get_input_embeddings().register_forward_hook(lambda m, a, o: o.requires_grad_(True)))
        try:
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        finally:
            for h in handles:
                h.remove()
    return {i: (x.detach(), y.detach(), x.grad.detach(), y.grad.detach()) for i, (x, y) in seen.items()}


def vjp(module: nn.Module, x: torch.Tensor, g: torch.Tensor, create_graph: bool = False) -> tuple:
    """``(module(x), J_module(x)^T g)``."""
    x = x.detach().requires_grad_(True)
    out = module(x)
    (back,) = torch.autograd.grad(out, x, g, create_graph=create_graph, retain_graph=True)  # out trains too
    return out, back


def fit_harmonizers(full: nn.Module, emulator: nn.Module, layer_map: list[dict], text: torch.Tensor, lam: float,
                    steps: int, lr: float = 1e-3, batch: int = 4, seed: int = 0) -> dict:
    """Refit, in place, every harmonizer of ``emulator`` (layer-map kind ``harmonizer``) to its
    replaced block of ``full``, on ``text`` (``[n, T]`` token ids), ``steps`` AdamW steps.

    Returns the output and gradient NMSE (summed over the harmonizers) before and after, and the
    gradient NMSE an identity stand-in (the ``drop`` emulator) would have on the same batches.
    """
    pairs = [(e["position"], e["source"]) for e in layer_map if e["kind"] == "harmonizer"]
    if not pairs:
        raise ValueError("the emulator has no harmonizer to fit")
    stand_ins = get_blocks(emulator)
    params = [p for pos, _ in pairs for p in stand_ins[pos].parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps + 1):
        ids = text[torch.randint(0, len(text), (batch,), generator=gen)]
        io = block_io_grads(full, [s for _, s in pairs], ids)
        scale = ids.numel()  # the mean loss's gradients are ~1/tokens: NMSE is scale-free, float32 is not
        out_l, grad_l, ident = 0.0, 0.0, 0.0
        for pos, src in pairs:
            x, y, gx, gy = io[src]
            h, back = vjp(stand_ins[pos], x, gy * scale, create_graph=lam > 0 and step < steps)
            out_l = out_l + nmse(h, y)
            grad_l = grad_l + nmse(back, gx * scale)
            ident += nmse(gy, gx).item()
        row = {"step": step, "out_nmse": out_l.item(), "grad_nmse": grad_l.item(), "identity_grad_nmse": ident}
        if step in (0, steps):
            history.append(row)
        if step == steps:  # the last batch only measures
            break
        loss = out_l + lam * grad_l if lam > 0 else out_l
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in params:
        p.requires_grad_(False)
    return {"lam": lam, "steps": steps, "lr": lr, "batch": batch, "harmonizers": len(pairs),
            "first": history[0], "final": history[-1]}
