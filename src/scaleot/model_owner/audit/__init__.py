"""``scaleot audit``: what an emulator gives away, measured the way an attacker would (docs/method.md section 9).

- :mod:`.config`: :class:`AuditConfig`, the options and the owner's release thresholds;
- :mod:`.leak_scan`: exact copies, near-copies (rows/columns, transposes, slices) and
  effective ranks of the shipped tensors against the withheld ones;
- :mod:`.recovery`: the capability gap, the recovery attack (full fine-tuning of every
  emulator parameter on public text) and its recovery ratio and fidelity;
- :mod:`.transfer_check`: will the data owner's work carry? The emulator's transfer on the
  model owner's own proxy tasks (Emu FT, plug-in, the reference, the ceiling ratio);
- :mod:`.report`: the verdict and ``report.md``.
"""

from scaleot.model_owner.audit.config import AuditConfig
from scaleot.model_owner.audit.leak_scan import near_copies, scan
from scaleot.model_owner.audit.recovery import RecoveryAttack, measure
from scaleot.model_owner.audit.report import render, verdict

__all__ = ["AuditConfig", "near_copies", "scan", "RecoveryAttack", "measure", "render", "verdict"]
