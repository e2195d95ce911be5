"""Where the Hydra callbacks lived before poolstudy 0.2: kept so that committed snapshots naming
``poolstudy.hydra_callbacks.<Callback>`` (``hydra.callbacks`` in their ``.hydra/hydra.yaml``) still compose.
The callbacks are in :mod:`poolstudy.jobs.callbacks`."""

from poolstudy.jobs.callbacks import (ConfigEnvCheck, MultirunOutcomes, OutputFolderCheck,  # noqa: F401
                                      SweepCheck)
