"""Per-job evaluation, run by the job on its trained model (its numbers go into metrics.json).

- ``evaluate``: loss and accuracy over a split;
- ``batchnorm``: re-estimating BatchNorm statistics with dropout off;
- ``invariance``: the shift-invariance probes;
- ``bn_shift``: the dropout -> BatchNorm variance shift per layer (``python -m poolstudy.bn_shift``).
"""
