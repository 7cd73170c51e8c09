"""One validation layer for every file scaleot reads (issue 13: trust boundaries).

- :mod:`~scaleot.validate.files`: strict JSON, safetensors headers, closed folders.
- :mod:`~scaleot.validate.schemas`: pydantic schemas of every JSON document we read back.
- :mod:`~scaleot.validate.artifacts`: readers of emulator bundles, adapters, importance folders.
- :mod:`~scaleot.validate.exchange`: what a returned adapter may change (``plug``).
- :mod:`~scaleot.validate.options`: strict checking of option mappings (run YAML) against
  the config dataclasses, and finite numbers everywhere.
- :mod:`~scaleot.validate.provenance`: what a checkpoint trains on, checked by ``--resume``.
"""

from scaleot.validate.files import (
    check_closed_folder,
    check_safetensors,
    load_safetensors,
    read_json_doc,
    read_json_object,
)
from scaleot.validate.schemas import validate_doc

__all__ = ["check_closed_folder", "check_safetensors", "load_safetensors", "read_json_doc", "read_json_object",
           "validate_doc"]
