"""Schemas of every JSON document scaleot reads back, checked with pydantic.

Each ``*Doc`` model states the fields a reader relies on (unknown extra fields are
kept, so older or newer writers still load); :func:`validate_doc` checks a parsed
document against one and reports *every* problem at once, naming the file and the key::

    scaleot: error: invalid adapter.json runs/a/adapter.json: adapter_sources.1: Input should be
    a valid integer; base_fingerprint: Field required

Numbers are strict (``"5"`` is not an int, ``true`` is not a number) and finite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaleot.errors import ScaleOTError

SHA256 = r"^[0-9a-f]{64}$"
FINGERPRINT = r"^sha256:[0-9a-f]{64}$"
Index = Annotated[int, Field(ge=0, lt=1 << 20)]
Count = Annotated[int, Field(ge=1, lt=1 << 20)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


def format_errors(err: ValidationError, limit: int = 8) -> str:
    parts = []
    for e in err.errors()[:limit]:
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def validate_doc(model: type[BaseModel], doc: Any, where: str) -> BaseModel:
    """Check ``doc`` against ``model``; every problem in one :class:`ScaleOTError` line."""
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        raise ScaleOTError(f"invalid {where}: {format_errors(e)}") from None


# ----------------------------------------------------------------------------- manifest
class FileEntry(_Doc):
    sha256: Annotated[str, Field(pattern=SHA256)]
    bytes: Annotated[int, Field(ge=0)]


class ManifestDoc(_Doc):
    format: Literal["scaleot-manifest"]
    format_version: Literal[1]
    kind: str
    files: dict[str, FileEntry]
    info: dict = Field(default_factory=dict)


# ----------------------------------------------------------------------------- emulator.json
class SplitDoc(_Doc):
    n_bottom: Index
    n_top: Index


class LayerEntry(_Doc):
    position: Index
    kind: Literal["adapter", "kept", "harmonizer", "identity", "shared"]
    source: Index
    src_rank: dict[str, Count] | None = None
    shares: Index | None = None


class EmulatorDoc(_Doc):
    format_version: Literal[1]
    method: str
    base_fingerprint: Annotated[str, Field(pattern=FINGERPRINT)]
    num_blocks_full: Count
    adapter: SplitDoc
    layer_map: Annotated[list[LayerEntry], Field(min_length=1)]
    harmonizer: dict | None = None
    importance: dict | None = None  # stage 1's record (its corpus is read by `scaleot audit`)
    options: dict | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EmulatorDoc:
        n, lm = self.num_blocks_full, self.layer_map
        problems = []
        if self.adapter.n_bottom + self.adapter.n_top < 1 or self.adapter.n_bottom + self.adapter.n_top > n:
            problems.append(f"adapter split {self.adapter.n_bottom}+{self.adapter.n_top} does not fit {n} blocks")
        for pos, e in enumerate(lm):
            if e.position != pos:
                problems.append(f"layer_map.{pos}.position is {e.position}")
            if e.source >= n:
                problems.append(f"layer_map.{pos}.source {e.source} is outside the base model's {n} blocks")
            if e.kind == "shared" and (e.shares is None or e.shares >= len(lm) or lm[e.shares].kind != "kept"):
                problems.append(f"layer_map.{pos}.shares is not a kept position")
        bottom = list(range(self.adapter.n_bottom))
        top = list(range(n - self.adapter.n_top, n))
        sources = [e.source for e in lm if e.kind == "adapter"]
        if not problems and sources != bottom + top:
            problems.append(f"adapter blocks {sources} are not the sandwich split {bottom + top}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ----------------------------------------------------------------------------- adapter.json
class AdapterOptions(_Doc):
    split_seed: int
    n_test: Count
    n_val: Count
    n_train: Count | None = None


class AdapterData(_Doc):
    task: Annotated[str, Field(min_length=1)]


class AdapterDoc(_Doc):
    format_version: Literal[1]
    method: Literal["full", "lora", "ist"]
    adapter_sources: Annotated[list[Index], Field(min_length=1)]
    base_fingerprint: Annotated[str, Field(pattern=FINGERPRINT)]
    emulator_fingerprint: Annotated[str, Field(pattern=FINGERPRINT)] | None = None
    options: AdapterOptions
    data: AdapterData

    @model_validator(mode="after")
    def _unique(self) -> AdapterDoc:
        if len(set(self.adapter_sources)) != len(self.adapter_sources):
            raise ValueError("adapter_sources repeats a block")
        return self


class LoraConfigDoc(_Doc):
    """``adapter_config.json`` as plug uses it (peft's file; only these fields matter)."""

    peft_type: Literal["LORA"] = "LORA"
    r: Annotated[int, Field(ge=1, le=4096)]
    lora_alpha: Annotated[float, Field(gt=0, le=1e6)]
    use_rslora: bool = False
    target_modules: list[str] | str | None = None
    rank_pattern: Annotated[dict, Field(max_length=0)] = Field(default_factory=dict)
    alpha_pattern: Annotated[dict, Field(max_length=0)] = Field(default_factory=dict)
    use_dora: Literal[False] = False
    layer_replication: None = None
    lora_bias: Literal[False] = False


# ----------------------------------------------------------------------------- importance.json
class ScoreEntry(_Doc):
    logit: float
    keep_prob: Annotated[float, Field(ge=0, le=1)]


class ImportanceDoc(_Doc):
    format_version: Literal[1]
    model_fingerprint: Annotated[str, Field(pattern=FINGERPRINT)]
    num_blocks: Count
    adapter: SplitDoc
    middle: list[Index]
    ranking: list[Index]
    scores: dict[str, ScoreEntry]
    harmonizer: dict
    steps: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _consistent(self) -> ImportanceDoc:
        """Indices in range and unique; ``emulate`` checks the ranking against its own split.

        (A ranking may cover another split's middle than ``middle``: bench/transfer.py
        derives folders for other adapter splits from one stage 1.)
        """
        n = self.num_blocks
        for name in ("middle", "ranking"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or any(i >= n for i in values):
                raise ValueError(f"{name} must list distinct blocks below num_blocks {n}")
        if any(not k.isdigit() or int(k) >= n for k in self.scores):
            raise ValueError("scores must be keyed by block indices below num_blocks")
        return self


# ----------------------------------------------------------------------------- checkpoints
class CheckpointStateDoc(_Doc):
    step: Annotated[int, Field(ge=0)]
    python_random: list
    options: dict | None = None
    provenance: dict | None = None
    optimizer: dict | None = None


class BestDoc(_Doc):
    val_acc: float
    step: Annotated[int, Field(ge=0)]
    epoch: Annotated[int, Field(ge=0)]


class FinetuneStateDoc(CheckpointStateDoc):
    """A fine-tuning checkpoint's ``state.json`` (:mod:`scaleot.data_owner.finetune.loop`)."""

    epoch: Annotated[int, Field(ge=0)]
    micro_done: Annotated[int, Field(ge=0)]
    validation: list[dict]
    best: BestDoc
    scheduler: dict
    options: dict
    provenance: dict


class ImportanceStateDoc(CheckpointStateDoc):
    """A stage-1 checkpoint's ``state.json`` (:mod:`scaleot.model_owner.importance.trainer`)."""

    options: dict
    middle: list[Index]
    last: dict = Field(default_factory=dict)
    times: dict | None = None


# ----------------------------------------------------------------------------- config.json
class ModelConfigDoc(_Doc):
    """The ``config.json`` fields scaleot relies on (besides what transformers checks)."""

    model_type: str

    @model_validator(mode="after")
    def _known(self) -> ModelConfigDoc:
        extra = self.model_extra or {}
        if "auto_map" in extra:
            raise ValueError("asks for remote code (auto_map)")
        for key in ("num_hidden_layers", "n_layer", "hidden_size", "n_embd", "vocab_size"):
            v = extra.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 1 << 24):
                raise ValueError(f"{key} must be a positive integer (got {v!r})")
        return self
