"""The results collector's parts: read job folders (records), group them (cells), compute statistics
(stats, summary), check comparability (consistency), read HPO studies (hpo), and write tables, plots and
the report (tables, plots, report). ``poolstudy.collect`` is the command that ties them together."""
