"""The evaluation harness: task YAML, few-shot prompts, multiple choice (acc, acc_norm), generation with answer
filters, ROUGE, rolling log-likelihood metrics, and the shipped task files."""

import math

import pytest

from common.eval import harness as H
from common.eval.harness import Task, evaluate


class Fake:
    """A model whose log-likelihood is minus the continuation's length, except for favoured strings."""

    chat = False

    def __init__(self, favour=(), outputs=None):
        self.favour, self.outputs, self.seen = set(favour), outputs or {}, []

    def apply_chat(self, text):
        return f"<u>{text}<a>"

    def loglikelihood(self, pairs):
        self.seen += pairs
        return [((-1.0 if cont.strip() in self.favour else -float(len(cont))), False) for _, cont in pairs]

    def loglikelihood_rolling(self, texts, stride=None):
        return [-2.0 * len(t.encode()) for t in texts]      # 2 nats per byte

    def generate(self, prompts, until, max_new):
        self.seen += prompts
        return [self.outputs.get(p.splitlines()[-1], "") for p in prompts]


DOCS = [{"question": "2+2?", "answer": "4", "choices": ["4", "22", "five"]},
        {"question": "capital of France?", "answer": "Paris", "choices": ["Rome", "Paris", "Oslo"]}]


def test_multiple_choice_acc_and_acc_norm():
    task = Task("toy", output_type="multiple_choice", doc_to_text="Q: {question}\nA:", doc_to_choice="choices")
    res = evaluate(task, Fake(favour={"4", "Paris"}), DOCS)  # the right choices get -1, the others -len
    assert res["metrics"] == {"acc": 1.0, "acc_norm": 1.0}
    assert res["samples"][1]["loglikelihoods"] == [-5.0, -1.0, -5.0]
    long = [{"question": "q", "answer": "longer", "choices": ["ab", "longer"]}]
    fav = Fake()
    fav.loglikelihood = lambda pairs: [(-2.0, False), (-4.0, False)]  # per byte: -1.0 ("ab") vs -0.67 ("longer")
    r = evaluate(Task("len", output_type="multiple_choice", doc_to_choice="choices"), fav, long)
    assert r["metrics"] == {"acc": 0.0, "acc_norm": 1.0}  # the length bias acc_norm removes


def test_fewshot_prompts_exclude_the_scored_document_and_are_seeded():
    task = Task("toy", doc_to_text="Q: {question}\nA:", num_fewshot=1, fewshot_seed=7)
    p0 = task.fewshot_prefix(DOCS, 0)
    assert p0 == "Q: capital of France?\nA: Paris\n\n" and task.fewshot_prefix(DOCS, 0) == p0
    assert "2+2" in task.fewshot_prefix(DOCS, 1)


def test_generation_exact_match_filters_and_chat_wrapping():
    task = Task("gen", doc_to_text="Q: {question}\nA:", filters=[{"regex": r"-?\d+"}])
    model = Fake(outputs={"A:": " it is 4, I think"})
    res = evaluate(task, model, DOCS[:1])
    assert res["metrics"] == {"exact_match": 1.0} and res["samples"][0]["answer"] == "4"
    model = Fake(outputs={"A:<a>": "4"})
    res = evaluate(Task("gen", doc_to_text="Q: {question}\nA:", chat=True), model, DOCS[:1])
    assert model.seen[-1] == "<u>Q: 2+2?\nA:<a>" and res["metrics"]["exact_match"] == 1.0


def test_filters():
    assert H.apply_filters("  Max went home\nnext", ["first_line", {"regex": "[A-Za-z]+"}]) == "Max"
    assert H.apply_filters("x = 12 or 13", [{"regex": r"= (\d+)"}]) == "12"           # group 1 when present
    assert H.apply_filters("no digits", [{"regex": r"\d+"}]) == "no digits"          # a miss stays visible
    assert H.apply_filters(" AbC ", ["strip", "lower"]) == "abc"
    with pytest.raises(ValueError, match="unknown filter"):
        H.make_filter("upper")


def test_rouge_on_known_strings():
    """ROUGE-1/2/L F1 worked by hand: reference 'the cat sat on the mat', prediction 'the cat is on the mat'."""
    r = H.rouge("the cat is on the mat", "the cat sat on the mat")
    assert r["rouge1"] == pytest.approx(5 / 6)           # 5 of 6 unigrams shared (clipped counts), P = R
    assert r["rouge2"] == pytest.approx(3 / 5)           # the cat, on the, the mat: 3 of 5 bigrams
    assert r["rougeL"] == pytest.approx(5 / 6)           # LCS: the cat on the mat
    assert H.rouge("Cats running!", "cat runs")["rouge1"] == 1.0   # lower case + Porter stems
    assert H.rouge("", "anything")["rouge1"] == 0.0


def test_rolling_metrics_are_ratios_of_totals():
    task = Task("ppl", output_type="loglikelihood_rolling", doc_to_target="{text}")
    res = evaluate(task, Fake(), [{"text": "ab cd"}, {"text": "é"}])   # 5 + 2 bytes, 2 + 1 words
    assert res["metrics"]["bits_per_byte"] == pytest.approx(2 / math.log(2))
    assert res["metrics"]["byte_perplexity"] == pytest.approx(math.exp(2))
    assert res["metrics"]["word_perplexity"] == pytest.approx(math.exp(2 * 7 / 3))


def test_yaml_round_trip_include_and_bad_fields(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("task: arith\noutput_type: multiple_choice\ndoc_to_choice: choices\nnum_fewshot: 2\n")
    t = Task.from_yaml(p)
    assert (t.task, t.num_fewshot, t.doc_to_choice) == ("arith", 2, "choices")
    (tmp_path / "_base.yaml").write_text("max_new: 5\nchat: true\n")
    (tmp_path / "inc.yaml").write_text("include: _base.yaml\ntask: inc\nmax_new: 7\n")
    t = Task.from_yaml(tmp_path / "inc.yaml")
    assert (t.max_new, t.chat) == (7, True)               # the file's own fields win over the base's
    p.write_text("task: arith\nshots: 2\n")
    with pytest.raises(ValueError, match="unknown task field"):
        Task.from_yaml(p)
    with pytest.raises(ValueError, match="needs doc_to_choice"):
        Task("x", output_type="multiple_choice")
    with pytest.raises(ValueError, match="output_type"):
        Task("x", output_type="loglikelihood")
    with pytest.raises(ValueError, match="unknown metric"):
        Task("x", metrics=["bleu"])
    with pytest.raises(ValueError, match="unknown task"):
        H.load_task("no_such_task")


def test_shipped_tasks_load_and_groups_resolve():
    names = H.task_names()
    assert {"instruct_mc", "story_endings", "story_cloze", "story_xsum", "wikitext2", "tinystories_ppl"} <= set(names)
    assert all(H.load_task(n).task == n for n in names)   # file name and task name agree
    inst = H.resolve("instruct")
    assert len(inst) == 6 and all(H.load_task(n).chat for n in inst)
    assert H.resolve("story_xsum,instruct_copy,story_xsum") == ["story_xsum", "instruct_copy"]
    assert H.resolve("all") == names
