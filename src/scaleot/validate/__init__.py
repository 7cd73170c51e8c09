"""The generic checks for every file scaleot reads (issue 13: trust boundaries).

- :mod:`~scaleot.validate.files`: strict JSON, safetensors headers, closed folders.
- :mod:`~scaleot.validate.options`: strict checking of option mappings (run YAML) against
  the config dataclasses, and finite numbers everywhere.

The package sits just above :mod:`scaleot.errors` and imports nothing else from
scaleot. What a document or a tensor file that crosses between the parties must look like
is the exchange's (:mod:`scaleot.exchange.schemas`, :mod:`scaleot.exchange.checks`); what a
checkpoint trains on is :mod:`scaleot.provenance`. The readers of each artifact use these
checks: :func:`scaleot.exchange.bundle.read_bundle_info`, :func:`scaleot.exchange.adapter.read_adapter`,
:func:`scaleot.exchange.importance.read_importance_info`,
:func:`scaleot.models.loading.check_model_config`; the run YAML's job-level checks are
in :mod:`scaleot.recipes.run_config`.
"""

from scaleot.validate.files import (
    check_closed_folder,
    check_safetensors,
    load_safetensors,
    read_json_doc,
    read_json_object,
)

__all__ = ["check_closed_folder", "check_safetensors", "load_safetensors", "read_json_doc", "read_json_object"]
