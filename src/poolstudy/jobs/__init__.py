"""The life of one job folder: which configuration it belongs to, who may write it, how a job ends.

- ``identity``: the configuration entries that decide a result, and how two configurations differ;
- ``folder``: the check that a folder's results belong to this job's configuration, the snapshot;
- ``lock``: one process per job folder;
- ``interrupt``: Ctrl-C, SIGTERM and the end of a launcher, reported with where the job stopped;
- ``multirun``: what each job of a multirun ended with, summarised by the launching process;
- ``sweep``: checks on a sweep before any of its jobs runs (duplicate jobs, misplaced search spaces).
"""
