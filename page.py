"""What the page shows, made from the engine's answers: the summary's sentences, the results' captions, the
pictures drawn for the shopper (the furniture found, the crop, why a result matched) and the credits.

Plain functions of engine records and PIL images; ``app.py`` wires them to Gradio.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.catalogue import CatalogueError, CatalogueImage, scan_catalogue
from engine.colours import NAMED_COLOURS, rgb_to_hex
from engine.explain import MatchExplanation, heat_overlay
from engine.responses import SearchResponse, SearchResult
from engine.settings import DEFAULT_SETTINGS
from engine.shop_fields import availability_text, format_price, price_amount, price_text

WEB = Path(__file__).resolve().parent / "web"
# Photos sent back to the page are at most this size: the boxes and the crop are drawn on such a copy.
DISPLAY_SIDE = 1024
# Height of each half of the "why this match" picture.
WHY_HEIGHT = 240
# Colours of the boxes drawn, in the order of the pieces found (best first).
BOX_COLOURS = ((200, 40, 40), (30, 130, 60), (40, 90, 210), (190, 110, 0), (140, 50, 180), (0, 130, 150))
CROP_COLOUR = (255, 200, 0)
WHOLE_PHOTO = "Whole photo"
ANY_COLOUR = "Any colour"

# While a search runs the page says so in one still line (a live region, read out by screen readers) and dims what
# it will replace. Gradio's own progress drew a timer, a spinner and a sweeping bar on every output, each redrawn
# every frame, on the cores the search needs too (benchmarks/README.md, "Session 17"). SEARCH_STARTS runs
# in the browser as a search is asked for (its inputs passed on as they are), SEARCH_ENDS once its answer or error is
# in; a count, since a search can be asked for while another runs.
SEARCHING = "Searching…"
SEARCH_STARTS = """(...inputs) => {
  const searches = Number(document.body.dataset.searches || 0) + 1;
  document.body.dataset.searches = String(searches);
  document.body.classList.add("searching");
  const note = document.querySelector("#searching [role=status]");
  if (note) note.textContent = "%s";
  return inputs;
}""" % SEARCHING
SEARCH_ENDS = """() => {
  const searches = Math.max(0, Number(document.body.dataset.searches || 0) - 1);
  document.body.dataset.searches = String(searches);
  if (searches) return;
  document.body.classList.remove("searching");
  const note = document.querySelector("#searching [role=status]");
  if (note) note.textContent = "";
}"""
SEARCHING_NOTE = '<p role="status"></p>'

HOW_IT_WORKS = """
**How it works.** Your photo is decoded (phone orientation applied, HEIC supported) and
shrunk to the network's input size. An ImageNet-pretrained EfficientNet-Lite turns it into
a 1280-number description of its look. A small classifier trained on the catalogue guesses
the kind of furniture; then the catalogue photos that look most alike are found with a
cosine vector index (usearch), in that kind first, and in the next one too when the guess is unsure.
Several photos of one product count once, by its best photo. The percentage under each product is
how alike the two look to the search (its cosine similarity), not a guarantee that they are the same.

Pick a result to search for more like it; the page then also shows why it matched your photo:
the parts of each picture that look most like the other picture as a whole are painted warm.

**Same look, other colour.** Each catalogue image's product colours are found when the catalogue is
indexed. The chips above the results are the colours among them; picking one ranks the 50 products
nearest in look by their look plus how much of each is that colour.

**Several pieces in one photo.** A small detector trained on real photos (COCO) boxes the
chairs, sofas, beds and tables; the search also searches the largest of them on their own.
The pieces found are drawn on a copy of your photo; pick one to search it alone. A product photo on a
plain backdrop (a studio shot) is searched whole. **Crop by hand** searches
exactly the part of the photo you mark with two taps.
"""


ANY_BRAND = "Any brand"
ANY_PRICE = "Any price"
# Price caps a shopper picks from, those between the catalogue's cheapest and dearest products offered.
PRICE_CAPS = (25, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class ShopFilters:
    """The filters a catalogue's shop fields allow: price caps (in its currency), in stock only, a brand."""

    currency: str = ""  # the most common price currency ("" when no product has a price)
    caps: tuple[int, ...] = ()
    stock: bool = False  # whether any product says whether it is in stock
    brands: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.caps or self.stock or self.brands)


def shop_filters(images: list[CatalogueImage]) -> ShopFilters:
    paid = [amount for image in images if (amount := price_amount(image.sale_price or image.price))]
    currency = Counter(code for _, code in paid).most_common(1)[0][0] if paid else ""
    amounts = [value for value, code in paid if code == currency]
    caps = tuple(cap for cap in PRICE_CAPS if amounts and min(amounts) < cap < max(amounts))
    return ShopFilters(currency, caps, any(image.availability for image in images),
                       tuple(sorted({image.brand for image in images if image.brand}, key=str.lower)))


def price_choices(filters: ShopFilters) -> list[tuple[str, int]]:
    """The price menu: "Any price", then "Under €100" and so on (value: the cap, 0 for none)."""
    return [(ANY_PRICE, 0), *((f"Under {format_price(f'{cap}.00 {filters.currency}').removesuffix('.00')}", cap)
                              for cap in filters.caps)]


def filter_where(max_price: float | None, in_stock: bool, brand: str | None, currency: str = "") -> str:
    """The filter the page's controls ask for, as the engine takes it ("" for none)."""
    conditions = []
    if isinstance(max_price, (int, float)) and not isinstance(max_price, bool) and max_price > 0:
        conditions.append(f"price<{max_price:g}" + (f" {currency}" if currency else ""))
    if in_stock:
        conditions.append("availability=in_stock")
    if brand and brand != ANY_BRAND:
        conditions.append(f"brand={brand}")
    return "; ".join(conditions)


def category_choices(categories: list[str]) -> list[tuple[str, str]]:
    """The category menu: what a shopper reads, and the value the engine takes."""
    return [("Guess from the photo", "auto"), ("Every category", "all"), *((f"Only {c}", c) for c in categories)]


def summary(response: SearchResponse, mode: str = "auto", what: str = "your photo") -> str:
    """One sentence per fact: what the search took ``what`` for, what it searched (``mode``: the category menu's
    value), whether anything is alike, and how a colour reordered the results."""
    ranked = sorted(response.probabilities, key=response.probabilities.get, reverse=True)
    first = response.probabilities[response.category]
    lines = [f"**Results for {what}.** It looks like a **{response.category}** ({first:.0%} sure)."]
    if mode == "all":
        lines.append("Every category was searched, as asked.")
    elif mode != "auto":
        lines.append(f"Only {mode} products were searched, as asked.")
    elif len(ranked) > 1 and first < DEFAULT_SETTINGS.unsure_probability:
        lines.append(f"It could also be a {ranked[1]} ({response.probabilities[ranked[1]]:.0%}), "
                     "so both were searched.")
    if not response.close_match:
        lines.append("**No close match in this catalogue.** These are the nearest products, but they do not look alike.")
    scores = [result.score for result in response.results]
    if not response.colour and any(later > earlier + 0.005 for earlier, later in zip(scores, scores[1:])):
        lines.append("Products of the likelier kind come first, so a closer look of another kind may come later.")
    if response.colour:
        lines.append(f"Refined by colour: ranked by look and by how much of each product is {response.colour}, "
                     f"so the same look in {response.colour} comes first.")
    if response.where:  # said first: it explains why fewer or other products show
        lines[0] += f" Only products that meet your filters ({response.where})."
        lines += [f"{note[0].upper()}{note[1:]}." for note in response.notes if note.startswith("only ")]
    return "\n\n".join(lines)


def caption(result: SearchResult, colour: str = "") -> str:
    """A result's caption: the product, its price and stock where the shop gives them, and how alike it looks,
    in words a shopper reads (and, refined by a colour, how much of it is that colour, which is why it may rank
    above a closer look)."""
    shop = [price_text(result.price, result.sale_price), availability_text(result.availability)]
    text = " · ".join([result.name, *filter(None, shop), f"{result.score:.0%} alike"])
    if colour:
        text += f" · {result.colour_match:.0%} {colour}"
    return text


def region_label(number: int, category: str) -> str:
    """A piece's name on the page: "bed", "chair 2" (numbered when several share a category)."""
    return category if number == 1 else f"{category} {number}"


def region_labels(categories: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for category in categories:
        seen[category] = seen.get(category, 0) + 1
        labels.append(region_label(seen[category], category))
    return labels


def _font(image: Image.Image) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(12, round(max(image.size) / 40)))


def marked_photo(photo: Image.Image, boxes: list[tuple[int, int, int, int]], labels: list[str]) -> Image.Image:
    """The photo with each piece's box and name drawn on it."""
    marked = photo.copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, round(max(marked.size) / 250))
    font = _font(marked)
    for i, (box, label) in reversed(list(enumerate(zip(boxes, labels)))):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        draw.rectangle(box, outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((box[0] + width, box[1] + width), label, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=colour)
        draw.text((box[0] + width, box[1] + width), label, fill="white", font=font)
    return marked


def crop_box(points: list[list[int]]) -> tuple[int, int, int, int] | None:
    """The box between two tapped corners (in any order), or None before the second tap."""
    if len(points) < 2:
        return None
    (x0, y0), (x1, y1) = points[:2]
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def crop_preview(photo: Image.Image, points: list[list[int]]) -> Image.Image:
    """The photo with the corners tapped so far, and the box between them once there are two; outside the box
    is dimmed, so the part that will be searched stands out."""
    shown = photo.copy()
    draw = ImageDraw.Draw(shown)
    radius = max(4, round(max(shown.size) / 120))
    box = crop_box(points)
    if box is not None:
        dimmed = Image.new("RGB", shown.size, (0, 0, 0))
        mask = Image.new("L", shown.size, 110)
        ImageDraw.Draw(mask).rectangle(box, fill=0)
        shown = Image.composite(dimmed, shown, mask)
        draw = ImageDraw.Draw(shown)
        draw.rectangle(box, outline=CROP_COLOUR, width=max(2, radius // 2))
    for x, y in points[:2]:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=CROP_COLOUR, outline="black")
    return shown


def why_picture(explanation: MatchExplanation) -> Image.Image:
    """The photo and the product side by side, each with the parts that look like the other painted warm."""
    halves = []
    for image, heat in ((explanation.photo, explanation.photo_heat), (explanation.product, explanation.product_heat)):
        shown = image.copy()
        shown.thumbnail((WHY_HEIGHT * 2, WHY_HEIGHT))
        halves.append(heat_overlay(shown, heat))
    gap = 8
    picture = Image.new("RGB", (halves[0].width + gap + halves[1].width, WHY_HEIGHT), "white")
    picture.paste(halves[0], (0, (WHY_HEIGHT - halves[0].height) // 2))
    picture.paste(halves[1], (halves[0].width + gap, (WHY_HEIGHT - halves[1].height) // 2))
    return picture


def product_details(item, explained: bool) -> str:
    """The picked product: its name and category, a link to its page and its credits where the manifest has
    them; what the "why" picture below shows when there is one."""
    parts = [f"**{item.name}** ({item.category})"]
    parts += filter(None, [price_text(item.price, item.sale_price), availability_text(item.availability), item.brand])
    if item.url.startswith(("https://", "http://")):
        parts.append(f"[{'view in shop' if item.price or item.availability else 'product page'} ↗]({item.url})")
    if item.source_url.startswith(("https://", "http://")):
        parts.append(f"[image source ↗]({item.source_url})")
    credit = " · ".join(value for value in (f"by {item.creator}" if item.creator else "", item.license) if value)
    if credit:
        parts.append(credit)
    lines = ["Picked: " + " · ".join(parts) + ". The results are now more like it."]
    if explained:
        lines.append("**Why it matched your photo:** the warm parts of each picture look most like the other "
                     "picture to the search (a similarity, not a guarantee).")
    return "\n\n".join(lines)


def credits_markdown(catalogue: Path, feed: str = "") -> str:
    """Attribution for the catalogue images, as their licences require (a shop's feed: the shop's own)."""
    if feed:
        return f"Product images, names, prices and stock are the shop's, from its product feed ({feed})."
    try:
        images = scan_catalogue(catalogue).images
    except CatalogueError as error:
        return f"The catalogue cannot be listed: {error}"
    products = {image.product_id: image for image in images}
    lines = [f"Product images of {len(products)} products:"]
    lines += [f"- {image.name} — by {image.creator or 'unknown'}, {image.license or 'licence not stated'}"
              for image in products.values()]
    return "\n".join(lines)


def page_css() -> str:
    """The page's style sheet (``web/page.css``) with each colour chip's swatch: the name's reference colour."""
    swatches = "".join(f'#colour-chips label:has(input[value="{name}"]) {{ --chip: {rgb_to_hex(rgb)}; }}\n'
                       for name, rgb in NAMED_COLOURS.items())
    return (WEB / "page.css").read_text(encoding="utf-8") + swatches


def page_js() -> str:
    """What runs in the shopper's browser: alt text and labels for the pictures Gradio draws without them."""
    return (WEB / "page.js").read_text(encoding="utf-8")


def page_head() -> str:
    """What the page's head runs before Gradio draws the page: a phone's large photo shrunk before it is sent."""
    return "<script>\n" + (WEB / "shrink.js").read_text(encoding="utf-8") + "</script>\n"
