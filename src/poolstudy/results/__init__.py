"""Analysis of trained models and of finished runs.

- invariance: shift-invariance probes, run on each trained model (their numbers go into metrics.json).
- The results collector's parts: read job folders (records), keep only results that belong to their
  labels (screening), group them (cells), count each seed once per cell (replicates, by the settings
  that decide a result: identity), compute statistics (stats, summary), check comparability
  (consistency), read HPO studies (hpo), and write tables, plots and the report (tables, plots,
  report). ``poolstudy.collect`` is the command that ties them together.
"""
