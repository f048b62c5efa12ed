"""Errors Pixglot expects and reports to users as one clear line (the CLI prints them, the UI shows them)."""


class PixglotError(Exception):
    """Base of all user-facing errors. The message names the file or value and the reason."""


class InputError(PixglotError, ValueError):
    """A value given by the user (text, option, config) cannot be used."""


class FileFormatError(PixglotError):
    """A file exists but cannot be read as what it should be (image, checkpoint, captions...)."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PixglotWarning(UserWarning):
    """Something works, but its results may not be what the user expects (the CLI prints one line)."""
