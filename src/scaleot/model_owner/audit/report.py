"""The audit's verdict against the owner's thresholds, and ``report.md``.

:func:`verdict` turns the measurements (``audit.json``'s ``scan``, ``gap`` and ``attack``
sections) into named checks, each ``{"check", "value", "threshold", "ok"}``; the release
passes when every check does. The leak scan has no threshold to set: any exact copy,
near-copy or projection above its promised rank fails. Recovery and fidelity are judged
at the largest budget; an R that is undefined (no gap to recover) fails ``max_recovery``,
since the emulator then protects nothing the attacker would need to recover.
``max_recovered_acc`` judges the attacked accuracy itself: R divides the gain by the gap,
so an emulator that starts close to the full model passes ``max_recovery`` at the same end
accuracy at which one that starts low fails it (BENCHMARKS.md, audit at 0.1M tokens).
"""

from __future__ import annotations

from scaleot.model_owner.audit.config import AuditConfig


def verdict(config: AuditConfig, scan: dict, gap: dict, attack: list[dict], transfer: dict | None = None) -> dict:
    """``{"ok": bool, "checks": [...], "broken": [check names]}`` (``transfer``: the transfer
    check's document, judged by ``min_transfer_ratio``; an undefined ratio fails it)."""
    checks = [
        {"check": "exact copies", "value": len(scan["exact"]), "threshold": 0, "ok": not scan["exact"]},
        {"check": "near-copies", "value": len(scan["near_copies"]), "threshold": 0, "ok": not scan["near_copies"]},
        {"check": "projections above promised rank", "value": len(scan["rank_violations"]), "threshold": 0,
         "ok": not scan["rank_violations"]},
    ]
    if config.min_gap is not None:
        checks.append({"check": "min_gap (Full ZS - Emu ZS)", "value": gap["zs"], "threshold": config.min_gap,
                       "ok": gap["zs"] >= config.min_gap})
    last = attack[-1] if attack else None
    if config.max_recovery is not None and last is not None:
        r = last.get("R")
        checks.append({"check": f"max_recovery (R at {last['tokens']} tokens)", "value": r,
                       "threshold": config.max_recovery, "ok": r is not None and r <= config.max_recovery})
    if config.max_recovered_acc is not None and last is not None:  # R flatters an emulator that starts high
        checks.append({"check": f"max_recovered_acc (at {last['tokens']} tokens)", "value": last["acc"],
                       "threshold": config.max_recovered_acc, "ok": last["acc"] <= config.max_recovered_acc})
    if config.max_fidelity is not None and last is not None:
        checks.append({"check": f"max_fidelity (at {last['tokens']} tokens)", "value": last["fidelity"],
                       "threshold": config.max_fidelity, "ok": last["fidelity"] <= config.max_fidelity})
    if config.min_transfer_ratio is not None and transfer is not None:
        r = transfer["median_ceiling_ratio"]
        checks.append({"check": "min_transfer_ratio (median over the proxy tasks)", "value": r,
                       "threshold": config.min_transfer_ratio, "ok": r is not None and r >= config.min_transfer_ratio})
    broken = [c["check"] for c in checks if not c["ok"]]
    return {"ok": not broken, "checks": checks, "broken": broken}


def _pct(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")


def _value(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def render(doc: dict) -> str:
    """``report.md`` from ``audit.json``."""
    v, s, g, full, emu = doc["verdict"], doc["scan"], doc["gap"], doc["full"], doc["emulator_zs"]
    lines = [f"# Audit of emulator `{doc['emulator']['name']}` ({doc['emulator']['method']})", "",
             f"**Verdict: {'PASS' if v['ok'] else 'FAIL'}**" + ("" if v["ok"] else f" ({', '.join(v['broken'])})"),
             "", "| check | value | threshold | ok |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {_value(c['value'])} | {_value(c['threshold'])} | {'yes' if c['ok'] else 'NO'} |"
              for c in v["checks"]]
    lines += ["", "## Leak scan", "",
              f"{s['shipped_tensors']} shipped tensors against {s['withheld_tensors']} withheld ones: "
              f"{len(s['exact'])} exact copies, {len(s['near_copies'])} near-copies (|cos| >= {s['near_copy_cos']} "
              f"on whole rows/columns, transposes included), {len(s['rank_violations'])} of {len(s['ranks'])} "
              "attention projections above the rank the configuration promises."]
    for e in s["exact"][:10]:
        lines.append(f"- exact: {e}")
    for n in s["near_copies"][:10]:
        lines.append(f"- near-copy: {n['shipped']} ({n['shipped_axis']}s) ~ {n['withheld']} ({n['withheld_axis']}s): "
                     f"{n['lines']}/{n['of']} lines, cos {n['min_cos']:.4f}..{n['max_cos']:.4f}")
    for r in s["rank_violations"][:10]:
        lines.append(f"- rank: position {r['position']} {r['role']} has rank {r['effective']} > {r['promised']}")
    lines += ["", "## Capability gap", "", "| | ZS (acc, %) | perplexity |", "|---|---|---|",
              f"| full model | {_pct(full['acc'], full['acc_stderr'])} | {full['ppl']:.2f} |",
              f"| emulator | {_pct(emu['acc'], emu['acc_stderr'])} | {emu['ppl']:.2f} |", "",
              f"Full ZS - Emu ZS = {_pct(g['zs'], g['zs_stderr'])} points (paired); perplexity ratio "
              f"{g['ppl_ratio']:.2f} on held-out `{doc['config']['ppl_corpus']}` text; "
              f"n = {full['n']} pooled test examples ({', '.join(full['tasks'])}), scorer {full['scorer']}.", "",
              "## Recovery attack", "", "Recipe: " + ", ".join(f"{k} {v}" for k, v in doc["attack_recipe"].items()),
              "", "| tokens | steps | train s | Emu ZS | R | fidelity | perplexity |", "|---|---|---|---|---|---|---|",
              f"| 0 | 0 | 0 | {_pct(emu['acc'], emu['acc_stderr'])} | 0 | "
              f"{_pct(doc['emulator_fidelity']['fidelity'], doc['emulator_fidelity']['fidelity_stderr'])} | "
              f"{emu['ppl']:.2f} |"]
    for r in doc["attack"]:
        rr = "n/a" if r["R"] is None else f"{r['R']:.2f} ± {r['R_stderr']:.2f}"
        lines.append(f"| {r['tokens']} | {r['steps']} | {r['train_seconds']} | {_pct(r['acc'], r['acc_stderr'])} | "
                     f"{rr} | {_pct(r['fidelity'], r['fidelity_stderr'])} | {r['ppl']:.2f} |")
    lines += ["", "R = (attacked - Emu ZS) / (Full ZS - Emu ZS); fidelity = share of examples where the "
              "attacked emulator picks the full model's choice (docs/method.md section 9).", ""]
    if doc.get("transfer"):
        lines += transfer_lines(doc["transfer"])
    return "\n".join(lines)


def transfer_lines(t: dict) -> list[str]:
    """The transfer check's section of ``report.md``."""
    c = t["config"]
    tuning = ", ".join(f"{k} {v}" for k, v in c["tuning"].items()) or "the data owner's defaults"
    lines = ["## Transfer check: will the data owner's tuning carry?", "",
             f"The model owner's proxy tasks ({c['n_train']} training, {c['n_dev']} scored dev examples each; "
             f"tuning: {tuning}; scoring autocast {c['autocast']}). Reference = the same adapter tuned on the "
             "full model; ceiling ratio = (Plug-in - Full ZS) / (reference - Full ZS).", "",
             "| proxy task | Full ZS | Emu ZS | Emu FT | Plug-in | reference | Plug-in - Full ZS | Delta | ceiling ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in t["tasks"].items():
        ratio = "n/a" if r["ceiling_ratio"] is None else f"{r['ceiling_ratio']:.2f}"
        lines.append(f"| {name} | {r['full_zs']:.1f} | {r['emu_zs']:.1f} | {r['emu_ft']:.1f} | {r['plug_in']:.1f} | "
                     f"{r['reference']:.1f} | {r['gain']:+.1f} ± {r['gain_se']:.1f} | {r['delta']:+.1f} ± "
                     f"{r['delta_se']:.1f} | {ratio} |")
    m = t["median_ceiling_ratio"]
    lines += ["", f"Median ceiling ratio over the proxies: **{'n/a' if m is None else f'{m:.2f}'}**. Compare emulators "
              "by the proxies' plug-in gain: it ranks them as real tasks do, the ratio does not (BENCHMARKS.md, "
              "\"The audit's transfer check against the suite\").", ""]
    return lines


def audit_columns(audits: dict[str, dict], evals: dict[str, dict] | None = None) -> str:
    """``scaleot run``'s audit section: per emulator, Emu ZS, R and fidelity at the largest
    budget, the recovered accuracy, and the Plug-in (task average, from ``eval/<name>.json``)
    beside it: the privacy-utility trade seen by an attacker."""
    lines = ["## Audit: what each emulator gives away", "",
             "| emulator | Plug-in | Emu ZS | recovered ZS | R | fidelity | budget (tokens) | leak scan | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, d in audits.items():
        e = d["emulator_zs"]
        last = d["attack"][-1] if d["attack"] else None
        plug = ((evals or {}).get(name) or {}).get("average", {}).get("Plug-in")
        rr = "n/a" if last is None or last["R"] is None else f"{last['R']:.2f} ± {last['R_stderr']:.2f}"
        lines.append("| " + " | ".join([
            name, _pct(plug["acc"], plug["acc_stderr"]) if plug else "-",
            _pct(e["acc"], e["acc_stderr"]),
            _pct(last["acc"], last["acc_stderr"]) if last else "-", rr,
            _pct(last["fidelity"], last["fidelity_stderr"]) if last else "-",
            str(last["tokens"]) if last else "-", "clean" if d["scan"]["ok"] else "LEAK",
            "PASS" if d["verdict"]["ok"] else "FAIL: " + ", ".join(d["verdict"]["broken"])]) + " |")
    lines += ["", "Audit tasks and attack recipe: `audit/<name>/report.md` (R = (attacked - Emu ZS) / "
              "(Full ZS - Emu ZS), docs/method.md section 9)."]
    return "\n".join(lines)
