"""Models: loading by name, the architecture table, device/precision, fingerprints."""

from scaleot.models.arch import (
    ARCHITECTURES,
    ArchSpec,
    arch_spec,
    get_blocks,
    get_submodule,
    num_blocks,
    set_blocks,
    set_submodule,
)
from scaleot.models.device import resolve_device, resolve_dtype
from scaleot.models.fingerprint import fingerprint_model, fingerprint_state_dict
from scaleot.models.loading import DEFAULT_MODEL, KNOWN_MODELS, load_model, resolve_model_path

__all__ = [
    "ARCHITECTURES", "ArchSpec", "arch_spec", "get_blocks", "get_submodule", "num_blocks",
    "set_blocks", "set_submodule", "resolve_device", "resolve_dtype", "fingerprint_model",
    "fingerprint_state_dict", "DEFAULT_MODEL", "KNOWN_MODELS", "load_model", "resolve_model_path",
]
