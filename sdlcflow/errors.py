"""One root exception for all sdlcflow raises, so callers can tell our errors from the rest."""


class SdlcflowError(Exception):
    """Base of every error sdlcflow raises on purpose.

    Its message says what went wrong and how to fix it.
    """
