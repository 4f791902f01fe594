"""The one family of errors a person using the product can act on.

Every error raised for bad input, a missing or broken store, or a missing model
derives from ``SearchError``, and ``str(error)`` is the message to show. The app
and the CLI catch this family only: anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SearchError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class InvalidRequestError(SearchError):
    """A request parameter of the wrong type or out of range (k, a category, a region number ...)."""
