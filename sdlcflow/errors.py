"""One root exception for everything sdlcflow raises, so callers can catch us apart from the rest."""


class SdlcflowError(Exception):
    """Base of every error sdlcflow raises on purpose.

    Its message says what went wrong and how to fix it.
    """
