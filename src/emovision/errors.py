"""User-facing errors: the command line prints their message and exits non-zero, no traceback."""


class EmovisionError(Exception):
    """Base class of every error caused by user input (files, options, data)."""


def check_options(checks: list[tuple[bool, str]]) -> None:
    """Raise :class:`EmovisionError` with the message of the first ``(ok, message)`` that is not ok."""
    for ok, message in checks:
        if not ok:
            raise EmovisionError(message)


class AudioError(EmovisionError):
    """An audio file or buffer that cannot be used, with the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class TooLongError(AudioError):
    """A recording over a duration limit (the server answers it with 413)."""

    def __init__(self, source: str, seconds: float, limit: float) -> None:
        super().__init__(source, f"too long ({seconds:.1f} s, at most {limit:g} s)")


class CorpusError(EmovisionError):
    """A corpus root, label file or class selection that cannot be used."""


class FeatureFileError(EmovisionError):
    """A features file that is missing, of another format, or incomplete."""


class CheckpointError(EmovisionError):
    """A model checkpoint that is missing, of another format, or unsafe to load."""
