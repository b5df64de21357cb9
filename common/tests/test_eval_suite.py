"""common/eval/suite.py: the versioned results file, the regression check and the model loaders."""

import json

import pytest
import torch

from common.data.chat import ChatTokenizer
from common.eval import suite
from common.nn.model import GPT, GPTConfig


def record(**metrics):
    return {"tasks": {"t": {"version": 1, "config_hash": "abc", "metrics": metrics,
                            "higher_is_better": {k: k != "bits_per_byte" for k in metrics}}}}


def test_compare_flags_regressions_by_direction_and_threshold():
    prev = record(acc=0.50, bits_per_byte=2.0)
    rows = {r["metric"]: r for r in suite.compare(prev, record(acc=0.495, bits_per_byte=2.01), 0.01)}
    assert rows["acc"]["status"] == "ok" and rows["bits_per_byte"]["status"] == "ok"      # within 1 point / 1%
    rows = {r["metric"]: r for r in suite.compare(prev, record(acc=0.48, bits_per_byte=2.1), 0.01)}
    assert rows["acc"]["status"] == "regression" and rows["bits_per_byte"]["status"] == "regression"
    assert rows["bits_per_byte"]["change"] == pytest.approx(-0.05)                           # 5% worse
    rows = {r["metric"]: r for r in suite.compare(prev, record(acc=0.6, bits_per_byte=1.5), 0.01)}
    assert {r["status"] for r in rows.values()} == {"improved"}
    assert suite.verdict(list(rows.values())) == "no regression"
    bad = suite.compare(prev, record(acc=0.3, bits_per_byte=2.0))
    assert suite.verdict(bad).startswith("REGRESSION: t/acc 0.5 -> 0.3")


def test_changed_task_definition_is_not_comparable():
    prev, cur = record(acc=0.5), record(acc=0.1)
    cur["tasks"]["t"]["version"] = 2
    assert suite.compare(prev, cur)[0]["status"] == "not comparable"
    assert suite.compare({"tasks": {}}, cur)[0]["status"] == "new"


def test_bootstrap_se_matches_the_binomial_formula():
    v = [1.0] * 300 + [0.0] * 700
    assert suite.bootstrap_se(v) == pytest.approx((0.3 * 0.7 / 1000) ** 0.5, rel=0.1)
    assert suite.bootstrap_se([1.0]) == 0.0


def tiny(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ChatTokenizer().vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                          pos="rope"))
    return suite.export(model, tmp_path / "tiny.pt", chat=True), model


def test_two_runs_write_two_files_and_the_second_finds_no_regression(tmp_path):
    path, model = tiny(tmp_path)
    out = tmp_path / "results"
    first = suite.evaluate_model(str(path), "instruct_lookup,story_endings", out, limit=8, log=lambda *_: None)
    assert first["verdict"].startswith("first run") and first["path"].exists()
    rec = json.loads(first["path"].read_text())
    assert rec["model"] == "tiny" and rec["weights"] == suite.weights_hash(model)
    assert set(rec["tasks"]) == {"instruct_lookup", "story_endings"} and rec["tasks"]["story_endings"]["n"] == 8
    assert (first["path"].with_suffix("") / "story_endings.jsonl").read_text().count("\n") == 8
    second = suite.evaluate_model(str(path), "instruct_lookup,story_endings", out, limit=8, log=lambda *_: None)
    assert second["verdict"] == "no regression" and second["previous"] == first["path"]
    assert {r["status"] for r in second["rows"]} == {"ok"} and len(suite.history(out, "tiny")) == 2


def test_cli_exit_codes(tmp_path, capsys):
    path, _ = tiny(tmp_path)
    args = ["--model", str(path), "--tasks", "instruct_copy", "--limit", "4", "--out", str(tmp_path / "r")]
    assert suite.main(args) == 0 and suite.main(args) == 0
    assert "no regression" in capsys.readouterr().out
    assert suite.main(["--model", "nonsense", "--out", str(tmp_path / "r")]) == 2
    assert suite.main(["--model", str(path), "--tasks", "no_such_task", "--out", str(tmp_path / "r")]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_perplexities_are_derived_not_judged():
    prev = record(bits_per_byte=2.0)
    prev["tasks"]["t"]["metrics"]["word_perplexity"] = 100.0
    cur = record(bits_per_byte=2.0)
    cur["tasks"]["t"]["metrics"]["word_perplexity"] = 300.0
    cur["tasks"]["t"]["higher_is_better"]["word_perplexity"] = False
    rows = {r["metric"]: r["status"] for r in suite.compare(prev, cur)}
    assert rows == {"bits_per_byte": "ok", "word_perplexity": "derived"}
    assert suite.verdict(suite.compare(prev, cur)) == "no regression"


def test_a_saved_transformers_model_runs_through_make_eval(tmp_path):
    """`--model hf:<folder>`: a tiny GPT-2 and a byte-level BPE tokenizer saved with save_pretrained, nothing
    downloaded, evaluated twice: the second run finds no regression."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["Once upon a time there was a girl named Lily. " * 5],
                            trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(fast), n_positions=64, n_embd=16,
                                                                 n_layer=1, n_head=2))
    folder = tmp_path / "tiny_hf"
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    args = ["--model", f"hf:{folder}", "--tasks", "story_endings,instruct_copy", "--limit", "4",
            "--out", str(tmp_path / "r")]
    assert suite.main(args) == 0 and suite.main(args) == 0
    rec = json.loads(suite.history(tmp_path / "r", "tiny_hf")[-1].read_text())
    assert rec["tasks"]["story_endings"]["n"] == 4 and rec["weights"] == suite.weights_hash(model)
