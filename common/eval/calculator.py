"""A safe calculator: evaluate arithmetic that a model wrote, or refuse it in one sentence.

The model's calculator calls (sprint 5's tool use) and the answer checker of the instruction tasks both
come here. Nothing reaches Python's `eval`: the text is checked character by character, parsed into an
AST, and walked by hand. Only numbers, + - * / ** , unary signs and parentheses are evaluated. Every
step has a limit, so a hostile input is refused in time and memory bounded by `Limits.max_chars`:

    evaluate("12 * (3 + 4) / 2")      # 42.0
    evaluate("2 ** 10")               # 1024
    evaluate("__import__('os')")      # CalculatorError: only digits, ...
    evaluate("9 ** 9 ** 9")           # CalculatorError: ... larger than the limit
    run_tool("7 / 0")                 # 'error: division by zero'

Why each gate:
- the character set (digits, operators, parentheses, '.', 'e', spaces) refuses names, strings, attribute
  access, calls, subscripts and comprehensions before the parser sees them;
- the length cap bounds the parser's work and the nesting it can build;
- the walk accepts six node types and refuses the rest (so `1 if 1 else 2`, `1 < 2`, `1 // 2` fail);
- `**` is priced before it runs: |b|^e has about e * log10|b| digits, so `10 ** 10 ** 10` is refused
  from that estimate, never computed;
- every intermediate value must be finite and at most `max_abs` in size.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

ALLOWED_CHARS = frozenset("0123456789+-*/(). eE")
BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
UNARY = {ast.UAdd: "+", ast.USub: "-"}


class CalculatorError(ValueError):
    """An expression the calculator refuses; the message is one sentence for the model or the learner."""


@dataclass(frozen=True)
class Limits:
    """The calculator's bounds; each refusal names the one it hit."""

    max_chars: int = 200        # longest expression accepted (bounds parse time and nesting)
    max_depth: int = 32         # deepest operator nesting
    max_nodes: int = 128        # operators and numbers in all
    max_abs: float = 1e15       # largest magnitude of any number, given or computed
    max_exponent: int = 1024    # largest |exponent| of **


DEFAULT_LIMITS = Limits()


def _depth_and_size(tree: ast.AST) -> tuple[int, int]:
    """Depth and node count of an AST, without recursion (a deep tree cannot exhaust the stack)."""
    depth, size, stack = 0, 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        depth, size = max(depth, d), size + 1
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return depth, size


def _check(x: int | float, limits: Limits) -> int | float:
    if isinstance(x, float) and not math.isfinite(x):
        raise CalculatorError("the result is not a finite number.")
    if abs(x) > limits.max_abs:
        raise CalculatorError(f"a value is larger than the limit of {limits.max_abs:g} in size.")
    return x


def _power(base: int | float, exp: int | float, limits: Limits) -> int | float:
    """base ** exp, refused from an estimate of its size before anything is computed."""
    if abs(exp) > limits.max_exponent:
        raise CalculatorError(f"an exponent is larger than {limits.max_exponent} in size.")
    if base == 0 and exp < 0:
        raise CalculatorError("zero to a negative power is a division by zero.")
    if base < 0 and exp != int(exp):
        raise CalculatorError("a negative number to a fractional power is not a real number.")
    if base != 0 and exp * math.log10(abs(base)) > math.log10(limits.max_abs):  # log10 of the result's size
        raise CalculatorError(f"a value is larger than the limit of {limits.max_abs:g} in size.")
    if isinstance(exp, int) and exp < 0:
        return float(base) ** exp  # an int to a negative power is a fraction; keep it a float
    return base ** exp


def _walk(node: ast.AST, limits: Limits) -> int | float:
    if isinstance(node, ast.Expression):
        return _walk(node.body, limits)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check(node.value, limits)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        x = _walk(node.operand, limits)
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        a, b = _walk(node.left, limits), _walk(node.right, limits)
        op = type(node.op)
        if op is ast.Div and b == 0:
            raise CalculatorError("division by zero.")
        if op is ast.Pow:
            return _check(_power(a, b, limits), limits)
        result = a + b if op is ast.Add else a - b if op is ast.Sub else a * b if op is ast.Mult else a / b
        return _check(result, limits)
    raise CalculatorError(f"{type(node).__name__} is not arithmetic: only numbers, + - * / ** and parentheses.")


def evaluate(text: str, limits: Limits = DEFAULT_LIMITS) -> int | float:
    """The value of the arithmetic expression `text`; CalculatorError (one sentence) when it is refused."""
    if not isinstance(text, str):
        raise CalculatorError(f"the expression must be text, got {type(text).__name__}.")
    if len(text) > limits.max_chars:
        raise CalculatorError(f"the expression has {len(text)} characters, more than the limit of "
                              f"{limits.max_chars}.")
    bad = sorted(set(text) - ALLOWED_CHARS)
    if bad:
        raise CalculatorError(f"only digits, + - * / ** , parentheses, '.' and 'e' are allowed, not "
                              f"{''.join(bad[:5])!r}.")
    if not text.strip():
        raise CalculatorError("the expression is empty.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError("the expression is not well-formed arithmetic.") from None
    depth, size = _depth_and_size(tree)
    if depth > limits.max_depth or size > limits.max_nodes:
        raise CalculatorError(f"the expression nests {depth} deep with {size} parts, over the limits of "
                              f"{limits.max_depth} and {limits.max_nodes}.")
    return _walk(tree, limits)


def format_number(x: int | float) -> str:
    """How a result is written back to the model: integers plainly, other floats to 10 significant digits."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x) if isinstance(x, int) else f"{x:.10g}"


def run_tool(text: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The tool runtime's answer to a calculator call: the formatted value, or 'error: <reason>'."""
    try:
        return format_number(evaluate(text, limits))
    except CalculatorError as e:
        return f"error: {e}"


# Inputs a calculator must refuse, each for a different reason: code, names, attribute and item access,
# calls, huge powers and values, deep nesting, long text, non-arithmetic syntax and odd characters.
HOSTILE = (
    "__import__('os').system('echo pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd').read()",
    "exec('1')", "eval('2+2')", "print(1)", "globals()", "__builtins__", "x", "e", "a.b", "lambda: 1",
    "[1] * 10 ** 9", "'a' * 10 ** 9", "[x for x in range(10 ** 9)]", "{1: 2}", "(1, 2)", "f'{1}'",
    "9 ** 9 ** 9 ** 9", "10 ** 10 ** 10", "2 ** 1000000", "2 ** 64 ** 2", "(10 ** 8) ** (10 ** 8)",
    "0.5 ** -100000", "1e308 * 10", "1e999", "-1e999", "9" * 40, "10 ** 15 * 10",
    "(" * 300 + "1" + ")" * 300, "-" * 150 + "1", "1" + "+1" * 150,
    "1" * 100_000, "1+" * 5_000 + "1", " " * 10_000,
    "1 / 0", "0 ** -1", "(-8) ** 0.5", "1 // 2", "7 % 3", "1 << 100000", "~1", "1 < 2", "1 if 1 else 2",
    "1; 2", "import os", "1j", "0x10", "1_000", "True + 1", "None", "1 and 2", "not 1", "1 @ 2",
    "\x00", "１+１", "1+1\n__import__('os')", "", "   ", "(", "1 +", "**2", "1 ** ", "..", "1..2", "1e",
)
