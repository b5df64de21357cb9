"""Evaluation: checkers that score a model's output without trusting it.

`calculator` is the safe arithmetic evaluator that verifies answers and runs the model's calculator
calls (sprint 5's tool use): an AST walk over numbers and + - * / ** with hard limits, never `eval`.
`metrics` scores answers: exact match, win rate with a bootstrap interval, distinct-n.
"""
