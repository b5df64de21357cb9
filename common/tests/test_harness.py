"""The evaluation harness: task YAML, few-shot prompts, multiple-choice scoring (acc, acc_norm), generation."""

import pytest

from common.eval.harness import Task, evaluate


class Fake:
    """A model whose log-likelihood is minus the continuation's length, except for favoured strings."""

    def __init__(self, favour=(), outputs=None):
        self.favour, self.outputs, self.seen = set(favour), outputs or {}, []

    def loglikelihood(self, pairs):
        self.seen += pairs
        return [(-1.0 if cont.strip() in self.favour else -float(len(cont))) for _, cont in pairs]

    def generate(self, prompts, until, max_new):
        return [self.outputs.get(p.splitlines()[-1], "") for p in prompts]


DOCS = [{"question": "2+2?", "answer": "4", "choices": ["4", "22", "five"]},
        {"question": "capital of France?", "answer": "Paris", "choices": ["Rome", "Paris", "Oslo"]}]


def test_multiple_choice_acc_and_acc_norm():
    task = Task("toy", output_type="multiple_choice", doc_to_text="Q: {question}\nA:", doc_to_choice="choices")
    res = evaluate(task, Fake(favour={"4", "Paris"}), DOCS)  # the right choices get -1, the others -len
    assert res["metrics"] == {"acc": 1.0, "acc_norm": 1.0}
    assert res["samples"][1]["loglikelihoods"] == [-5.0, -1.0, -5.0]
    long = [{"question": "q", "answer": "longer", "choices": ["ab", "longer"]}]
    fav = Fake(favour=set())
    fav.loglikelihood = lambda pairs: [-2.0, -4.0]  # per character: -1.0 ("ab") vs -0.67 ("longer")
    r = evaluate(Task("len", output_type="multiple_choice", doc_to_choice="choices"), fav, long)
    assert r["metrics"] == {"acc": 0.0, "acc_norm": 1.0}  # the length bias acc_norm removes


def test_fewshot_prompts_exclude_the_scored_document_and_are_seeded():
    task = Task("toy", doc_to_text="Q: {question}\nA:", num_fewshot=1, fewshot_seed=7)
    p0 = task.fewshot_prefix(DOCS, 0)
    assert p0 == "Q: capital of France?\nA: Paris\n\n" and task.fewshot_prefix(DOCS, 0) == p0
    assert "2+2" in task.fewshot_prefix(DOCS, 1)


def test_generation_exact_match_and_samples():
    task = Task("gen", doc_to_text="Q: {question}\nA:")
    model = Fake(outputs={"A:": " 4"})
    res = evaluate(task, model, DOCS[:1])
    assert res["metrics"] == {"exact_match": 1.0} and res["samples"][0]["output"] == " 4"


def test_yaml_round_trip_and_bad_fields(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("task: arith\noutput_type: multiple_choice\ndoc_to_choice: choices\nnum_fewshot: 2\n")
    t = Task.from_yaml(p)
    assert (t.task, t.num_fewshot, t.doc_to_choice) == ("arith", 2, "choices")
    p.write_text("task: arith\nshots: 2\n")
    with pytest.raises(ValueError, match="unknown task field"):
        Task.from_yaml(p)
    with pytest.raises(ValueError, match="needs doc_to_choice"):
        Task("x", output_type="multiple_choice")
    with pytest.raises(ValueError, match="output_type"):
        Task("x", output_type="loglikelihood_rolling")
