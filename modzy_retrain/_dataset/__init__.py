"""Datasets: how one is written (options, layout, tables, copies, versions, publication)
and read (the manifest), the result journal, the lock, the trigger. Never imports the
stages: it takes plain values."""
