"""The safe calculator: Python's arithmetic where it accepts, a refusal in bounded time and memory elsewhere."""

import random
import time
import tracemalloc

import pytest

from common.eval.calculator import HOSTILE, CalculatorError, Limits, evaluate, format_number, run_tool


@pytest.mark.parametrize("text, value", [
    ("12 * (3 + 4) / 2", 42.0), ("2 ** 10", 1024), ("-3 + 5", 2), ("2 ** -1", 0.5), ("1e3 + 1", 1001.0),
    ("2 + 3 * 4 ** 2", 50), ("-2 ** 2", -4), ("(-2) ** 3", -8), ("+7", 7), ("1.5 * 4", 6.0), ("10 ** 15", 10**15),
    (" 8 / 3 ", 8 / 3), ("0 ** 0", 1), ("4 ** 0.5", 2.0),
])
def test_values_by_hand(text, value):
    got = evaluate(text)
    assert got == value and type(got) is type(value)


def random_expression(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return str(rng.randint(0, 50))
    op = rng.choice(["+", "-", "*", "/", "**"])
    left, right = random_expression(rng, depth - 1), random_expression(rng, depth - 1)
    if op == "**":
        right = str(rng.randint(0, 2))
    return f"({left} {op} {right})" if rng.random() < 0.5 else f"-{left} {op} {right}"


def test_agrees_with_python_on_random_arithmetic():
    """Python's own evaluator is the reference on expressions we generate (and so can trust)."""
    rng, checked = random.Random(0), 0
    for _ in range(500):
        text = random_expression(rng, 3)  # small enough that no intermediate value passes max_abs
        try:
            expect = eval(text, {"__builtins__": {}})  # noqa: S307 - our own generated arithmetic
        except ZeroDivisionError:
            with pytest.raises(CalculatorError, match="zero"):
                evaluate(text)
            continue
        if isinstance(expect, complex) or abs(expect) > Limits().max_abs:
            with pytest.raises(CalculatorError):
                evaluate(text)
            continue
        assert evaluate(text) == pytest.approx(expect, rel=1e-12, abs=1e-12), text
        checked += 1
    assert checked > 300


def test_every_hostile_input_is_refused_quickly_and_in_little_memory():
    assert len(HOSTILE) >= 50
    for text in HOSTILE:
        tracemalloc.start()
        t0 = time.perf_counter()
        with pytest.raises(CalculatorError):
            evaluate(text)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 0.5, f"{text[:40]!r} took {elapsed:.3f} s"
        assert peak < 4 * 2**20, f"{text[:40]!r} peaked at {peak / 2**20:.1f} MiB"


def test_each_limit_is_a_boundary():
    assert evaluate("10 ** 15") == 10**15
    with pytest.raises(CalculatorError, match="limit"):
        evaluate("10 ** 15 + 1")
    small = Limits(max_chars=5)
    assert evaluate("1+2+3", small) == 6
    with pytest.raises(CalculatorError, match="characters"):
        evaluate("1+2+34", small)
    with pytest.raises(CalculatorError, match="nests"):
        evaluate("(" * 20 + "1" + ")" * 20 + "+1" * 5, Limits(max_depth=4))
    with pytest.raises(CalculatorError, match="exponent"):
        evaluate("1 ** 2000")
    with pytest.raises(CalculatorError):
        evaluate(12)  # not text


def test_tool_answers_are_text():
    assert run_tool("7 / 2") == "3.5" and run_tool("6 / 3") == "2" and run_tool("1 / 3") == "0.3333333333"
    assert run_tool("7 / 0") == "error: division by zero."
    assert run_tool("open('x')").startswith("error: only digits")
    assert format_number(-4.0) == "-4" and format_number(2**40) == "1099511627776" and format_number(1e20) == "1e+20"
