"""Measurement and maths tools: numerics (floating point, stable softmax), Jacobians, curvature
(Hessian-vector products, top eigenvalues), scaling-law fits, benchmarks and determinism.

Independent of the model: a tool here takes functions and tensors, not a `GPT`.
"""
