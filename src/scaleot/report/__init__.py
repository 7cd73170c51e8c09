"""``report.md`` of a ``scaleot run`` folder: five rows, importance chart, privacy-utility, costs, anchors.

See docs/method.md section 7 for the rows and the published anchor numbers repeated here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scaleot.report.plots import privacy_utility_plot
from scaleot.report.verdict import headline_table, verdict

# docs/method.md section 7: OPT-1.3B, mean of 8 tasks (Plug-in, Emu FT, Delta), for reference only.
ANCHORS = [
    ("Full fine-tuning", "-", 49.9, None, None),
    ("OT (uniform LayerDrop + distillation)", "KD, costly", 49.0, 46.6, 2.4),
    ("OT uniform LayerDrop, no distillation", "training-free", 46.5, 43.2, 3.3),
    ("CRaSh (CKA clustering, remove, share)", "training-free", 48.4, 43.6, 4.8),
    ("ScaleOT", "Dynamic LayerReplace + SRC", 49.9, 46.2, 3.7),
    ("GradOT", "training-free, gradient-preserving", 49.8, 45.0, 4.8),
]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def costs_table(out: Path, steps: dict) -> str:
    """One line per step: seconds, peak RSS, parameters, throughput (from each artifact's JSON)."""
    lines = ["| step | seconds | peak RSS (MB) | parameters | notes |", "|---|---|---|---|---|"]
    for name, s in steps.items():
        folder = out / s.get("folder", "-")
        params, notes = "-", ""
        if name.startswith("emulate/"):
            p = _read(folder / "emulator.json").get("params", {})
            params = f"{p.get('emulator', 0) / 1e6:.1f}M of {p.get('full', 0) / 1e6:.1f}M ({p.get('ratio', 0):.2f})"
        elif name.startswith(("finetune/", "ft/")):
            info = _read(folder / "adapter.json")
            p, t = info.get("params", {}), info.get("timing", {})
            params = f"{p.get('trainable', 0) / 1e6:.2f}M trainable of {p.get('total', 0) / 1e6:.1f}M"
            notes = (f"{info.get('steps')} steps, {t.get('tokens_per_second')} tok/s, "
                     f"best val acc {_pct(info.get('best', {}).get('val_acc'))}")
        elif name == "importance":
            info = _read(folder / "importance.json")
            notes = f"{info.get('steps')} steps, ranking top-5 {info.get('ranking', [])[:5]}"
        lines.append(f"| {name} | {s.get('seconds', '-')} | {s.get('peak_rss_mb', '-')} | {params} | {notes} |")
    return "\n".join(lines)


def anchors_table(docs: dict[str, dict]) -> str:
    from scaleot.evaluation.tables import short_task

    lines = ["| source | method | emulator made by | Plug-in | Emu FT | Delta |", "|---|---|---|---|---|---|"]
    for method, how, plug, emu, delta in ANCHORS:
        lines.append(f"| published (OPT-1.3B, 8 tasks) | {method} | {how} | {plug} | {emu or '-'} | {delta or '-'} |")
    for name, doc in docs.items():
        avg, d = doc["average"], doc["delta"]["average"]
        ft = avg.get("FT", {}).get("acc")
        lines.append(f"| ours ({', '.join(short_task(t) for t in doc['tasks'])}) | {name} | {doc.get('emulator_method', '')} | "
                     f"{_pct(avg['Plug-in']['acc'])} | {_pct(avg['Emu FT']['acc'])} | "
                     f"{100 * d['acc']:+.1f} ± {100 * d['stderr']:.1f} |")
        if ft is not None and name == next(iter(docs)):
            lines.append(f"| ours | Full fine-tuning (FT row) | - | {_pct(ft)} | - | - |")
    return "\n".join(lines)


def write_report(out: str | Path, cfg: dict, docs: dict[str, dict], steps: dict,
                 importance: Path | None = None) -> Path:
    """Write ``report.md`` (and ``privacy_utility.png``) into the run folder ``out``."""
    from scaleot.evaluation.offsite import precision_of, scorers_of
    from scaleot.evaluation.tables import delta_stderr_kind, offsite_table, short_task

    out = Path(out)
    for name, doc in docs.items():
        doc["emulator_method"] = _read(out / "emulators" / name / "emulator.json").get("method", "")
    kind = delta_stderr_kind(*docs.values())
    if kind == "paired":
        kind = "paired: both rows are scored on the same test examples"
    parts = [f"# scaleot run report: {Path(str(cfg['model'])).name}", "",
             f"Tasks: {', '.join(short_task(t) for t in cfg['tasks'])}. Emulators: "
             + ", ".join(f"{e['name']} ({e.get('method', 'scaleot')})" for e in cfg["emulators"]) + ".",
             "Accuracy is lm-eval's multiple-choice `acc` on each task's held-out test split (docs/method.md "
             "section 7), scored by: "
             + ", ".join(sorted({scorers_of(doc["rows"]) for doc in docs.values()}))
             + " (`fast` gives lm-eval's numbers with one context pass per example), in "
             + ", ".join(sorted({precision_of(doc) for doc in docs.values()}))
             + " (never compare numbers of different precision); "
             f"every difference is given ± one standard error ({kind}).", ""]
    parts += ["## Verdict", ""]
    parts += [f"- **{name}**: {verdict(doc)}." for name, doc in docs.items()]
    parts += ["", "What the model owner gets (Plug-in - Full ZS), what tuning through the emulator cost "
              "(FT - Plug-in), and what the emulator holds back (Delta, Emu ZS - Full ZS), in points, averaged "
              "over the tasks:", "", headline_table(docs), ""]
    for name, doc in docs.items():
        parts += [f"## Five rows: emulator `{name}` ({doc['emulator_method']})", "", offsite_table(doc), ""]
    if importance is not None and (importance / "importance.png").is_file():
        try:
            rel = (importance / "importance.png").relative_to(out)
        except ValueError:  # a reused stage 1 outside the run folder: copy its chart in
            shutil.copyfile(importance / "importance.png", out / "importance.png")
            rel = "importance.png"
        parts += ["## Block importance (stage 1)", "", f"![importance]({rel})", ""]
    plot = privacy_utility_plot(docs, out / "privacy_utility.png", out)
    parts += ["## Privacy-utility", "", "Plug-in (what the model owner ships) against Emu FT (what the data "
              "owner keeps) for every emulator of the run; the further above the diagonal, the more the "
              "emulator holds back.", "", f"![privacy-utility]({plot.name})", ""]
    parts += ["## Costs", "", costs_table(out, steps), ""]
    parts += ["## Published anchors beside ours", "",
              "Published numbers are OPT-1.3B on 8 tasks (docs/method.md section 7): a reference for the "
              "shape of the result, not a like-for-like comparison.", "", anchors_table(docs), ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
