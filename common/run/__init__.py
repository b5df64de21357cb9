"""The harness a day runs in: the runner (`runner.cli`, `Context`), configs and presets, tracking
(banner, metrics.jsonl, TensorBoard, summary.json), plotting, atomic writes, user errors and the
progress bar.

`atomic`, `errors` and `progress_bar` are leaves the library layers may use; `runner` and
`tracking` are for days and the course only.
"""
