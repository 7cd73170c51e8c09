"""The emulator bundle: a safe, verifiable exchange folder (docs/method.md section 1, step 2).

Folder layout::

    emulator.json       format version, method, options, base fingerprint, layer map, params
    model.safetensors   only the shipped weights (SRC factors as factors, shared tensors once)
    config.json         the base config with the emulator's block count
    tokenizer files     (when a tokenizer was given)
    README.md           the model card (hub YAML header: (N_a, alpha, beta), base fingerprint)
    manifest.json       kind "emulator": sha256 and size of every file

The bundle's *fingerprint* (:func:`bundle_fingerprint`) is one sha256 over the name and
sha256 of every file the data owner uses: the weights, ``config.json``, the tokenizer
files and ``emulator.json`` (everything but the model card ``README.md`` and an
``audit.json`` the model owner may add after auditing). The tuned
adapter records it, and ``plug`` refuses an adapter tuned on a bundle that differs from
the model owner's in any of those files. (Before this, the fingerprint covered
``model.safetensors`` only; adapters that record such a fingerprint are refused with a
line saying so: tune them again on the bundle.)

:func:`load_emulator` verifies every hash, refuses unlisted or non-JSON/safetensors files
(no pickle anywhere), rebuilds the module structure from ``config.json`` and the layer
map, then loads ``model.safetensors`` strictly. The result is an ordinary transformers
causal LM whose block list mixes decoder blocks, harmonizers, identities and low-rank
projections.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from scaleot.emulator.layer_map import adapter_positions, adapter_sources, validate_layer_map
from scaleot.emulator.src_compress import LowRankLinear, low_rank_shell
from scaleot.errors import ScaleOTError
from scaleot.manifest import (
    atomic_output_dir,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)
from scaleot.model_card import emulator_card, write_card
from scaleot.models.arch import arch_spec, get_blocks, set_blocks
from scaleot.models.device import resolve_device, resolve_dtype
from scaleot.safetensors_io import save_module
from scaleot.tuners.harmonizer import Harmonizer, HarmonizerConfig, IdentityBlock

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
INFO = "emulator.json"
SAFE_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja", ".model", ".md")  # .md: README.md only
# Read by people (and by the model owner's plug, for the card), never by the data owner's tuning:
# the model card, and the audit numbers a model owner may add to a bundle after auditing it.
UNFINGERPRINTED = ("README.md", "audit.json")


def bundle_fingerprint(files: dict) -> str:
    """``sha256:<hex>`` over ``name NUL sha256 LF`` of every manifest-listed file the data
    owner uses (all but :data:`UNFINGERPRINTED`), in name order.

    Args:
        files: the manifest's ``files`` mapping (``{name: {"sha256": ..., "bytes": ...}}``).
    """
    import hashlib

    h = hashlib.sha256(b"scaleot-emulator-bundle-v2\n")
    for name in sorted(files):
        if name not in UNFINGERPRINTED:
            h.update(f"{name}\0{files[name]['sha256']}\n".encode())
    return "sha256:" + h.hexdigest()


def weights_fingerprint(files: dict) -> str:
    """The fingerprint older scaleot recorded: ``model.safetensors`` only (for the message
    that refuses an adapter carrying it)."""
    return "sha256:" + files[WEIGHTS]["sha256"]


@dataclass
class EmulatorBundle:
    """An emulator ``[A, E*]`` with its description.

    Attributes:
        model: a transformers ``*ForCausalLM`` in eval mode.
        tokenizer: the base tokenizer, or ``None``.
        info: the ``emulator.json`` dict (method, options, layer map, params...).
        fingerprint: :func:`bundle_fingerprint` once saved or loaded (every file but the card).
    """

    model: nn.Module
    tokenizer: object | None
    info: dict
    fingerprint: str | None = field(default=None)

    @property
    def layer_map(self) -> list[dict]:
        return self.info["layer_map"]

    @property
    def adapter_positions(self) -> list[int]:
        """Emulator block positions holding adapter blocks, in order."""
        return adapter_positions(self.layer_map)

    @property
    def adapter_sources(self) -> list[int]:
        """Full-model block index of each adapter position."""
        return adapter_sources(self.layer_map)

    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the bundle atomically to ``path`` and set :attr:`fingerprint`."""
        from scaleot.validate.exchange import check_finite_model

        path = Path(path)
        check_finite_model(self.model, f"emulator {path}")
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            save_module(self.model, tmp / WEIGHTS, metadata={"format": "pt", "scaleot": "emulator"})
            self.model.config.to_json_file(str(tmp / "config.json"))
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
            from scaleot.disclosure import public_info

            self.info = public_info(self.info)  # no local paths cross to the data owner
            write_json_atomic(tmp / INFO, self.info)
            for p in tmp.rglob("*"):
                if p.is_file() and (not p.name.endswith(SAFE_SUFFIXES) or p.suffix == ".md"):
                    p.unlink()  # nothing but JSON, text and safetensors travels (and our own card)
            write_card(tmp, emulator_card(self.info, self.info.get("audit")))
            manifest = write_manifest(tmp, "emulator", {"method": self.info["method"],
                                                        "base_fingerprint": self.info["base_fingerprint"]})
        self.fingerprint = bundle_fingerprint(manifest["files"])
        return path


def shared_copy(block: nn.Module) -> nn.Module:
    """A separate module instance that reuses ``block``'s Parameter tensors (CRaSh sharing)."""
    memo = {id(p): p for p in block.parameters()}
    memo.update({id(b): b for b in block.buffers()})
    return copy.deepcopy(block, memo)


def build_blocks(model: nn.Module, info: dict) -> list[nn.Module]:
    """Shells for every layer-map position, built on ``model``'s fresh blocks (loader side)."""
    spec = arch_spec(model)
    fresh = list(get_blocks(model))
    hidden = model.config.hidden_size
    hcfg = HarmonizerConfig(**info["harmonizer"]) if info.get("harmonizer") else None
    out: list[nn.Module | None] = [None] * len(fresh)
    for e in info["layer_map"]:
        pos, kind = e["position"], e["kind"]
        if kind in ("adapter", "kept"):
            out[pos] = fresh[pos]
            if e.get("src_rank"):
                low_rank_shell(out[pos], spec, e["src_rank"])
        elif kind == "harmonizer":
            if hcfg is None:
                raise ScaleOTError("emulator.json: harmonizer positions but no harmonizer config")
            out[pos] = Harmonizer(hidden, hcfg)
        elif kind == "identity":
            out[pos] = IdentityBlock()
    for e in info["layer_map"]:
        if e["kind"] == "shared":
            out[e["position"]] = shared_copy(out[e["shares"]])
    return out


def load_weights_streaming(model: nn.Module, path: Path) -> None:
    """Copy the tensors of a safetensors file into ``model`` one at a time, strictly.

    What ``safetensors.torch.load_model(strict=True)`` checks (every file tensor names a
    model tensor of the same shape; every model tensor is in the file, or shares its
    storage with one that is: tied weights), without holding the whole file's tensors
    beside the model: the peak is the model plus one tensor.

    Raises:
        RuntimeError: a missing, unexpected or mis-shaped tensor (first line names it).
    """
    state = model.state_dict()
    with safe_open(str(path), "pt") as f:
        names = set(f.keys())
        unexpected = sorted(names - set(state))
        loaded_ptrs = {state[k].data_ptr() for k in names if k in state}
        missing = sorted(k for k in state if k not in names and state[k].data_ptr() not in loaded_ptrs)
        if missing or unexpected:
            raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for name in sorted(names):
                t = f.get_tensor(name)
                if tuple(t.shape) != tuple(state[name].shape):
                    raise RuntimeError(f"size mismatch for {name}: {tuple(t.shape)} in the file, "
                                       f"{tuple(state[name].shape)} in the model")
                state[name].copy_(t)
                del t


def check_src_ranks(layer_map: list[dict], config, folder: Path) -> None:
    """SRC ranks name attention projections and lie in ``[1, min(out, in))``."""
    hidden = getattr(config, "hidden_size", None)
    roles = arch_spec(config.model_type).attn
    for e in layer_map:
        for name, r in (e.get("src_rank") or {}).items():
            if name not in roles or (isinstance(hidden, int) and not 1 <= r <= hidden):
                raise ScaleOTError(f"{folder}: emulator.json layer_map.{e['position']}.src_rank.{name} = {r!r} "
                                   "is not a rank of an attention projection")


def load_emulator(path: str | Path, device: str | None = None, dtype: str | None = None,
                  expected_base_fingerprint: str | None = None) -> EmulatorBundle:
    """Verify and load an emulator bundle.

    Args:
        path: the bundle folder.
        device, dtype: where and in which precision to put the model (``auto`` by default).
        expected_base_fingerprint: refuse a bundle made from other base weights.

    Raises:
        ScaleOTError: one line, for a missing, tampered, truncated, foreign or malformed bundle.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    info, fingerprint = read_bundle_info(folder)  # hashes, closed folder, emulator.json, config.json
    if expected_base_fingerprint and info.get("base_fingerprint") != expected_base_fingerprint:
        raise ScaleOTError(f"{folder}: emulator was built from other base weights "
                           f"({info.get('base_fingerprint')}, expected {expected_base_fingerprint})")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # transformers raises many types for a bad config
        raise ScaleOTError(f"{folder}: config.json is not a usable model config "
                           f"({str(e).splitlines()[0][:160]})") from None
    spec = arch_spec(config.model_type)
    layer_map = info.get("layer_map")
    if not isinstance(layer_map, list) or len(layer_map) != getattr(config, spec.num_layers_attr):
        raise ScaleOTError(f"{folder}: layer map and config.json disagree on the number of blocks")
    validate_layer_map(layer_map)
    check_src_ranks(layer_map, config, folder)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    blocks = build_blocks(model, info)
    set_blocks(model, blocks, list(range(len(blocks))))
    try:
        load_weights_streaming(model, folder / WEIGHTS)
    except RuntimeError as e:
        raise ScaleOTError(f"{folder}: model.safetensors does not match the layer map "
                           f"({str(e).splitlines()[0][:200]})") from None
    from scaleot.validate.exchange import check_finite_model

    check_finite_model(model, f"emulator bundle {folder}")
    dev = resolve_device(device)
    model.to(device=dev, dtype=resolve_dtype(dtype, dev)).eval()
    tokenizer = None
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        from scaleot.models.loading import prepare_tokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            prepare_tokenizer(tokenizer)
        except Exception as e:  # tokenizers raise many types for a malformed file
            raise ScaleOTError(f"{folder}: the tokenizer files are malformed "
                               f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    return EmulatorBundle(model=model, tokenizer=tokenizer, info=info, fingerprint=fingerprint)


def _gram(a: list[torch.Tensor], b: list[torch.Tensor], chunk: int = 1 << 16):
    """Squared norms of ``a`` and ``b`` and their inner products ``[len(a), len(b)]``, in float64.

    All tensors have one shape; they are read ``chunk`` elements' worth of leading rows at a
    time, so memory is ``(len(a) + len(b)) * chunk`` doubles, never a float64 copy of the
    tensors (which for the MLP shapes of a 1B model is several GiB).
    """
    a, b = [t.reshape(1, -1) if t.dim() == 0 else t for t in a], [t.reshape(1, -1) if t.dim() == 0 else t for t in b]
    rows = a[0].shape[0]
    step = max(1, chunk // max(1, a[0].numel() // max(rows, 1)))
    a_sq = torch.zeros(len(a), dtype=torch.float64)
    b_sq = torch.zeros(len(b), dtype=torch.float64)
    cross = torch.zeros(len(a), len(b), dtype=torch.float64)
    for r in range(0, rows, step):
        am = torch.stack([t[r:r + step].reshape(-1).double().cpu() for t in a])
        bm = torch.stack([t[r:r + step].reshape(-1).double().cpu() for t in b])
        a_sq += (am**2).sum(1)
        b_sq += (bm**2).sum(1)
        cross += am @ bm.T
    return a_sq, b_sq, cross


def find_leaks(model: nn.Module, protected: dict[str, torch.Tensor], tol: float = 1e-3) -> list[str]:
    """Shipped tensors (and SRC factor products) within relative error ``tol`` of a protected weight.

    Args:
        model: the emulator.
        protected: name -> weight that must not travel (replaced/dropped blocks, the dense
            attention weights of SRC-compressed blocks). Constant tensors (e.g. fresh norm
            weights of ones) carry no information and are skipped.

    Returns:
        ``"<shipped> ~ <protected> (rel err X)"`` lines; empty when nothing leaks.
    """
    shipped = {k: v.detach() for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        if isinstance(mod, LowRankLinear):
            shipped[f"{name}.(up@down)"] = mod.dense().detach()
    by_shape: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for name, w in protected.items():
        w = w.detach().float()
        if w.numel() > 1 and not torch.all(w == w.flatten()[0]):
            by_shape.setdefault(tuple(w.shape), []).append((name, w))
            if w.dim() == 2:
                by_shape.setdefault(tuple(w.t().shape), []).append((f"{name}^T", w.t()))
    groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for sname, t in shipped.items():
        if tuple(t.shape) in by_shape:
            groups.setdefault(tuple(t.shape), []).append((sname, t))
    leaks = []
    for shape, items in groups.items():
        # ||s - w||^2 = ||s||^2 + ||w||^2 - 2 <s, w> for all pairs at once, in float64
        s_sq, p_sq, cross = _gram([t.detach() for _, t in items], [w for _, w in by_shape[shape]])
        dist = (s_sq[:, None] + p_sq[None, :] - 2 * cross).clamp_min(0)
        rel = (dist / p_sq[None, :].clamp_min(1e-24)).sqrt()
        for a, b in (rel < 10 * tol).nonzero().tolist():  # confirm candidates exactly
            (sname, t), (pname, w) = items[a], by_shape[shape][b]
            exact = (torch.linalg.norm(t.double() - w.double()) / torch.linalg.norm(w.double())).item()
            if exact < tol:
                leaks.append(f"{sname} ~ {pname} (rel err {exact:.2e})")
    return leaks


BUNDLE_SUFFIXES = SAFE_SUFFIXES


def read_bundle_info(folder: Path) -> tuple[dict, str]:
    """Verify an emulator bundle (hashes, closed folder, emulator.json, config.json).

    The folder is *closed*: no links, no unlisted files, content matching its type
    (:func:`scaleot.validate.files.check_closed_folder`); ``emulator.json`` is checked
    against :class:`scaleot.validate.schemas.EmulatorDoc`.

    Returns:
        ``(emulator.json as a dict, the bundle's fingerprint)`` (:func:`bundle_fingerprint`).
    """
    from scaleot.emulator.config import METHODS
    from scaleot.models.loading import check_model_config
    from scaleot.validate.files import check_closed_folder, read_json_object
    from scaleot.validate.schemas import EmulatorDoc, validate_doc

    manifest = verify_manifest(folder, "emulator")
    listed = manifest["files"]
    check_closed_folder(folder, listed, BUNDLE_SUFFIXES, "bundle")
    for need in ("emulator.json", "model.safetensors", "config.json"):
        if need not in listed:
            raise ScaleOTError(f"{folder}: incomplete emulator bundle (no {need})")
    info = read_json_object(folder / "emulator.json", "emulator.json")
    validate_doc(EmulatorDoc, info, f"emulator.json in {folder}")
    if info["method"] not in METHODS:
        raise ScaleOTError(f"{folder}: emulator.json names an unknown method {info['method']!r}")
    check_model_config(folder / "config.json")
    return info, bundle_fingerprint(listed)
