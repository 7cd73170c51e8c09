"""Configuration of an emulator build (docs/method.md sections 3 and 5).

One dataclass for every method, validated at once in ``__post_init__``: every problem
is reported in a single :class:`~scaleot.errors.ConfigError` line. Checks that need the
model (``keep`` against the number of middle blocks) run in :meth:`EmulatorConfig.check_for`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scaleot.errors import ScaleOTError, check
from scaleot.exchange.bundle import METHODS
from scaleot.models.device import AUTOCAST
from scaleot.split import AdapterSplit
from scaleot.validate.options import nonfinite_fields

NEEDS_IMPORTANCE = ("scaleot", "drop")
NEEDS_KEEP = ("uniform", "uniform-kd", "crash")


@dataclass
class EmulatorConfig:
    """What to build: method, adapter split ``N_a``, ``alpha``, ``beta`` and method options.

    ``alpha`` (scaleot, drop): fraction of the middle blocks replaced (the lowest ranked).
    ``beta`` (every method): Selective Rank Compression, the fraction of rank removed from
    the attention projections of the kept middle blocks (0 = none).
    ``keep`` (uniform, uniform-kd, crash): middle blocks kept (CRaSh: clusters); ``None``
    keeps ``|E| - round(alpha * |E|)``, the size of the ScaleOT emulator with the same alpha.

    The run-level options (the base model, device, dtype, ``--resume``) are not fields: the
    recipe passes them from :class:`~scaleot.recipes.run_options.RunOptions`
    (:func:`~scaleot.model_owner.emulator.build.build_emulator`'s ``base_model`` and ``resume``).
    """

    method: str = field(default="scaleot", metadata={"help": f"one of {METHODS}"})
    n_bottom: int = field(default=2, metadata={"help": "adapter blocks at the bottom"})
    n_top: int = field(default=2, metadata={"help": "adapter blocks at the top"})
    alpha: float = field(default=0.5, metadata={"help": "fraction of middle blocks replaced, in [0, 1)"})
    beta: float = field(default=0.0, metadata={"help": "SRC: fraction of attention rank removed, in [0, 1)"})
    keep: int | None = field(default=None, metadata={"help": "middle blocks kept (uniform, uniform-kd, crash)"})
    importance: str | None = field(default=None, metadata={"help": "importance folder (scaleot, drop)"})
    corpus: str = field(default="kjv", metadata={"help": "generic text for CRaSh calibration and KD"})
    block_size: int = field(default=128, metadata={"help": "tokens per generic-text block"})
    calib_blocks: int = field(default=16, metadata={"help": "CRaSh: text blocks for the CKA statistics"})
    kd_steps: int = field(default=200, metadata={"help": "uniform-kd: distillation steps"})
    kd_lr: float = field(default=1e-4, metadata={"help": "uniform-kd: AdamW learning rate"})
    kd_batch: int = field(default=4, metadata={"help": "uniform-kd: blocks per step"})
    kd_lm_weight: float = field(default=1.0, metadata={"help": "uniform-kd: weight of the LM loss"})
    kd_checkpoint_every: int = field(default=50, metadata={"help": "uniform-kd: steps between checkpoints"})
    kd_run_dir: str | None = field(default=None, metadata={"help": "uniform-kd: checkpoints/logs (default OUT.kd)"})
    calibrate_steps: int = field(default=0, metadata={
        "help": "scaleot: steps of stage-2 harmonizer calibration against the full model (0 = none)"})
    calibrate_lr: float = field(default=1e-3, metadata={"help": "scaleot: calibration learning rate"})
    target_ppl_ratio: float = field(default=0.0, metadata={
        "help": "choose alpha: the smallest whose emulator's held-out generic-text perplexity is at least this "
                "multiple of the full model's (0 = use --alpha as given)"})
    choice_blocks: int = field(default=16, metadata={"help": "generic-text blocks the alpha choice is scored on"})
    diagnostic_blocks: int = field(default=4, metadata={
        "help": "generic-text blocks for the transfer diagnostic in emulator.json (0 = skip)"})
    autocast: str = field(default="bf16", metadata={
        "help": "uniform-kd and calibration forwards: bf16 autocast (fp32 master weights), none or auto"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        self.method = str(self.method).lower()
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)} (got {self.method!r})")
        try:
            self.split  # noqa: B018 (validates n_bottom, n_top)
        except ScaleOTError as e:
            problems.append(str(e))
        if not 0.0 <= self.alpha < 1.0:
            problems.append(f"alpha must be in [0, 1) (got {self.alpha})")
        if not 0.0 <= self.beta < 1.0:
            problems.append(f"beta must be in [0, 1) (got {self.beta})")
        if self.keep is not None and self.keep < 1:
            problems.append(f"keep must be >= 1 (got {self.keep})")
        if self.method in NEEDS_IMPORTANCE and not self.importance:
            problems.append(f"method {self.method!r} needs an importance folder (--importance DIR)")
        if self.calibrate_steps < 0:
            problems.append(f"calibrate_steps must be >= 0 (got {self.calibrate_steps})")
        if self.calibrate_steps and self.method != "scaleot":
            problems.append(f"calibrate_steps applies to method 'scaleot' only (got {self.method!r})")
        if self.autocast not in AUTOCAST:
            problems.append(f"autocast must be one of {', '.join(AUTOCAST)} (got {self.autocast!r})")
        if self.calibrate_lr <= 0:
            problems.append(f"calibrate_lr must be > 0 (got {self.calibrate_lr})")
        if self.target_ppl_ratio < 0 or (0 < self.target_ppl_ratio <= 1):
            problems.append(f"target_ppl_ratio must be 0 (off) or > 1 (got {self.target_ppl_ratio})")
        if self.target_ppl_ratio and self.method == "uniform-kd":
            problems.append("target_ppl_ratio cannot choose alpha for 'uniform-kd' (each candidate would need "
                            "its own distillation): give --alpha")
        if self.target_ppl_ratio and self.keep is not None:
            problems.append("target_ppl_ratio chooses alpha, and keep fixes the size: give one of them")
        if self.diagnostic_blocks < 0:
            problems.append(f"diagnostic_blocks must be >= 0 (got {self.diagnostic_blocks})")
        for name in ("block_size", "calib_blocks", "kd_steps", "kd_batch", "kd_checkpoint_every", "choice_blocks"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.kd_lr <= 0:
            problems.append(f"kd_lr must be > 0 (got {self.kd_lr})")
        problems += nonfinite_fields(self)
        if self.n_bottom + self.n_top < 1:
            problems.append("the adapter needs at least one block (N_BOTTOM + N_TOP >= 1): nothing would train")
        check("emulator config", problems)

    @property
    def split(self) -> AdapterSplit:
        """The adapter split ``N_a`` (``--adapter``)."""
        return AdapterSplit(self.n_bottom, self.n_top)

    def check_for(self, num_blocks: int) -> list[int]:
        """Validate against a model with ``num_blocks`` blocks; return the middle block indices."""
        middle = self.split.middle(num_blocks)
        if self.method in NEEDS_KEEP and self.keep is not None and self.keep > len(middle):
            check("emulator config", [f"keep must be <= the {len(middle)} middle blocks (got {self.keep})"])
        return middle

    def resolved_keep(self, n_middle: int) -> int:
        """Middle blocks kept by uniform / uniform-kd / crash."""
        if self.keep is not None:
            return self.keep
        return max(1, n_middle - round(self.alpha * n_middle))

    def options(self, base_model: str) -> dict:
        """The options that shaped the emulator, as ``emulator.json`` (and a distillation run
        folder) record them.

        The base model is a run-level option (:class:`~scaleot.recipes.run_options.RunOptions`),
        not a field, since issue 29; it is written back as ``model`` right after ``method``,
        where the field stood, so the document is the same as before and old bundles and
        distillation run folders read (and resume) as they did.

        Args:
            base_model: the base model's name or path, as given (``--model``).
        """
        d = asdict(self)
        if not self.target_ppl_ratio:  # the alpha choice unused: the document (and a run's digest) as before it
            del d["target_ppl_ratio"], d["choice_blocks"]
        return {"method": d.pop("method"), "model": base_model, **d}
