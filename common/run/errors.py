"""The one exception type for mistakes a learner can fix: a bad day number, an unknown config
key, a missing dataset, a malformed progress.yaml, a corrupt checkpoint, a NaN loss.

The runner and `make` catch `UserError`, print its message (one sentence saying what is wrong and
what to do) and exit non-zero, without a traceback. Anything else is a bug and shows one.
"""


class UserError(Exception):
    """A problem with the learner's input or environment, explained in one sentence."""


def run_checked(cmd: list[str], what: str, **kwargs):
    """`subprocess.run(cmd, capture_output=True, text=True)`; a failure becomes one UserError sentence
    naming `what` failed, its exit code and the last line it printed on stderr (the real error)."""
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
        raise UserError(f"{what} failed (exit {proc.returncode}): {lines[-1].strip() if lines else 'no output'}")
    return proc
