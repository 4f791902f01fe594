"""The one family of errors a person using the product can act on.

Every error raised for bad input, a missing or broken store, or a missing model
derives from ``SearchError``, and ``str(error)`` is the message to show. Each kind
knows its HTTP status (``http_status``), so the HTTP layer maps the family in one
place. The app and the CLI catch this family only: anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class SearchError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""

    # The service cannot answer as it is (no store, a damaged one, a missing model): the operator fixes it.
    http_status = 503


class InvalidRequestError(SearchError):
    """A request parameter of the wrong type or out of range (k, a category, a region number ...)."""

    http_status = 400


class TooLargeError(InvalidRequestError):
    """A request or an image bigger than the service accepts."""

    http_status = 413


class ServiceUnavailableError(SearchError):
    """The service cannot search right now (the index is loading or broken, or every slot is taken)."""

    http_status = 503


class TimedOutError(SearchError):
    """A search that took longer than a request may; it was answered, not waited for."""

    http_status = 503
