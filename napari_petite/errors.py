"""User-facing errors.

Anything a user can cause (a bad file, a wrong option, a mismatched adapter) raises a
``PetiteError`` subclass whose message says what was wrong and what to do. The CLI prints it
and exits with code 2; the napari docks show it as a notification. Anything else is a bug.
"""


class PetiteError(Exception):
    """An error the user can fix; ``str(err)`` is the whole explanation."""


class InputError(PetiteError):
    """A file or array given by the user cannot be used as it is."""


class DatasetError(PetiteError):
    """A dataset folder does not follow the dataset layout the README describes."""


class CheckpointError(PetiteError):
    """A model or adapter file is missing, corrupted or belongs to another base."""


class ConfigError(PetiteError):
    """An option or combination of options is not valid."""


class OutputError(PetiteError):
    """Results cannot be written where the user asked (exists, input file, not writable)."""


class NetworkError(PetiteError):
    """A PACS cannot be reached, refuses us, or fails a request."""


class PetiteWarning(UserWarning):
    """Something the user should know that did not stop the work (a skipped subject, a
    cleaned-up leftover of an interrupted run); the CLI prints it, napari shows it."""
