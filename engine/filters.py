"""Filters on what a shop says of its products, applied inside the vector search (``SearchEngine``).

A filter is one or more conditions, ``FIELD OP VALUE``, separated by ``;`` (the CLI's ``--where`` may also be
given several times), all of which a product must meet::

    price<300                      the price paid (the sale price where there is one), in the price's currency
    price>=100 EUR                 ... and in euros
    availability=in_stock          in_stock, out_of_stock, preorder or backorder
    availability=in_stock|preorder one of several values
    brand=Nordhem                  any text field, case-insensitive: name, brand, colour_name, product_type,
    colour_name!=black             category, product_id (the feed's title, color and id work too)

``=`` and ``!=`` compare text; ``<``, ``<=``, ``>``, ``>=`` compare prices. A product without the field fails the
condition (no price is under 300).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engine.catalogue import CatalogueImage
from engine.errors import InvalidRequestError
from engine.shop_fields import normalise_price, price_amount

TEXT_FIELDS = ("name", "brand", "colour_name", "product_type", "category", "product_id", "availability")
# The feed's names for the same fields.
ALIASES = {"title": "name", "color": "colour_name", "colour": "colour_name", "id": "product_id",
           "stock": "availability"}
CONDITION = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$")
NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    values: tuple[str, ...]  # text values, lower-cased (any of them); or one price
    amount: float = 0.0  # for a price comparison
    currency: str = ""  # the price's currency, when the condition names one


def parse_where(where: str | list[str] | None) -> tuple[Condition, ...]:
    """The conditions of a filter (text with ``;`` between conditions, or a list of them); ``InvalidRequestError``
    naming the condition that cannot be read and how to write it."""
    if where is None:
        return ()
    parts = [where] if isinstance(where, str) else where
    if not isinstance(parts, (list, tuple)) or not all(isinstance(part, str) for part in parts):
        raise InvalidRequestError(f"a filter is text such as 'price<300; availability=in_stock', not {where!r}")
    texts = [text for part in parts for text in str(part).split(";") if text.strip()]
    return tuple(_condition(text) for text in texts)


def _condition(text: str) -> Condition:
    match = CONDITION.match(text)
    if not match or not match.group(3):
        raise InvalidRequestError(f"cannot read the filter {text.strip()!r}; write FIELD=VALUE or price<AMOUNT, "
                                  "e.g. availability=in_stock; price<300")
    name, operator, value = match.group(1).lower(), match.group(2), match.group(3)
    name = ALIASES.get(name, name)
    if name == "price" or name == "sale_price":
        return _price_condition(text, operator, value)
    if name not in TEXT_FIELDS:
        raise InvalidRequestError(f"cannot filter on {name!r}; filter on price or one of: {', '.join(TEXT_FIELDS)}")
    if operator not in ("=", "!="):
        raise InvalidRequestError(f"{name} is text: use = or != (e.g. {name}={value}); <, > are for price")
    return Condition(name, operator, tuple(v.strip().lower() for v in value.split("|")))


def _price_condition(text: str, operator: str, value: str) -> Condition:
    if operator in ("=", "!="):
        raise InvalidRequestError(f"compare prices with <, <=, > or >= (e.g. price<300), not {operator}")
    if NUMBER.match(value):
        return Condition("price", operator, (), float(value))
    parsed = price_amount(normalise_price(value))
    if parsed is None:
        raise InvalidRequestError(f"cannot read the price in {text.strip()!r}; write e.g. price<300 or price<300 EUR")
    return Condition("price", operator, (), *parsed)


class ProductTable:
    """The stored images' shop fields as columns, to test filters on every image at once."""

    def __init__(self, images: list[CatalogueImage]):
        paid = [price_amount(image.sale_price or image.price) for image in images]
        self.amounts = np.array([p[0] if p else np.nan for p in paid], dtype=np.float64)
        self.currencies = np.array([p[1] if p else "" for p in paid])
        self.text = {name: np.array([getattr(image, name).lower() for image in images]) for name in TEXT_FIELDS}
        self._cache: dict[tuple[Condition, ...], np.ndarray] = {}

    def allowed(self, conditions: tuple[Condition, ...]) -> np.ndarray | None:
        """Which images meet every condition (a boolean per row); None for no conditions."""
        if not conditions:
            return None
        if conditions not in self._cache:
            if len(self._cache) > 64:  # filters a page offers repeat; any other is cheap to recompute
                self._cache.clear()
            mask = np.ones(len(self.amounts), dtype=bool)
            for condition in conditions:
                mask &= self._meets(condition)
            self._cache[conditions] = mask
        return self._cache[conditions]

    def _meets(self, condition: Condition) -> np.ndarray:
        if condition.field == "price":
            with np.errstate(invalid="ignore"):
                compare = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
                mask = compare[condition.operator](self.amounts, condition.amount)
            if condition.currency:
                mask &= self.currencies == condition.currency
            return mask
        mask = np.isin(self.text[condition.field], condition.values)
        return ~mask if condition.operator == "!=" else mask


def where_text(conditions: tuple[Condition, ...]) -> str:
    """Conditions written back as a filter, for what a response says it was filtered by."""
    parts = []
    for c in conditions:
        if c.field == "price":
            parts.append(f"price{c.operator}{c.amount:g}" + (f" {c.currency}" if c.currency else ""))
        else:
            parts.append(f"{c.field}{c.operator}{'|'.join(c.values)}")
    return "; ".join(parts)
