"""The course machinery: the `make` commands (`cli`), the 100-day curriculum, the learner's
progress tracker, sprint reports, sprint wrap-ups and `make reproduce`.

Uses every other layer; nothing outside `course` imports it. Day programs are launched as
subprocesses, never imported.
"""
