"""The audit report: what ``scaleot audit`` writes about a bundle before it ships.

Layout (``manifest.json`` of kind ``audit``)::

    audit.json     verdict, leak scan, zero-shot gap, the recovery attack's results
    report.md      the same, for people
    log.jsonl, tb/ the attack's training log (:mod:`scaleot.run_folder`)

The model owner may copy ``audit.json`` into the bundle; :func:`read_audit` reads it
back for the model cards (:mod:`scaleot.exchange.model_card`).
"""

from __future__ import annotations

from pathlib import Path

from scaleot.exchange.kinds import AUDIT
from scaleot.exchange.manifest import write_json_atomic, write_manifest
from scaleot.validate.files import read_json_object

FORMAT_VERSION = 1
KIND = AUDIT
DOC = "audit.json"
REPORT = "report.md"


def write_audit(out: str | Path, doc: dict, report: str, fingerprint: str | None) -> Path:
    """Write ``audit.json`` (``doc``), ``report.md`` (``report``) and the manifest that seals ``out``.

    Args:
        out: the audit folder (the attack's logs may already be there).
        doc: the ``audit.json`` document; its ``verdict`` goes into the manifest's info.
        report: the rendered Markdown report.
        fingerprint: the audited bundle's fingerprint.
    """
    out = Path(out)
    write_json_atomic(out / DOC, doc)
    (out / REPORT).write_text(report)
    verdict = doc["verdict"]
    write_manifest(out, KIND, {"emulator_fingerprint": fingerprint, "ok": verdict["ok"],
                               "broken": verdict["broken"]})
    return out


def read_audit(folder: Path | None) -> dict | None:
    """``folder/audit.json`` read strictly, or ``None`` when there is none."""
    if folder is None or not (Path(folder) / DOC).is_file():
        return None
    return read_json_object(Path(folder) / DOC, DOC)
