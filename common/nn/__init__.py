"""The model library: attention (from scratch and SDPA), positional schemes, norms and MLPs, the
block, the configurable decoder `GPT`, KV caches and generation.

    from common.nn.model import GPT, GPTConfig

Imports only torch and `common.run.errors`; never the runner, tracker or course machinery.
"""
