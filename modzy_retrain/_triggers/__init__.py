"""The retraining trigger's actions: what firing a ready version does, and its record.

The gate (``_dataset/trigger.py``) decides whether a version is ready; this layer fires
it: a Python callback, a shell command, a webhook, or a preset that starts training
where teams run it (GitHub Actions, GitLab CI, Airflow, Dagster). Each action is
recorded on its own per version, so a rerun fires only what has not succeeded yet.
Imports ``_core`` and ``_dataset`` only.
"""
