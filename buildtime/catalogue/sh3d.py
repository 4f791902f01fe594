"""Sweet Home 3D furniture libraries from Debian: fetch, read, map categories.

The packages are fetched with ``apt-get download`` and unpacked with
``dpkg -x`` into a cache directory, so nothing (no Java) gets installed:

* ``sweethome3d-furniture``: five ``.sh3f`` libraries (zip archives holding a
  ``PluginFurnitureCatalog.properties`` and one folder of OBJ + MTL +
  textures per model);
* ``sweethome3d``: only its jar is read, for the ~100 default models under
  ``com/eteks/sweethome3d/io/`` (``DefaultFurnitureCatalog.properties``).

A catalogue entry's keys are suffixed with ``#N`` (``id#1``, ``name#1``,
``category#1``, ``creator#1``, ``model#1``, ``modelRotation#1``, ``width#1`` …);
the licence is per library (the header key ``license``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("sweethome3d-furniture", "sweethome3d")

_DEFAULT_JAR = "usr/share/sweethome3d/sweethome3d.jar"
_DEFAULT_PROPERTIES = "com/eteks/sweethome3d/io/DefaultFurnitureCatalog.properties"
_PLUGIN_DIR = "usr/share/sweethome3d/furniture"
_PLUGIN_PROPERTIES = "PluginFurnitureCatalog.properties"

#: Short, stable codes used in product ids, per library file stem.
LIBRARY_CODES = {
    "BlendSwap-CC-0": "bs0",
    "BlendSwap-CC-BY": "bsby",
    "KatorLegaz": "kl",
    "Reallusion": "rl",
    "Scopia": "sc",
    "Default": "def",
}

#: The libraries' free-text ``license`` headers, shortened to the licence names.
LICENSES = {
    "BlendSwap-CC-0": "CC0 (public domain)",
    "BlendSwap-CC-BY": "CC-BY 3.0",
    "KatorLegaz": "CC-BY 3.0 US",
    "Reallusion": "CC-BY 3.0 US",
    "Scopia": "CC-BY 3.0",
    "Default": "GNU GPL / CC-BY 3.0",
}

#: Where each library's models come from, as the libraries state it: the Blend Swap ones' header comment
#: ("available from http://www.blendswap.com"), the others' ``provider`` key (www.sweethome3d.com). No
#: library gives a page per model.
SOURCE_URLS = {
    "BlendSwap-CC-0": "http://www.blendswap.com",
    "BlendSwap-CC-BY": "http://www.blendswap.com",
    "KatorLegaz": "https://www.sweethome3d.com",
    "Reallusion": "https://www.sweethome3d.com",
    "Scopia": "https://www.sweethome3d.com",
    "Default": "https://www.sweethome3d.com",
}

CATEGORIES = ("chair", "lamp", "table", "bed", "sofa")


@dataclass(frozen=True)
class Entry:
    """One piece of furniture of a Sweet Home 3D catalogue."""

    library: str          # library file stem, e.g. "Scopia" or "Default"
    archive: Path         # the .sh3f (or the jar) holding the model
    id: str               # catalogue id, e.g. "Scopia#armchair"
    name: str
    category: str         # Sweet Home 3D category, e.g. "Living room"
    creator: str
    model: str            # path of the OBJ inside the archive (no leading /)
    rotation: tuple[float, ...] | None
    size_cm: tuple[float, float, float]  # width, depth, height
    license: str
    package: str          # e.g. "sweethome3d-furniture 1.8-1"


# --------------------------------------------------------------------------
# Fetching


def fetch_packages(cache: Path) -> dict[str, Path]:
    """Download and unpack the Debian packages into ``cache``.

    Already downloaded ``.deb`` files are reused. Returns, per package, the
    directory it was unpacked to (the ``dpkg -x`` root).
    """
    cache.mkdir(parents=True, exist_ok=True)
    roots = {}
    for package in PACKAGES:
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
            debs = sorted(cache.glob(f"{package}_*.deb"))
        root = cache / f"root-{package}"
        if not root.exists():
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["dpkg", "-x", str(debs[-1]), str(tmp)], check=True)
            tmp.rename(root)
        roots[package] = root
    return roots


def package_version(cache: Path, package: str) -> str:
    """Version of a downloaded package, read from its .deb file name."""
    deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
    return deb.name.split("_")[1]


# --------------------------------------------------------------------------
# Reading catalogues


def parse_properties(text: str) -> dict[str, str]:
    """Parse a Java ``.properties`` text (line continuations, ``\\uXXXX``)."""
    out: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        # An odd number of trailing backslashes continues the line.
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        match = re.match(r"((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)", line)
        if match:
            key, value = match.groups()
            out[key] = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return out


def read_entries(roots: dict[str, Path], cache: Path) -> list[Entry]:
    """All catalogue entries of the furniture libraries and the default catalogue."""
    entries: list[Entry] = []
    furniture_version = package_version(cache, "sweethome3d-furniture")
    for sh3f in sorted((roots["sweethome3d-furniture"] / _PLUGIN_DIR).glob("*.sh3f")):
        with zipfile.ZipFile(sh3f) as archive:
            text = archive.read(_PLUGIN_PROPERTIES).decode("latin-1")
        entries += _entries(parse_properties(text), sh3f.stem, sh3f, f"sweethome3d-furniture {furniture_version}")
    jar = roots["sweethome3d"] / _DEFAULT_JAR
    with zipfile.ZipFile(jar) as archive:
        text = archive.read(_DEFAULT_PROPERTIES).decode("latin-1")
    entries += _entries(parse_properties(text), "Default", jar, f"sweethome3d {package_version(cache, 'sweethome3d')}")
    return entries


def _entries(props: dict[str, str], library: str, archive: Path, package: str) -> list[Entry]:
    entries = []
    n = 1
    while f"id#{n}" in props:
        rotation = props.get(f"modelRotation#{n}")
        entries.append(
            Entry(
                library=library,
                archive=archive,
                id=props[f"id#{n}"],
                name=props.get(f"name#{n}", "").strip(),
                category=props.get(f"category#{n}", "").strip(),
                creator=props.get(f"creator#{n}", "").strip(),
                model=props[f"model#{n}"].lstrip("/"),
                rotation=tuple(float(v) for v in rotation.split()) if rotation else None,
                size_cm=(float(props[f"width#{n}"]), float(props[f"depth#{n}"]), float(props[f"height#{n}"])),
                license=LICENSES[library],
                package=package,
            )
        )
        n += 1
    return entries


def extract_model(entry: Entry, cache: Path) -> Path:
    """Extract the model's folder (OBJ, MTL, textures) and return the OBJ path.

    Sweet Home 3D keeps one folder per model in ``.sh3f`` files; the default
    models share one folder, which is then extracted once for all of them.
    """
    folder = entry.model.rsplit("/", 1)[0] + "/"
    dest = cache / "models" / entry.library
    obj = dest / entry.model
    if not obj.exists():
        with zipfile.ZipFile(entry.archive) as archive:
            members = [m for m in archive.namelist() if m.startswith(folder) and not m.endswith("/")]
            if entry.library == "Default":
                # The jar's resource folder also holds class-loader clutter; keep models.
                members = [m for m in members if m.lower().endswith((".obj", ".mtl", ".png", ".jpg", ".jpeg", ".gif", ".bmp"))]
            for member in members:
                target = dest / member
                if not target.exists():
                    archive.extract(member, dest)
    return obj


# --------------------------------------------------------------------------
# Category mapping

#: Sweet Home 3D categories that never hold furniture of ours.
_SKIPPED_CATEGORIES = {"Doors and windows", "Characters", "Vehicles", "Staircases"}

#: Name fragments that rule an item out although a keyword below matches.
_EXCLUDED_NAMES = (
    # not furniture, or games/appliances named after furniture
    "wheelchair", "pool table", "football table", "table tennis", "table fan",
    "light source", "flashlight", "candle", "piano", "hammock", "air mattress",
    "sleeping bag", "hospital",
    # outdoor and technical lights, not lamps a shop sells for a room
    "street", "lamppost", "park light", "porch", "outdoor", "fluorescent",
    "track light", "artwork", "camping",
    # loungers: neither a chair nor a bed to a shopper
    "deck chair", "beach chair", "relax chair",
    # storage-like or ambiguous between our categories
    "bedside", "changing table", "dressing table", "opened convertible",
)

_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Order matters: "desk lamp" is a lamp, "desk chair" a chair, "futon couch" a sofa.
    ("lamp", ("lamp", "light", "uplight", "spotlight", "lantern", "chandelier")),
    ("sofa", ("sofa", "couch", "settee")),
    ("chair", ("chair", "stool", "seat")),
    ("bed", ("bed", "crib", "futon")),
    ("table", ("table", "desk")),
)


def map_category(category: str, name: str) -> str | None:
    """Map a Sweet Home 3D (category, name) to one of :data:`CATEGORIES`.

    Rules, in order:

    1. Items of the categories doors/windows, characters, vehicles and
       staircases are never furniture of ours.
    2. Names containing an excluded fragment (games, appliances, outdoor and
       technical lights, loungers, bedside tables, …) are left out.
    3. Lamps must also be in the "Lights" category (a "Stone lantern" is
       garden decoration).
    4. Otherwise the first keyword group found in the name wins: lamp, sofa
       (couch, settee), chair (armchairs and stools included), bed (cribs,
       futons), table (desks, coffee and side tables).

    Keywords are matched as whole words, plural allowed (so "Tablet" is no
    table), and "chair" also inside "Armchair".
    """
    if category in _SKIPPED_CATEGORIES:
        return None
    lowered = name.lower()
    if any(fragment in lowered for fragment in _EXCLUDED_NAMES):
        return None
    for target, keywords in _KEYWORDS:
        if any(re.search(rf"(?:\b|(?<=arm)){re.escape(k)}s?\b", lowered) for k in keywords):
            if target == "lamp" and category != "Lights":
                return None
            return target
    return None


#: Catalogue ids whose mapping by rule is wrong (found on the contact sheets).
EXCLUDE_IDS: frozenset[str] = frozenset({
    "Blend Swap CC-0#foldingChair",  # modelled folded flat: an X of tubes, no seat
})

#: Catalogue ids that the rules miss, with their category.
INCLUDE_IDS: dict[str, str] = {}


def product_category(entry: Entry) -> str | None:
    """The gallery category of an entry: the rules plus the reviewed overrides."""
    if entry.id in EXCLUDE_IDS:
        return None
    if entry.id in INCLUDE_IDS:
        return INCLUDE_IDS[entry.id]
    return map_category(entry.category, entry.name)
