"""The calculator tool: trace format and spans, and the runtime loop with a scripted model."""

from common.data.instruct import ASSISTANT, END, USER, Example
from common.eval import tool_use as T


def scripted(pieces):
    """A fake model that returns the next scripted piece, cut at the first stop string it contains."""
    seen = []

    def cont(text, stops):
        seen.append(text)
        piece = pieces[min(len(seen) - 1, len(pieces) - 1)]
        cut = min((piece.index(s) + len(s) for s in stops if s in piece), default=len(piece))
        return piece[:cut]
    return cont, seen


def test_trace_spans_cover_the_model_parts_only():
    ex = Example("word", 0, "Ada has 12 shells and gets 9 more. How many shells now?", "21", "12 + 9")
    text, spans = T.render_tool_trace(ex)
    assert text == f"<|tools|>{USER}{ex.prompt}{ASSISTANT}<|calc|>12 + 9<|/calc|><|result|>21<|/result|>21{END}"
    assert [text[a:b] for a, b in spans] == ["<|calc|>12 + 9<|/calc|>", f"21{END}"]
    plain = Example("reverse", 0, "Reverse the letters of 'kalo'.", "olak")
    text, spans = T.render_tool_trace(plain)
    assert [text[a:b] for a, b in spans] == [f"olak{END}"]


def test_runtime_executes_a_call_and_feeds_the_result_back():
    cont, seen = scripted(["<|calc|>12 + 9<|/calc|>", f"21{END}"])
    turn, calls = T.run_with_calculator(cont, "PROMPT")
    assert calls == [("12 + 9", "21")]
    assert turn == f"<|calc|>12 + 9<|/calc|><|result|>21<|/result|>21{END}"
    assert seen[1].endswith("<|result|>21<|/result|>") and T.final_answer(turn) == "21"


def test_hostile_call_gets_an_error_not_an_exception():
    cont, _ = scripted(["<|calc|>__import__('os').system('ls')<|/calc|>", f"no{END}"])
    turn, calls = T.run_with_calculator(cont, "P")
    assert calls[0][1].startswith("error:") and T.final_answer(turn) == "no"


def test_calls_are_bounded_and_plain_answers_pass_through():
    cont, seen = scripted(["<|calc|>1 + 1<|/calc|>"])  # a model that never stops calling
    turn, calls = T.run_with_calculator(cont, "P", max_calls=3)
    assert len(calls) == 3 and len(seen) == 4
    cont, _ = scripted([f"olak{END}"])
    turn, calls = T.run_with_calculator(cont, "P")
    assert calls == [] and T.final_answer(turn) == "olak"
