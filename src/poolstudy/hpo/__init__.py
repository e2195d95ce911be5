"""Fair hyper-parameter search: one Optuna study per grid cell, equal budgets, pruning, resume."""
