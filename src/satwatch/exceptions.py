"""The one root of satwatch's errors.

Every error satwatch raises on purpose derives from :class:`SatwatchError`, so the CLI can
print one clear line for it instead of a traceback.
"""


class SatwatchError(Exception):
    """Root of every satwatch error."""


class DataError(SatwatchError):
    """Telemetry or labels are missing, malformed or inconsistent."""


class ModelError(SatwatchError):
    """A detector, checkpoint or exported model file is missing or unusable."""


class RepositoryError(SatwatchError):
    """The Triton model repository or one of its configs is invalid."""


class ServerError(SatwatchError):
    """The Triton server could not start, stop or answer."""


class ClientError(SatwatchError):
    """A request to the server failed; the message names model, tensor and problem."""
