"""Furniture models as the renderer takes them: an OBJ (with its MTL and textures) loaded Y-up, standing on the
floor and centred (``load_model``), and a copy with its dominant materials tinted (``recolor``).

Conventions (those of Sweet Home 3D models): +Y is up and the front of a piece of furniture faces +Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import trimesh
from PIL import Image, ImageOps

RGB = tuple[int, int, int]


def load_model(
    path: str | Path,
    rotation: Sequence[float] | None = None,
    size_cm: tuple[float, float, float] | None = None,
) -> trimesh.Scene:
    """Load an OBJ model (with its MTL materials and textures) as a Y-up scene.

    Args:
        path: the ``.obj`` file; its MTL and textures are resolved next to it.
        rotation: optional 3x3 row-major matrix (9 numbers), Sweet Home 3D's
            ``modelRotation``, that turns the model into Y-up / front +Z.
        size_cm: optional (width, depth, height) in cm; the model is scaled
            (non-uniformly, as Sweet Home 3D does) to that size in metres.

    Returns:
        A scene standing on y = 0, centred on x = z = 0.
    """
    scene = trimesh.load(str(path), force="scene")
    # Bake node transforms so that every geometry is in model coordinates.
    geometries = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    for geom in geometries:
        # Stray vertices would otherwise count in the bounds and the framing.
        geom.remove_unreferenced_vertices()
    scene = trimesh.Scene(geometries)
    if rotation is not None:
        m = np.eye(4)
        m[:3, :3] = np.asarray(rotation, dtype=float).reshape(3, 3)
        scene.apply_transform(m)
    lo, hi = scene.bounds
    shift = np.eye(4)
    shift[:3, 3] = [-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2]
    scene.apply_transform(shift)
    if size_cm is not None:
        extent = np.maximum(hi - lo, 1e-9)
        width, depth, height = size_cm
        scale = np.diag([width / 100 / extent[0], height / 100 / extent[1], depth / 100 / extent[2], 1.0])
        scene.apply_transform(scale)
    return scene


def _material_area(scene: trimesh.Scene) -> dict[str, float]:
    """Total surface area per material name."""
    areas: dict[str, float] = {}
    for geom in scene.geometry.values():
        name = _material_name(geom)
        areas[name] = areas.get(name, 0.0) + float(geom.area)
    return areas


def _material_name(geom: trimesh.Trimesh) -> str:
    material = getattr(geom.visual, "material", None)
    return getattr(material, "name", None) or "default"


def recolor(scene: trimesh.Scene, rgb: RGB, share: float = 0.5) -> trimesh.Scene:
    """Copy ``scene`` and tint its dominant materials with ``rgb``.

    Materials are taken from the largest surface area down until they cover
    ``share`` of the model; textures keep their pattern (converted to
    grey and multiplied by the colour) so that fabric and wood still read.
    """
    out = scene.copy()
    areas = sorted(_material_area(out).items(), key=lambda kv: -kv[1])
    total = sum(a for _, a in areas) or 1.0
    chosen, covered = set(), 0.0
    for name, area in areas:
        chosen.add(name)
        covered += area
        if covered / total >= share:
            break
    tint = np.array(rgb, dtype=float) / 255.0
    for geom in out.geometry.values():
        if _material_name(geom) not in chosen:
            continue
        material = getattr(geom.visual, "material", None)
        if material is None:
            geom.visual = trimesh.visual.ColorVisuals(geom, face_colors=[*rgb, 255])
            continue
        material = material.copy()
        image = getattr(material, "image", None)
        if image is not None:
            grey = ImageOps.autocontrast(image.convert("L"), cutoff=1)
            # Lift the grey so that the tint, not the texture's darkness, dominates.
            grey_arr = 0.55 + 0.45 * (np.asarray(grey, dtype=float) / 255.0)
            material.image = Image.fromarray((grey_arr[..., None] * tint * 255).clip(0, 255).astype(np.uint8))
            material.diffuse = [255, 255, 255, 255]
        else:
            material.diffuse = [*rgb, 255]
        geom.visual.material = material
    return out
