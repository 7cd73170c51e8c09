"""The data owner's side: tuning an adapter through the emulator.

- :mod:`~scaleot.data_owner.finetune`: the training loop, its config, the tuning methods
  and what is trainable;
- :mod:`~scaleot.data_owner.tuners.ist`: Importance-aware Sparse Tuning on LoRA.

It runs a bundle through :mod:`scaleot.models.emulator`, writes the returned adapter
through :mod:`scaleot.exchange`, and never imports :mod:`scaleot.model_owner`.
"""
