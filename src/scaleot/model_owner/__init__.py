"""The model owner's side: what only the owner of the full model runs.

- :mod:`~scaleot.model_owner.importance`: stage 1, Dynamic LayerReplace (block scores and
  harmonizers);
- :mod:`~scaleot.model_owner.harmonizer`: switching blocks for their stand-ins while fitting;
- :mod:`~scaleot.model_owner.emulator`: building the emulator (layer map, SRC, CRaSh,
  distillation, leak check);
- :mod:`~scaleot.model_owner.plug`: plugging a returned adapter into the full model;
- :mod:`~scaleot.model_owner.audit`: auditing a bundle before it ships.

It reads and writes what crosses to the data owner only through :mod:`scaleot.exchange`,
and never imports :mod:`scaleot.data_owner`.
"""
