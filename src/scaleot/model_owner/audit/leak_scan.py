"""The leak scan: does the emulator ship, or nearly ship, a weight the model owner withholds?

An adversary holding the emulator holds every shipped tensor. Three checks, each from
the full model (the owner's side) and the loaded bundle:

1. **Exact copies** (:func:`scaleot.model_owner.emulator.find_leaks`, the check every build runs): a
   shipped tensor, its transpose or an SRC factor product within relative error 1e-3 of a
   withheld weight.
2. **Near-copies** (:func:`near_copies`): a shipped row or column whose ``|cosine|`` with a
   row or column of a withheld matrix is at least ``near_copy_cos`` (0.99). Working on
   *lines* (rows and columns) rather than whole tensors is what makes the scan see through
   the disguises a careless or hostile build could use:

   - a rescaled copy (``W * 1.0001``, ``-W``): cosine ignores scale, ``|.|`` the sign;
   - a transpose: the rows of ``W^T`` are the columns of ``W``, and both are compared;
   - a slice along one axis (``W[a:b]``, ``W[:, a:b]``) or a tensor that contains ``W``
     (a fused ``qkv`` projection): its whole rows or columns are lines of ``W``.

   A slice along *both* axes (``W[a:b, c:d]``) cuts every line, so it is not seen.
   Comparing every shipped line with every withheld line exactly is ``N_s x N_w x L``
   multiply-adds (about 8e12 for SmolLM2-135M), so lines of each length ``L`` are first
   projected to ``SKETCH_DIM`` random Gaussian directions (a Johnson-Lindenstrauss sketch,
   which preserves angles). Two lines with cosine 0.99 (8 degrees apart) keep a sketch
   cosine above ``SKETCH_CUT`` = 0.9 with overwhelming probability, while unrelated lines
   have sketch cosines of about ``1/sqrt(SKETCH_DIM)``; the few pairs above the cut are then
   checked exactly on the full lines. Lines shorter than ``MIN_LINE`` (chance alignments)
   and constant lines (fresh norm weights) are skipped, as are 1-D tensors, which the exact
   scan covers.
3. **Effective rank** (:func:`effective_ranks`): every shipped attention projection (an SRC
   factor pair is taken as its product) has no more singular values above
   ``rank_rtol * s_max`` than the configuration promises: the SRC rank of ``beta`` for a
   kept middle block, full rank otherwise (an adapter block ships whole).

Withheld means: every tensor of a middle block the emulator does not keep (replaced,
dropped, or CRaSh-shared), and the dense attention weights of SRC-compressed blocks. The
near-copy scan leaves the latter to the rank check: an SRC truncation is by design close
to its dense weight at small ``beta``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from scaleot.exchange.layers import LowRankLinear
from scaleot.model_owner.emulator import find_leaks
from scaleot.model_owner.emulator.build import protected_weights
from scaleot.model_owner.emulator.src_compress import src_rank
from scaleot.models.arch import arch_spec, get_blocks, get_submodule
from scaleot.split import AdapterSplit

SKETCH_DIM = 32
SKETCH_CUT = 0.9
MIN_LINE = 16
CHUNK = 4096  # lines per side of one sketch-similarity block ([CHUNK, CHUNK] floats = 64 MiB)


def withheld_weights(full: nn.Module, info: dict) -> tuple[dict[str, torch.Tensor], set[str]]:
    """``(withheld name -> tensor, names of SRC dense weights among them)`` for a bundle's ``info``."""
    split = AdapterSplit(**info["adapter"])
    middle = split.middle(len(get_blocks(full)))
    withheld = protected_weights(full, info["layer_map"], middle)
    spec = arch_spec(full)
    src = {f"block{e['source']}.{path}.weight" for e in info["layer_map"]
           if e["kind"] == "kept" and e.get("src_rank") for path in spec.attn.values()}
    return withheld, src


def shipped_tensors(emu: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor the bundle ships (shared tensors once), plus each SRC factor product."""
    out, seen = {}, set()
    for name, t in emu.state_dict(keep_vars=False).items():
        key = (t.data_ptr(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t.detach()
    for name, mod in emu.named_modules():
        if isinstance(mod, LowRankLinear):
            out[f"{name}.(up@down)"] = mod.dense().detach()
    return out


@dataclass
class LineSet:
    """The rows and columns (length ``L``) of a set of matrices, as a sketch and an index.

    ``segments[k] = (tensor name, axis, offset)``: lines ``offset..`` of the set are the rows
    (``axis="row"``) or columns (``"col"``) of that tensor; ``sketch`` is ``[n_lines, SKETCH_DIM]``
    of unit rows (``[n_lines, L]`` unit lines when ``L <= SKETCH_DIM``: no sketch needed).
    """

    length: int
    segments: list[tuple[str, str, int]] = field(default_factory=list)
    parts: list[torch.Tensor] = field(default_factory=list)
    keep: list[torch.Tensor] = field(default_factory=list)  # indices of the usable lines of each segment
    sketch: torch.Tensor | None = None

    def add(self, name: str, axis: str, lines: torch.Tensor, projection: torch.Tensor | None) -> None:
        lines = lines.float()
        centered = lines - lines.mean(1, keepdim=True)
        norms = lines.norm(dim=1)
        usable = (centered.norm(dim=1) > 1e-6 * norms.clamp_min(1e-30)) & (norms > 0)
        idx = usable.nonzero().flatten()
        if not len(idx):
            return
        unit = lines[idx] / norms[idx, None]
        part = unit @ projection if projection is not None else unit
        self.segments.append((name, axis, sum(len(k) for k in self.keep)))
        self.parts.append(torch.nn.functional.normalize(part, dim=1))
        self.keep.append(idx)

    def finish(self) -> None:
        self.sketch = torch.cat(self.parts) if self.parts else torch.zeros(0, 1)
        self.parts = []

    def locate(self, k: int) -> tuple[str, str, int]:
        """Line ``k`` of the set as ``(tensor name, axis, row/column index)``."""
        for s, (name, axis, offset) in reversed(list(enumerate(self.segments))):
            if k >= offset:
                return name, axis, int(self.keep[s][k - offset])
        raise IndexError(k)


def _lines(t: torch.Tensor, axis: str) -> torch.Tensor:
    m = t.reshape(t.shape[0], -1)
    return m if axis == "row" else m.t()


def _line_sets(tensors: dict[str, torch.Tensor], projections: dict[int, torch.Tensor | None],
               lengths: set[int] | None = None) -> dict[int, LineSet]:
    sets: dict[int, LineSet] = {}
    for name, t in tensors.items():
        if t.dim() < 2 or not t.is_floating_point():
            continue
        for axis in ("row", "col"):
            lines = _lines(t.detach(), axis)
            n = lines.shape[1]
            if n < MIN_LINE or (lengths is not None and n not in lengths):
                continue
            if n not in projections:
                g = torch.Generator().manual_seed(n)
                projections[n] = torch.randn(n, SKETCH_DIM, generator=g) if n > SKETCH_DIM else None
            sets.setdefault(n, LineSet(n)).add(name, axis, lines, projections[n])
    for s in sets.values():
        s.finish()
    return sets


def near_copies(shipped: dict[str, torch.Tensor], withheld: dict[str, torch.Tensor],
                threshold: float = 0.99) -> list[dict]:
    """Shipped tensors some of whose rows/columns copy rows/columns of a withheld tensor.

    Returns:
        one record per (shipped tensor, its axis, withheld tensor, its axis) with at least
        one matching line: ``{"shipped", "shipped_axis", "withheld", "withheld_axis",
        "lines", "of" (lines of the shipped tensor along that axis), "min_cos", "max_cos"}``,
        most matched lines first. Empty when nothing is copied.
    """
    projections: dict[int, torch.Tensor | None] = {}
    held = _line_sets(withheld, projections)
    ship = _line_sets(shipped, projections, lengths=set(held))
    exact = {**{("s", k): v for k, v in shipped.items()}, **{("w", k): v for k, v in withheld.items()}}
    cut = min(SKETCH_CUT, threshold)  # sketch candidates; exact lines (L <= SKETCH_DIM) too
    found: dict[tuple, list[float]] = {}
    for length, s_set in ship.items():
        w_set = held[length]
        for i0 in range(0, len(s_set.sketch), CHUNK):
            for j0 in range(0, len(w_set.sketch), CHUNK):
                sim = s_set.sketch[i0:i0 + CHUNK] @ w_set.sketch[j0:j0 + CHUNK].T  # [<=CHUNK, <=CHUNK]
                for i, j in (sim.abs() >= cut).nonzero().tolist():
                    sname, saxis, si = s_set.locate(i0 + i)
                    wname, waxis, wj = w_set.locate(j0 + j)
                    a = _lines(exact[("s", sname)], saxis)[si].double()
                    b = _lines(exact[("w", wname)], waxis)[wj].double()
                    cos = abs(float(a @ b / (a.norm() * b.norm())))
                    if cos >= threshold:
                        found.setdefault((sname, saxis, wname, waxis), []).append(cos)
    out = []
    for (sname, saxis, wname, waxis), cosines in found.items():
        of = _lines(shipped[sname], saxis).shape[0]
        out.append({"shipped": sname, "shipped_axis": saxis, "withheld": wname, "withheld_axis": waxis,
                    "lines": len(cosines), "of": of, "min_cos": round(min(cosines), 6),
                    "max_cos": round(max(cosines), 6)})
    return sorted(out, key=lambda r: -r["lines"])


def effective_rank(w: torch.Tensor, rtol: float) -> int:
    """Singular values of ``w`` above ``rtol * s_max`` (computed in float64)."""
    s = torch.linalg.svdvals(w.detach().double())
    return int((s > rtol * s[0]).sum()) if len(s) and s[0] > 0 else 0


def effective_ranks(emu: nn.Module, info: dict, rtol: float = 1e-4) -> list[dict]:
    """One record per shipped attention projection: effective vs promised rank.

    The promise is read from the bundle's own options (``beta``) and shape, never from
    the ``src_rank`` the bundle claims, so a bundle that claims full rank while its
    ``beta`` promises less is caught.

    Returns:
        ``{"position", "kind", "source", "role", "shape", "effective", "promised", "ok"}`` records.
    """
    spec = arch_spec(emu)
    blocks = get_blocks(emu)
    beta = float((info.get("options") or {}).get("beta") or 0.0)
    out = []
    for e in info["layer_map"]:
        if e["kind"] not in ("adapter", "kept"):
            continue  # harmonizers and identities have no attention; shared positions reuse a kept block
        for role, path in spec.attn.items():
            mod = get_submodule(blocks[e["position"]], path)
            if isinstance(mod, LowRankLinear):
                w = mod.dense()
            else:
                w = mod.weight.t() if spec.transposed else mod.weight
            d_out, d_in = w.shape
            promised = src_rank(d_out, d_in, beta) if e["kind"] == "kept" and beta > 0 else min(d_out, d_in)
            eff = effective_rank(w, rtol)
            out.append({"position": e["position"], "kind": e["kind"], "source": e["source"], "role": role,
                        "shape": [d_out, d_in], "effective": eff, "promised": promised, "ok": eff <= promised})
    return out


def scan(emu: nn.Module, full: nn.Module, info: dict, near_copy_cos: float = 0.99,
         rank_rtol: float = 1e-4) -> dict:
    """The whole leak scan of an emulator against its full model.

    Returns:
        ``{"withheld_tensors", "shipped_tensors", "exact": [lines], "near_copies": [records],
        "ranks": [records], "rank_violations": [records], "ok": bool, "seconds"}``.
    """
    t0 = time.perf_counter()
    withheld, src_dense = withheld_weights(full, info)
    shipped = shipped_tensors(emu)
    exact = find_leaks(emu, withheld)
    blocks_only = {k: v for k, v in withheld.items() if k not in src_dense}
    near = near_copies(shipped, blocks_only, near_copy_cos)
    ranks = effective_ranks(emu, info, rank_rtol)
    bad_ranks = [r for r in ranks if not r["ok"]]
    return {"withheld_tensors": len(withheld), "shipped_tensors": len(shipped),
            "near_copy_cos": near_copy_cos, "rank_rtol": rank_rtol, "sketch_dim": SKETCH_DIM,
            "exact": exact, "near_copies": near, "ranks": ranks, "rank_violations": bad_ranks,
            "ok": not exact and not near and not bad_ranks, "seconds": round(time.perf_counter() - t0, 1)}
