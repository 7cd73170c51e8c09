"""Reading untrusted files: strict JSON, checked safetensors headers, closed artifact folders.

Everything here turns a bad file into one :class:`~scaleot.errors.ScaleOTError` line that
names the file (and the key where there is one), never a traceback:

- :func:`read_json_doc` / :func:`read_json_object`: UTF-8 only, no ``NaN``/``Infinity``,
  no duplicate keys, a size cap; the object form refuses lists and strings.
- :func:`check_safetensors` parses the header itself (size cap, known dtypes, offsets and
  byte counts consistent with the file) before safetensors or torch sees the file;
  :func:`load_safetensors` then loads it.
- :func:`load_yaml_unique`: ``yaml.safe_load`` that refuses a key given twice in one
  mapping (the run YAML: the last one silently winning is how a typo goes unnoticed).
- :func:`check_closed_folder` is for folders that cross the trust boundary (emulator
  bundles, adapters): no links anywhere, manifest paths that stay inside the folder, no
  unlisted files, and every file's content matches its declared type (a pickle named
  ``.json`` is refused).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path, PurePosixPath
from typing import Any

from scaleot.errors import ScaleOTError

MAX_JSON_BYTES = 64 << 20
MAX_HEADER_BYTES = 16 << 20
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
TEXT_SUFFIXES = (".txt", ".jinja")
PICKLE_OR_ZIP = (b"\x80", b"PK\x03\x04")
PNG = b"\x89PNG\r\n\x1a\n"
MAX_CARD_BYTES = 1 << 20
CARD = "README.md"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_json_bytes(data: bytes, where: str) -> Any:
    """Strict JSON from bytes (UTF-8, finite numbers, unique keys)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScaleOTError(f"{where}: not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text, parse_constant=_no_constants, parse_float=_finite_float,
                         object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ScaleOTError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:
        raise ScaleOTError(f"{where}: not valid JSON ({str(e)[:120]})") from None
    return doc


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise ValueError(f"{text} is not a finite number")
    return value


def read_json_doc(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file strictly; a missing, oversized or malformed file is one line."""
    path = Path(path)
    if not path.is_file():
        raise ScaleOTError(f"{what} not found: {path}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ScaleOTError(f"{what} {path} is larger than {MAX_JSON_BYTES >> 20} MB")
    return parse_json_bytes(path.read_bytes(), f"{what} {path}")


def read_json_object(path: str | Path, what: str = "file") -> dict:
    """:func:`read_json_doc` that must be a JSON object."""
    doc = read_json_doc(path, what)
    if not isinstance(doc, dict):
        raise ScaleOTError(f"{what} {path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def check_safetensors(path: str | Path, what: str | None = None) -> dict:
    """Parse and check a safetensors header; returns ``{name: {dtype, shape, data_offsets}}``."""
    path = Path(path)
    where = what or str(path)
    if not path.is_file():
        raise ScaleOTError(f"{where}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ScaleOTError(f"{where}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise ScaleOTError(f"{where}: corrupt safetensors header (declares {n} header bytes)")
        header = parse_json_bytes(f.read(n), f"{where} (safetensors header)")
    if not isinstance(header, dict):
        raise ScaleOTError(f"{where}: corrupt safetensors header")
    data_len = size - 8 - n
    spans = []
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                raise ScaleOTError(f"{where}: corrupt safetensors metadata")
            continue
        ok = (isinstance(meta, dict) and meta.get("dtype") in DTYPE_BYTES
              and isinstance(meta.get("shape"), list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in meta["shape"])
              and isinstance(meta.get("data_offsets"), list) and len(meta["data_offsets"]) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in meta["data_offsets"]))
        if not ok:
            raise ScaleOTError(f"{where}: corrupt safetensors entry {name!r}")
        start, end = meta["data_offsets"]
        numel = math.prod(meta["shape"])
        if not 0 <= start <= end <= data_len or end - start != numel * DTYPE_BYTES[meta["dtype"]]:
            raise ScaleOTError(f"{where}: safetensors entry {name!r} does not fit the file")
        spans.append((start, end))
        tensors[name] = meta
    spans.sort()
    for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        if s1 < e0:
            raise ScaleOTError(f"{where}: safetensors entries overlap")
    return tensors


def load_safetensors(path: str | Path, what: str | None = None) -> dict:
    """Check the header, then load every tensor (on CPU)."""
    from safetensors.torch import load_file

    check_safetensors(path, what)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ScaleOTError(f"{what or path}: cannot read tensors ({str(e).splitlines()[0][:160]})") from None


def check_content(path: Path, rel: str, where: str) -> None:
    """The file's bytes match the type its name declares (JSON, safetensors, text)."""
    if rel.endswith(".json"):
        read_json_doc(path, f"{where}: {rel}")
    elif rel.endswith(".safetensors"):
        check_safetensors(path, f"{where}: {rel}")
    elif rel.endswith(".md"):
        check_model_card(path, rel, where)
    elif rel.endswith(".png"):
        with open(path, "rb") as f:
            if f.read(8) != PNG:
                raise ScaleOTError(f"{where}: {rel} is not a PNG image (refusing the folder)")
    else:
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(PICKLE_OR_ZIP):
            raise ScaleOTError(f"{where}: {rel} looks like a pickle or zip archive (refusing the folder)")
        if rel.endswith(TEXT_SUFFIXES):
            data = path.read_bytes()
            if b"\x00" in data:
                raise ScaleOTError(f"{where}: {rel} is not text")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise ScaleOTError(f"{where}: {rel} is not UTF-8 text") from None


def check_model_card(path: Path, rel: str, where: str) -> dict:
    """A model card (:mod:`scaleot.exchange.model_card`): only a top-level ``README.md``, at most 1 MiB of
    UTF-8 text, opening with a YAML front matter that is a mapping; returns the front matter."""
    import yaml

    if rel != CARD:
        raise ScaleOTError(f"{where}: {rel}: the only markdown file allowed is {CARD} (refusing the folder)")
    data = path.read_bytes()
    if len(data) > MAX_CARD_BYTES:
        raise ScaleOTError(f"{where}: {rel} is larger than {MAX_CARD_BYTES >> 20} MiB")
    if b"\x00" in data:
        raise ScaleOTError(f"{where}: {rel} is not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScaleOTError(f"{where}: {rel} is not UTF-8 text") from None
    parts = text.split("\n---\n", 1)
    if not text.startswith("---\n") or len(parts) != 2:
        raise ScaleOTError(f"{where}: {rel} has no YAML header (a model card starts with '---')")
    try:
        header = yaml.safe_load(parts[0][4:])
    except yaml.YAMLError as e:
        raise ScaleOTError(f"{where}: {rel} has a malformed YAML header ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(header, dict):
        raise ScaleOTError(f"{where}: {rel}'s YAML header is not a mapping")
    return header


def load_yaml_unique(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing a mapping that holds a key twice.

    Raises:
        yaml.YAMLError: malformed YAML, or ``duplicate key 'k' (line N)`` as its first line.
    """
    import yaml

    class _Unique(yaml.SafeLoader):
        pass

    def _mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = loader.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: safe_load refuses it itself
                continue
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r:.60} (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    _Unique.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
    return yaml.load(text, Loader=_Unique)  # noqa: S506 (a SafeLoader subclass)


def safe_relative(rel: str) -> bool:
    """A manifest path that stays inside its folder."""
    p = PurePosixPath(rel)
    return bool(rel) and "\\" not in rel and not p.is_absolute() and ".." not in p.parts and "." not in p.parts \
        and p.as_posix() == rel


def check_closed_folder(folder: Path, listed: dict, suffixes: tuple[str, ...], what: str) -> None:
    """A folder that crossed the trust boundary holds exactly what its manifest lists.

    Raises:
        ScaleOTError: a link anywhere, a manifest path leaving the folder, an unlisted
            file, a file type outside ``suffixes``, or content that does not match its type.
    """
    for p in [folder, *folder.rglob("*")]:
        if p.is_symlink():
            raise ScaleOTError(f"{folder}: {p.relative_to(folder) if p != folder else '.'} is a link "
                               f"(refusing the {what})")
    for rel in listed:
        if not safe_relative(rel):
            raise ScaleOTError(f"{folder}: manifest path {rel!r} leaves the folder (refusing the {what})")
        if not rel.endswith(suffixes):
            raise ScaleOTError(f"{folder}: file {rel} is not one of {', '.join(suffixes)} (refusing the {what})")
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != "manifest.json" and rel not in listed:
            raise ScaleOTError(f"{folder}: file {rel} is not listed in the manifest (refusing the {what})")
    for rel in listed:
        check_content(folder / rel, rel, str(folder))
