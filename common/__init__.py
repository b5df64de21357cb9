"""The shared library every day builds on. `common/` never imports from `days/`."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
