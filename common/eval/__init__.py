"""Evaluation: checkers that score a model's output without trusting it.

`calculator` is the safe arithmetic evaluator that verifies answers and runs the model's calculator
calls (sprint 5's tool use): an AST walk over numbers and + - * / ** with hard limits, never `eval`.
`tool_use` is the calculator-call trace format and the runtime loop that executes a model's calls.
`metrics` scores answers: exact match, win rate with a bootstrap interval, distinct-n.
Sprint 6's harness: `harness` (tasks as YAML in `tasks/`, scoring), `lm` (models behind one interface:
our GPTs and transformers causal LMs), `datasets` (the documents tasks read), `suite` (`make eval`:
versioned results and the regression check).
"""
