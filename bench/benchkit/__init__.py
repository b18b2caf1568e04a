"""Shared pieces of the benchmark harness (see bench/run.py).

``measure`` is imported by the measurement scripts in two virtualenvs (ours and the peers'),
so it uses the standard library only; the other modules serve ``run.py`` alone.
"""
