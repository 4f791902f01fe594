"""What a shop says of a product besides its look: price, sale price, availability, brand, colour name and
product type, read from a feed or a catalogue manifest, kept as text in one form, and shown as a shop shows them.
"""

from __future__ import annotations

import re

SHOP_FIELDS = ("price", "sale_price", "availability", "brand", "colour_name", "product_type")
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "backorder")
AVAILABILITY_WORDS = {"in_stock": "in stock", "out_of_stock": "out of stock", "preorder": "pre-order",
                      "backorder": "back-order"}
CURRENCY_CODE = re.compile(r"\b[A-Z]{3}\b")
# Currencies written before the amount with a symbol; others as "129.00 SEK".
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "CAD": "CA$", "AUD": "A$"}


def normalise_price(text: str) -> str:
    """A Merchant price ("129.00 EUR", "EUR 129", "1.299,50 EUR") as "129.00 EUR"; "" when there is none or it
    cannot be read."""
    text = text.strip().upper()
    code = CURRENCY_CODE.search(text)
    number = re.search(r"\d[\d.,\s]*", text)
    if not code or not number:
        return ""
    digits = number.group().replace(" ", "").strip(".,")
    if "," in digits and ("." not in digits or digits.rfind(",") > digits.rfind(".")):
        digits = digits.replace(".", "").replace(",", ".")  # 1.299,50 -> 1299.50
    else:
        digits = digits.replace(",", "")
    try:
        return f"{float(digits):.2f} {code.group()}"
    except ValueError:
        return ""


def normalise_availability(text: str) -> str:
    """Merchant availability ("in_stock", "in stock", "Out of stock" ...) as one of ``AVAILABILITY``, or ""."""
    value = text.strip().lower().replace(" ", "_").replace("-", "_")
    return value if value in AVAILABILITY else ""


def price_amount(price: str) -> tuple[float, str] | None:
    """ "129.00 EUR" -> (129.0, "EUR"); None for no price."""
    if not price:
        return None
    amount, _, currency = price.partition(" ")
    return float(amount), currency


def format_price(price: str) -> str:
    """A stored price as a shopper reads it: "€129.00", "129.00 SEK"; "" for none."""
    parsed = price_amount(price)
    if parsed is None:
        return ""
    amount, currency = parsed
    return f"{SYMBOLS[currency]}{amount:,.2f}" if currency in SYMBOLS else f"{amount:,.2f} {currency}"


def price_text(price: str, sale_price: str) -> str:
    """The price a shopper pays, with the regular price beside a sale price: "€99.00 (was €129.00)"."""
    if sale_price:
        return f"{format_price(sale_price)} (was {format_price(price)})" if price else format_price(sale_price)
    return format_price(price)


def availability_text(availability: str) -> str:
    return AVAILABILITY_WORDS.get(availability, "")
