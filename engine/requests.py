"""What a caller may ask of a search, checked one way for the engine, the CLI, the page and the HTTP API."""

from __future__ import annotations

from engine.colours import RGB, parse_colour
from engine.errors import InvalidRequestError

# Bounds on a request's counts, so that a typo cannot ask for a million results.
MAX_RESULTS = 1000
MAX_REGIONS = 12
# How a photo is searched (``SearchEngine.search_scene_or_piece``): a scene by its pieces and a product shot whole
# (auto, as the page does it), always by its pieces (true), or always whole (false).
REGIONS = ("auto", "true", "false")


class UnknownCategoryError(InvalidRequestError):
    """The requested category is not in the index."""


def unknown_category(name: str, categories: list[str]) -> UnknownCategoryError:
    return UnknownCategoryError(f"unknown category {name!r}; choose auto, all or one of: {', '.join(categories)}")


def check_count(name: str, value: object, limit: int) -> None:
    """``InvalidRequestError`` unless ``value`` is a whole number from 1 to ``limit``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidRequestError(f"{name} must be a whole number from 1 to {limit}, got {value!r}")


def parse_count(name: str, value: object, limit: int) -> int:
    """A count sent by a form or an API caller (a whole number, a float such as 8.0, or digits as text) as an int;
    ``InvalidRequestError`` for anything else or out of 1 to ``limit``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    check_count(name, value, limit)
    return value


def parse_regions(value: str) -> str:
    """``value`` as one of ``REGIONS`` (any case); ``InvalidRequestError`` for anything else."""
    if isinstance(value, str) and value.lower() in REGIONS:
        return value.lower()
    raise InvalidRequestError(f"regions must be auto, true or false, got {value!r}")


def check_colour(colour: str | None) -> RGB | None:
    """The colour asked for as RGB (None when none is); ``InvalidRequestError`` for one not understood."""
    return parse_colour(colour) if colour else None
