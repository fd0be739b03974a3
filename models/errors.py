"""The models package's error hierarchy."""


class ModelError(Exception):
    """Root of every error raised by the models package."""


class InsufficientDataError(ModelError, ValueError):
    """Too few rows, vehicles or positive labels to fit or evaluate; says which."""
