"""User-facing errors: raised for bad input, printed as one paragraph without a traceback."""


class PoolStudyError(Exception):
    """A mistake in configuration or input data that the user can fix.

    The message must name the offending key or file and say what would be valid.
    """


class InvalidModelError(PoolStudyError):
    """A model/dataset combination that cannot run (e.g. a feature map shrinks below 1x1)."""


class DataError(PoolStudyError):
    """Missing, truncated or corrupted dataset files."""


class TrainingDivergedError(Exception):
    """The loss became NaN or infinite; the run is recorded as failed, not as a user error."""
