"""Task loaders (JSONL, BIG-bench from a small tar), splits, generic text, fine-tuning encoding."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from scaleot.data import (
    IGNORE_INDEX,
    PadCollator,
    SplitConfig,
    encode_example,
    load_jsonl_task,
    load_task,
    pack_blocks,
    read_corpus,
    split_examples,
)
from scaleot.errors import ScaleOTError


def test_jsonl_task_loads(tiny_task_file):
    examples = load_jsonl_task(tiny_task_file)
    assert len(examples) == 40
    assert examples[0].choices[examples[0].label] == " blue"


@pytest.mark.parametrize("line, message", [
    ('{"context": "x", "choices": ["a", "b"], "label": 0', "tiny.jsonl:2: not valid JSON"),
    ('{"context": "x", "choices": ["a"], "label": 0}', "tiny.jsonl:2: a multiple-choice example needs at least 2 choices"),
    ('{"context": "x", "choices": ["a", "b"], "label": 5}', "tiny.jsonl:2: label 5 is not an index"),
    ('{"context": "x", "label": 0}', "tiny.jsonl:2: expected an object with context, choices, label"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "tiny.jsonl"
    path.write_text('{"context": "ok", "choices": ["a", "b"], "label": 1}\n' + line + "\n")
    with pytest.raises(ScaleOTError, match=message):
        load_jsonl_task(path)


def test_missing_and_unknown_tasks():
    with pytest.raises(ScaleOTError, match="task file not found"):
        load_task("/nonexistent/task.jsonl")
    with pytest.raises(ScaleOTError, match="unknown task 'mmlu'.*gen:unit_conversion"):
        load_task("mmlu")


def _tar_with(tmp_path, tasks: dict[str, dict]):
    path = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, spec in tasks.items():
            data = json.dumps(spec).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _mc_task(n):
    return {"name": "t", "examples": [
        {"input": f"question {i}?", "target_scores": {"yes": int(i % 2 == 0), "no": int(i % 2 == 1)}}
        for i in range(n)]}


def test_bigbench_loader_on_small_tar(tmp_path, scaleot_home, monkeypatch):
    archive = _tar_with(tmp_path, {
        "toy": _mc_task(30),
        "parent/child": {**_mc_task(12), "task_prefix": "Answer.\n", "example_input_prefix": "\nQuestion: ",
                         "example_output_prefix": "\nAnswer: "},
        "parent": {"name": "parent", "subtasks": [{"name": "parent:child"}]},
        "gen_only": {"name": "g", "examples": [{"input": "x", "target": "y"}]},
    })
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(archive))
    splits = load_task("bigbench:toy", SplitConfig(seed=1, n_test=10, n_val=5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 10)
    ex = splits.test[0]
    assert ex.context.startswith("Q: question") and ex.context.endswith("A:")
    assert ex.choices == [" yes", " no"]
    sub = load_task("bigbench:parent/child", SplitConfig(n_test=5, n_val=2)).test[0]
    assert sub.context.startswith("Answer.\n\nQuestion: question") and sub.context.endswith("Answer:")
    with pytest.raises(ScaleOTError, match="has no examples; it has subtasks: parent/child"):
        load_task("bigbench:parent")
    # cached: works even after the archive disappears
    archive.unlink()
    assert len(load_task("bigbench:toy", SplitConfig(n_test=10, n_val=5)).train) == 15
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(_tar_with(tmp_path, {"x": _mc_task(3)})))
    with pytest.raises(ScaleOTError, match="unknown BIG-bench task 'nope'"):
        load_task("bigbench:nope")


def test_bigbench_task_without_choices_fails(tmp_path, scaleot_home, monkeypatch):
    archive = _tar_with(tmp_path, {"gen_only": {"name": "g", "examples": [{"input": "x", "target": "y"}]}})
    monkeypatch.setenv("SCALEOT_BIGBENCH", str(archive))
    with pytest.raises(ScaleOTError, match="no multiple-choice examples"):
        load_task("bigbench:gen_only")


def test_splits_are_deterministic_disjoint_and_recorded(tiny_task_file):
    examples = load_jsonl_task(tiny_task_file)
    ids = {id(e): i for i, e in enumerate(examples)}
    a = split_examples("t", examples, SplitConfig(seed=3, n_test=10, n_val=5))
    b = split_examples("t", examples, SplitConfig(seed=3, n_test=10, n_val=5))
    c = split_examples("t", examples, SplitConfig(seed=4, n_test=10, n_val=5))
    parts = [[ids[id(e)] for e in getattr(a, s)] for s in ("train", "val", "test")]
    assert parts == [[ids[id(e)] for e in getattr(b, s)] for s in ("train", "val", "test")]
    assert parts[2] != [ids[id(e)] for e in c.test]
    assert len(set(sum(parts, []))) == 40
    assert a.describe() == {"task": "t", "seed": 3, "n_total": 40, "n_train": 25, "n_val": 5, "n_test": 10}
    with pytest.raises(ScaleOTError, match="fewer than n_test"):
        split_examples("t", examples, SplitConfig(n_test=40, n_val=5))
    with pytest.raises(ScaleOTError, match=r"n_test must be > 0 \(got 0\); n_val must be >= 0 \(got -1\)"):
        split_examples("t", examples, SplitConfig(n_test=0, n_val=-1))


def test_generic_text_corpora(tmp_path, char_tokenizer):
    assert len(read_corpus("kjv")) == 1189  # chapters of the King James Bible
    txt = tmp_path / "c.txt"
    txt.write_text("first paragraph\n\nsecond one\n\n")
    assert read_corpus(str(txt)) == ["first paragraph", "second one"]
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"text": "a"}\n{"nope": 1}\n')
    with pytest.raises(ScaleOTError, match="c.jsonl:2: expected an object with a 'text' string"):
        read_corpus(str(jl))
    with pytest.raises(ScaleOTError, match="unknown corpus 'wiki'"):
        read_corpus("wiki")
    blocks = pack_blocks(["abcdefgh", "ijklmnop"], char_tokenizer, block_size=4)
    assert blocks.shape == (4, 4)  # 8 + eos + 8 + eos = 18 tokens -> 4 blocks of 4
    assert blocks[2, 0].item() == char_tokenizer.eos_token_id


def test_blocks_open_with_the_tokenizers_bos_where_it_adds_one(hf_tokenizer):
    """A tokenizer that prepends <bos> (Gemma) gets it at the start of every block; one that does not, nothing."""
    from tokenizers import processors

    from scaleot.data.text import text_prefix

    docs = ["the cat is red", "the dog is blue", "the sky is blue"]
    plain = pack_blocks(docs, hf_tokenizer, block_size=4)
    assert text_prefix(hf_tokenizer) == [] and plain.shape == (3, 4)  # 4 + 1 eos, three times: 15 tokens
    bos = hf_tokenizer.bos_token_id
    hf_tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)])
    assert text_prefix(hf_tokenizer) == [bos]
    blocks = pack_blocks(docs, hf_tokenizer, block_size=4)
    assert blocks.shape == (5, 4) and (blocks[:, 0] == bos).all()  # 15 text tokens, 3 a block
    assert blocks[:, 1:].flatten().tolist()[:12] == plain.flatten().tolist()  # the same text stream


def test_encode_example_masks_context(char_tokenizer):
    from scaleot.data import MCExample

    ex = MCExample("Q: x A:", [" no", " yes"], 1)
    enc = encode_example(ex, char_tokenizer, max_length=64)
    n_ctx = len("Q: x A:")
    assert enc["labels"][:n_ctx] == [IGNORE_INDEX] * n_ctx
    assert enc["labels"][n_ctx:] == enc["input_ids"][n_ctx:] == char_tokenizer(" yes")["input_ids"]
    short = encode_example(ex, char_tokenizer, max_length=6)  # context truncated from the left
    assert len(short["input_ids"]) == 6 and short["labels"][-4:] == char_tokenizer(" yes")["input_ids"]
    batch = PadCollator(pad_token_id=0)([enc, short])
    assert batch["input_ids"].shape == (2, len(enc["input_ids"]))
    assert batch["attention_mask"][1].sum().item() == 6
    assert (batch["labels"][1, 6:] == IGNORE_INDEX).all()


def test_encode_example_opens_with_bos_like_the_evaluator(hf_tokenizer):
    """Where the tokenizer prepends <bos> (Gemma), training examples start with it too, unscored."""
    from tokenizers import processors

    from scaleot.data import MCExample
    from scaleot.evaluation.fast_mc import LmEvalEncoder

    ex = MCExample("Q: is the sky blue A:", [" no", " yes"], 1)
    before = encode_example(ex, hf_tokenizer, max_length=64)
    bos = hf_tokenizer.bos_token_id
    hf_tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)])
    enc = encode_example(ex, hf_tokenizer, max_length=64)
    assert enc["input_ids"] == [bos] + before["input_ids"] and enc["labels"] == [IGNORE_INDEX] + before["labels"]
    ctx, cont = LmEvalEncoder(hf_tokenizer).pair(ex.context, ex.choices[1])
    assert enc["input_ids"] == ctx + cont  # exactly the sequence the evaluator scores
    short = encode_example(ex, hf_tokenizer, max_length=3)  # truncation keeps <bos> and the answer
    assert short["input_ids"][0] == bos and len(short["input_ids"]) == 3 and short["labels"][-1] != IGNORE_INDEX
