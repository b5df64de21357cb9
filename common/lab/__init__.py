"""Measurement and maths tools: numerics (floating point, stable softmax), Jacobians, curvature
(Hessian-vector products, top eigenvalues), scaling-law fits, benchmarks and determinism.

Most tools here take functions and tensors, not a `GPT`. Two are probes that train a small GPT as their
measuring instrument: `positions` (the copy task of days 9 and 36) and `retrieval` (the needle of days 37-39).
"""
