"""Model cards: a ``README.md`` with the Hugging Face hub's YAML header in every emulator
bundle and plug-in model folder.

The card says what the folder is, the emulator's ``(N_a, alpha, beta)``, the fingerprint
of the base model it came from, and the privacy audit's numbers where an ``audit.json``
is at hand (``scaleot audit``). The YAML header is written by ``huggingface_hub``'s
:class:`~huggingface_hub.ModelCardData`, so ``huggingface_hub.ModelCard.load(folder /
"README.md")`` reads it; scaleot's own fields sit under its ``scaleot:`` key.

The card is an ordinary listed file of the folder's manifest. In a bundle it crosses the
trust boundary, so :func:`scaleot.validate.files.check_model_card` reads it as untrusted
input (only ``README.md``, a size cap, UTF-8 text, a front matter that is a YAML mapping).
"""

from __future__ import annotations

from pathlib import Path

from scaleot.exchange.kinds import EMULATOR, PLUGGED_MODEL

CARD = "README.md"


def _n_a(info: dict) -> int:
    split = info.get("adapter") or {}
    return int(split.get("n_bottom", 0)) + int(split.get("n_top", 0))


def emulator_triplet(info: dict) -> dict:
    """``{N_a, alpha, beta, middle_compressed}`` of an ``emulator.json``.

    ``alpha`` and ``beta`` are the options as given; ``middle_compressed`` is the fraction
    of middle blocks the layer map does not keep whole (what ``alpha`` means for
    ``scaleot``/``drop``, and what ``--keep`` gives for the other methods).
    """
    opts = info.get("options") or {}
    n_middle = int(info.get("num_blocks_full", 0)) - _n_a(info)
    kept = sum(1 for e in info.get("layer_map") or [] if e.get("kind") == "kept")
    return {"N_a": _n_a(info), "alpha": opts.get("alpha"), "beta": opts.get("beta"),
            "middle_compressed": round(1 - kept / n_middle, 4) if n_middle > 0 else 0.0}


def audit_numbers(doc: dict | None) -> dict[str, float]:
    """The numbers of an audit document, flattened to ``{"a.b": value}`` (two levels deep).

    The audit's schema belongs to ``scaleot audit``; the card quotes its numeric leaves.
    """
    out: dict[str, float] = {}

    def walk(prefix: str, node, depth: int) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, int | float):
            out[prefix] = node
        elif isinstance(node, dict) and depth < 3:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)

    walk("", doc or {}, 0)
    return out


def _render(data: dict, title: str, body: list[str]) -> str:
    from huggingface_hub import ModelCardData

    card_data = ModelCardData(library_name="transformers", pipeline_tag="text-generation",
                              tags=["scaleot", "offsite-tuning"], **data)
    return f"---\n{card_data.to_yaml()}\n---\n\n# {title}\n\n" + "\n".join(body) + "\n"


def _audit_lines(audit: dict | None) -> list[str]:
    numbers = audit_numbers(audit)
    if not numbers:
        return ["", "## Privacy audit", "", "No audit recorded (`scaleot audit`)."]
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in numbers.items()]
    return ["", "## Privacy audit", "", "| measure | value |", "|---|---|", *rows]


def emulator_card(info: dict, audit: dict | None = None) -> str:
    """The card of an emulator bundle, from its (public) ``emulator.json``."""
    t = emulator_triplet(info)
    params = info.get("params") or {}
    meta = {"kind": EMULATOR, "method": info.get("method"), "base_model": info.get("base_model"),
            "base_fingerprint": info.get("base_fingerprint"), "model_type": info.get("model_type"),
            **t, "params": params}
    if audit is not None:
        meta["audit"] = audit_numbers(audit)
    body = [
        "An **emulator bundle** made by `scaleot emulate`: the adapter blocks of the base model kept whole, "
        "its middle blocks compressed. It is not the base model and is not meant to be used as one: the data "
        "owner fine-tunes the adapter blocks through it (`scaleot finetune --emulator DIR`) and returns only "
        "the tuned adapter. Load it with `scaleot.load_emulator(DIR)` (every file is checked against "
        "`manifest.json`).",
        "",
        "| | |", "|---|---|",
        f"| method | `{info.get('method')}` |",
        f"| adapter blocks N_a | {t['N_a']} ({(info.get('adapter') or {}).get('n_bottom')} bottom + "
        f"{(info.get('adapter') or {}).get('n_top')} top) |",
        f"| alpha (option) | {t['alpha']} |",
        f"| beta (SRC) | {t['beta']} |",
        f"| middle blocks not kept whole | {t['middle_compressed']:.2%} |",
        f"| base model | `{info.get('base_model')}` ({info.get('model_type')}) |",
        f"| base fingerprint | `{info.get('base_fingerprint')}` |",
        f"| parameters | {params.get('emulator')} of {params.get('full')} (ratio {params.get('ratio')}) |",
        *_audit_lines(audit),
    ]
    return _render({"scaleot": meta}, "scaleot emulator bundle", body)


def plugged_card(plugin: dict, bundle_info: dict | None = None, audit: dict | None = None) -> str:
    """The card of a plug-in model ``[A', E]``, from ``plugin.json`` and the bundle's ``emulator.json``."""
    meta = {"kind": PLUGGED_MODEL, "base_model": plugin.get("base_model"),
            "base_fingerprint": plugin.get("base_fingerprint"), "adapter_method": plugin.get("adapter_method"),
            "adapter_sources": plugin.get("adapter_sources"), "emulator_fingerprint": plugin.get("emulator_fingerprint"),
            "plugged_fingerprint": plugin.get("plugged_fingerprint")}
    body = [
        "A **plug-in model** made by `scaleot plug`: the base model with the data owner's tuned adapter "
        f"({plugin.get('adapter_method')}, blocks {plugin.get('adapter_sources')}) put back into it "
        "(LoRA merged). A standard transformers folder: `AutoModelForCausalLM.from_pretrained(DIR)`.",
        "",
        "| | |", "|---|---|",
        f"| base model | `{plugin.get('base_model')}` |",
        f"| base fingerprint | `{plugin.get('base_fingerprint')}` |",
        f"| adapter | {plugin.get('adapter_method')} on blocks {plugin.get('adapter_sources')} |",
        f"| tuned on emulator | `{plugin.get('emulator_fingerprint')}` |",
    ]
    if bundle_info is not None:
        t = emulator_triplet(bundle_info)
        meta["emulator"] = {"method": bundle_info.get("method"), **t}
        body += [f"| emulator method | `{bundle_info.get('method')}` |",
                 f"| (N_a, alpha, beta) | ({t['N_a']}, {t['alpha']}, {t['beta']}) |",
                 f"| middle blocks not kept whole | {t['middle_compressed']:.2%} |"]
    else:
        body.append("| emulator | none: the model owner's own adapter (`--self-tuned`) |")
    if audit is not None:
        meta["audit"] = audit_numbers(audit)
    body += _audit_lines(audit)
    base = plugin.get("base_model")
    data = {"scaleot": meta}
    if isinstance(base, str) and "/" in base and not base.startswith(("/", ".")) and not Path(base).exists():
        data["base_model"] = base  # a hub id: the hub links the card to it
    return _render(data, "scaleot plug-in model", body)


def write_card(folder: Path, text: str) -> Path:
    """Write ``folder/README.md`` (before the folder's manifest is made)."""
    path = Path(folder) / CARD
    path.write_text(text, encoding="utf-8")
    return path
