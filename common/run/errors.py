"""The one exception type for mistakes a learner can fix: a bad day number, an unknown config
key, a missing dataset, a malformed progress.yaml, a corrupt checkpoint, a NaN loss.

The runner and `make` catch `UserError`, print its message (one sentence saying what is wrong and
what to do) and exit non-zero, without a traceback. Anything else is a bug and shows one.
"""


class UserError(Exception):
    """A problem with the learner's input or environment, explained in one sentence."""
