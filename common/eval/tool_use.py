"""Calculator tool use: the trace format a model learns, and the runtime that executes its calls.

A conversation in which the calculator is offered starts with `<|tools|>`, and an assistant turn with a
call reads

    <|tools|><|user|>...<|assistant|><|calc|>12 + 9<|/calc|><|result|>21<|/result|>21<|end|>

Without `<|tools|>` the same model is asked to answer directly, so one model gives both the tool and
the no-tool answer to the same question (`tool_prompt` / `instruct.render`).

The model writes the call and the final answer; the runtime writes the result. So in training the loss
covers the model's parts only (`render_tool_trace` returns their character spans), and at inference
`run_with_calculator` stops the model at `<|/calc|>`, evaluates the expression with the safe calculator
(`common.eval.calculator.run_tool`: a refused call gets 'error: ...' back, never an exception), appends
the result and lets the model go on, up to `max_calls` times.
"""

from __future__ import annotations

from collections.abc import Callable

from common.data.instruct import ASSISTANT, END, USER, Example
from common.eval.calculator import run_tool

CALL, CALL_END, RESULT, RESULT_END = "<|calc|>", "<|/calc|>", "<|result|>", "<|/result|>"
TOOLS = "<|tools|>"  # first token of a conversation in which the calculator may be called
TOOL_SPECIAL = (CALL, CALL_END, RESULT, RESULT_END)


def tool_prompt(example: Example) -> str:
    """The generation prompt of `example` with the calculator offered: it ends at the assistant marker."""
    return f"{TOOLS}{USER}{example.prompt}{ASSISTANT}"


def render_tool_trace(example: Example) -> tuple[str, list[tuple[int, int]]]:
    """Chat text (calculator offered) whose assistant turn calls the calculator on `example.expression`, and the
    spans the
    model must learn (the call, then the answer and END); the result in between is the tool's, not trained.
    Examples without an expression get a plain answer (one span)."""
    head = tool_prompt(example)
    if not example.expression:
        return head + example.answer + END, [(len(head), len(head) + len(example.answer) + len(END))]
    call = f"{CALL}{example.expression}{CALL_END}"
    result = f"{RESULT}{run_tool(example.expression)}{RESULT_END}"
    text = head + call + result + example.answer + END
    a = len(head) + len(call) + len(result)
    return text, [(len(head), len(head) + len(call)), (a, len(text))]


def run_with_calculator(continue_text: Callable[[str, tuple[str, ...]], str], prompt_text: str,
                        max_calls: int = 4) -> tuple[str, list[tuple[str, str]]]:
    """Let a model answer with calculator calls; returns (the assistant's turn, [(expression, result)]).

    `continue_text(text, stops)` is the model: it returns its continuation of `text`, ending with the first
    stop string it writes (or wherever it stops on its own). The runtime stops it at CALL_END or END.
    """
    turn, calls = "", []
    for _ in range(max_calls + 1):
        piece = continue_text(prompt_text + turn, (CALL_END, END))
        turn += piece
        if not piece.endswith(CALL_END) or CALL not in piece or len(calls) == max_calls:
            break
        expression = piece[piece.rindex(CALL) + len(CALL):-len(CALL_END)]
        result = run_tool(expression)
        calls.append((expression, result))
        turn += f"{RESULT}{result}{RESULT_END}"
    return turn, calls


def final_answer(turn: str) -> str:
    """The answer after the last tool result (or the whole turn), up to END, stripped."""
    tail = turn.rsplit(RESULT_END, 1)[-1]
    return tail.split(END, 1)[0].strip()
