"""The one table of artifact kinds: what scaleot writes, who reads it, what it may carry.

Every folder scaleot writes records its kind in ``manifest.json``
(:mod:`scaleot.exchange.manifest`); code names a kind through the constants here, never
a string literal. ``carries`` lists the file suffixes a *closed* folder may hold
(:func:`scaleot.validate.files.check_closed_folder` refuses anything else when the
folder crosses to the other party); ``None`` means the folder is not read as closed.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "model"
PLUGGED_MODEL = "plugged-model"
IMPORTANCE = "importance"
EMULATOR = "emulator"
ADAPTER = "adapter"
AUDIT = "audit"
RUN = "run"
EVALUATION = "evaluation"


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact.

    Attributes:
        name: the manifest's ``kind``.
        written_by: the step that writes it.
        read_by: who reads it (``"model owner"``, ``"data owner"``).
        carries: file suffixes a closed folder of this kind may hold, or ``None``.
        describes: the file that describes the artifact.
    """

    name: str
    written_by: str
    read_by: str
    carries: tuple[str, ...] | None
    describes: str


KINDS: dict[str, ArtifactKind] = {k.name: k for k in (
    ArtifactKind(MODEL, "scaleot fetch (model cache)", "model owner", None, "config.json"),
    ArtifactKind(IMPORTANCE, "scaleot importance", "model owner", None, "importance.json"),
    # .md: the model card README.md only; .txt/.jinja/.model: tokenizer files
    ArtifactKind(EMULATOR, "scaleot emulate", "data owner",
                 (".json", ".safetensors", ".txt", ".jinja", ".model", ".md"), "emulator.json"),
    # .png: IST ships its layer-importance plot
    ArtifactKind(ADAPTER, "scaleot finetune", "model owner", (".json", ".safetensors", ".png"), "adapter.json"),
    ArtifactKind(AUDIT, "scaleot audit", "model owner", None, "audit.json"),
    ArtifactKind(PLUGGED_MODEL, "scaleot plug", "model owner", None, "plugin.json"),
    ArtifactKind(RUN, "scaleot run", "model owner", None, "steps.json"),
    ArtifactKind(EVALUATION, "scaleot evaluate", "either party", None, "the result JSON"),
)}
