"""Everything that crosses between the model owner and the data owner.

- :mod:`~scaleot.exchange.kinds`: the one table of artifact kinds and what each may carry;
- :mod:`~scaleot.exchange.hashing`: the one spelling of a hash;
- :mod:`~scaleot.exchange.manifest`: the manifest that seals every folder, atomic writes;
- :mod:`~scaleot.exchange.schemas`, :mod:`~scaleot.exchange.checks`: what a document
  and a tensor file must look like before either party trusts them;
- :mod:`~scaleot.exchange.disclosure`: what an artifact may say about its maker;
- each artifact's read and write: :mod:`~scaleot.exchange.bundle` (emulator),
  :mod:`~scaleot.exchange.layer_map` and :mod:`~scaleot.exchange.layers` (what a bundle
  may hold), :mod:`~scaleot.exchange.adapter`, :mod:`~scaleot.exchange.importance`,
  :mod:`~scaleot.exchange.ist_scores`, :mod:`~scaleot.exchange.audit`,
  :mod:`~scaleot.exchange.model_card`.

The exchange imports neither party's code (``tests/test_import_graph.py``).
"""
