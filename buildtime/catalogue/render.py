"""Headless CPU renderer for furniture models (pyrender + trimesh on OSMesa).

The API is deliberately small so that other code (e.g. a room-scene composer)
can reuse it: :func:`render_view` renders a scene (loaded, and recoloured if
wanted, by :mod:`buildtime.catalogue.meshes`) from a yaw/pitch around it,
framing the object so that it fills ``fill_ratio`` of the frame.

Conventions (those of Sweet Home 3D models): +Y is up and the front of a piece
of furniture faces +Z, so ``yaw_deg=0`` looks at the front and ``yaw_deg=90``
at its right-hand side (seen from the viewer).
"""

from __future__ import annotations

import atexit
import math
import os
from dataclasses import dataclass

# Must be set before pyrender (PyOpenGL) is imported: there is no display.
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np  # noqa: E402

# pyrender 0.1.45 (the last release) still uses ``np.infty``, removed in NumPy 2.
if not hasattr(np, "infty"):
    np.infty = np.inf  # type: ignore[attr-defined]

import pyrender  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from buildtime.catalogue.meshes import RGB  # noqa: E402


#: Very light grey, close to a white photo-studio sweep.
STUDIO_BACKGROUND: RGB = (246, 246, 246)

_YFOV = math.radians(30.0)


@dataclass(frozen=True)
class Light:
    """A lighting setup: directional lights as (direction towards the light
    in camera-independent world space, RGB colour, intensity), plus ambient."""

    directionals: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...]
    ambient: tuple[float, float, float]
    shadows: bool = False


#: Soft studio light: key, fill, rim and a low bounce; strong ambient so that
#: no face goes black.
STUDIO = Light(
    directionals=(
        ((-0.6, 0.8, 0.9), (1.0, 1.0, 1.0), 2.0),   # key, upper front left
        ((0.9, 0.4, 0.6), (1.0, 1.0, 1.0), 1.0),    # fill, front right
        ((0.2, 0.9, -0.9), (1.0, 1.0, 1.0), 1.0),   # rim, from behind
        ((0.0, -0.6, 0.8), (1.0, 1.0, 1.0), 0.3),   # bounce from the floor
    ),
    ambient=(0.35, 0.35, 0.35),
)

#: Warm indoor light (tungsten-like), still soft.
WARM = Light(
    directionals=(
        ((-0.5, 0.7, 0.8), (1.0, 0.82, 0.6), 2.4),
        ((0.9, 0.3, 0.5), (1.0, 0.75, 0.5), 1.0),
        ((0.0, 0.9, -0.8), (1.0, 0.85, 0.7), 0.8),
    ),
    ambient=(0.42, 0.34, 0.26),
)

#: One hard side light with shadows and little ambient, like a window or flash.
HARSH = Light(
    directionals=(
        ((1.0, 0.9, 0.5), (1.0, 0.98, 0.95), 4.0),
        ((-0.5, 0.3, 0.8), (1.0, 1.0, 1.0), 0.5),
    ),
    ambient=(0.22, 0.22, 0.24),
    shadows=True,
)

LIGHTS: dict[str, Light] = {"studio": STUDIO, "warm": WARM, "harsh": HARSH}


@dataclass(frozen=True)
class Backdrop:
    """A simple room corner behind the object: a floor plane and a back wall
    that faces the camera."""

    floor: RGB = (196, 170, 140)
    wall: RGB = (225, 215, 190)


# --------------------------------------------------------------------------
# Rendering


def _pbr_material(geom: trimesh.Trimesh) -> pyrender.MetallicRoughnessMaterial:
    """Translate an OBJ/MTL SimpleMaterial into a double-sided PBR material."""
    material = getattr(geom.visual, "material", None)
    diffuse = np.array([200, 200, 200, 255], dtype=float)
    texture = None
    alpha = 1.0
    roughness = 0.75
    if material is not None:
        if getattr(material, "diffuse", None) is not None:
            diffuse = np.asarray(material.diffuse, dtype=float)
        uv = getattr(geom.visual, "uv", None)
        if getattr(material, "image", None) is not None and uv is not None and len(uv):
            texture = material.image.convert("RGBA") if material.image.mode not in ("RGB", "RGBA") else material.image
        kwargs = getattr(material, "kwargs", {}) or {}
        d = kwargs.get("d")
        if d is not None:
            try:
                alpha = float(d[0] if isinstance(d, (list, tuple)) else d)
            except ValueError:
                alpha = 1.0
        glossiness = getattr(material, "glossiness", None)
        if glossiness is not None:
            # OBJ Ns 0..1000 -> roughness ~0.9..0.3; furniture is rarely mirror-like.
            roughness = float(np.clip(0.9 - 0.6 * math.sqrt(min(float(glossiness), 1000.0) / 1000.0), 0.3, 0.9))
    base = diffuse / 255.0
    base[3] = base[3] * max(alpha, 0.15)
    return pyrender.MetallicRoughnessMaterial(
        baseColorFactor=base,
        baseColorTexture=texture,
        metallicFactor=0.0,
        roughnessFactor=roughness,
        alphaMode="BLEND" if base[3] < 0.99 else "OPAQUE",
        doubleSided=True,
    )


def _to_pyrender(scene: trimesh.Scene) -> list[pyrender.Mesh]:
    meshes = []
    for geom in scene.dump():
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        if isinstance(geom.visual, trimesh.visual.ColorVisuals) and geom.visual.kind is not None:
            # pyrender cannot smooth-shade per-face colours.
            meshes.append(pyrender.Mesh.from_trimesh(geom, smooth=geom.visual.kind != "face"))
        else:
            # Smooth shading: upholstery is tessellated coarsely and looks
            # faceted otherwise; hard edges keep separate vertices in the OBJs.
            meshes.append(pyrender.Mesh.from_trimesh(geom, material=_pbr_material(geom), smooth=True))
    return meshes


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, eye
    return pose


def _frame(points: np.ndarray, direction: np.ndarray, fill_ratio: float, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera eye and target such that ``points`` fill ``fill_ratio`` of the
    frame and their projection is centred."""
    target = points.mean(axis=0)
    eye = target + direction
    tan_y = math.tan(_YFOV / 2) * fill_ratio
    tan_x = tan_y * aspect
    for _ in range(3):
        pose = _look_at(eye, target)
        rot = pose[:3, :3]
        local = (points - target) @ rot  # x right, y up, z towards camera
        # Distance from target so that every point is inside the frustum.
        dist = float(np.max(np.maximum(local[:, 2] + np.abs(local[:, 0]) / tan_x, local[:, 2] + np.abs(local[:, 1]) / tan_y)))
        eye = target + direction / np.linalg.norm(direction) * dist
        # Re-centre on the projected extents (perspective makes the mean off-centre).
        depth = dist - local[:, 2]
        px, py = local[:, 0] / depth, local[:, 1] / depth
        cx, cy = (px.max() + px.min()) / 2, (py.max() + py.min()) / 2
        shift = rot[:, 0] * cx * dist + rot[:, 1] * cy * dist
        target, eye = target + shift, eye + shift
    return eye, target


# OSMesa keeps what a context allocated until the context itself is deleted (about 6 MB per 400 px render:
# composing 200 training scenes grew to 17 GB), so each context is renewed after this many renders.
RENDERS_PER_CONTEXT = 25
# Per frame size: the OSMesa context and how many renders it has made.
_RENDERERS: dict[tuple[int, int], tuple[pyrender.OffscreenRenderer, int]] = {}


@atexit.register
def _release_renderers() -> None:
    # Free the GL contexts before the interpreter tears PyOpenGL down.
    while _RENDERERS:
        _RENDERERS.popitem()[1][0].delete()


def _renderer(width: int, height: int) -> pyrender.OffscreenRenderer:
    """An OSMesa context for one more render of this size (creating one costs ~0.1 s, so they are reused)."""
    key = (width, height)
    renderer, renders = _RENDERERS.get(key, (None, 0))
    if renderer is None or renders >= RENDERS_PER_CONTEXT:
        if renderer is not None:
            renderer.delete()
        renderer, renders = pyrender.OffscreenRenderer(width, height), 0
    _RENDERERS[key] = (renderer, renders + 1)
    return renderer


def render_view(
    scene: trimesh.Scene,
    yaw_deg: float,
    pitch_deg: float,
    size: int | tuple[int, int] = 512,
    background: RGB = STUDIO_BACKGROUND,
    light: str | Light = "studio",
    fill_ratio: float = 0.85,
    offset: tuple[float, float] = (0.0, 0.0),
    backdrop: Backdrop | None = None,
) -> Image.Image:
    """Render ``scene`` seen from (yaw, pitch) around its centre.

    Args:
        scene: a Y-up scene, e.g. from :func:`load_model`.
        yaw_deg: 0 = front (+Z), 90 = the object's right side, 45 = front
            three-quarter.
        pitch_deg: camera elevation above the horizontal, in degrees.
        size: square side, or (width, height), in pixels.
        background: RGB clear colour (seen where there is no backdrop).
        light: a :class:`Light` or one of ``"studio"``, ``"warm"``, ``"harsh"``.
        fill_ratio: fraction of the frame (the tighter of width/height) that
            the object's projection spans.
        offset: shift of the object in the frame, as fractions of the frame
            size (x to the right, y upwards); use with a small ``fill_ratio``.
        backdrop: optional floor + back wall, for room-like pictures.

    Returns:
        An RGB PIL image.
    """
    width, height = (size, size) if isinstance(size, int) else size
    light = LIGHTS[light] if isinstance(light, str) else light
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    direction = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])

    vertices = np.vstack([g.vertices for g in scene.dump() if isinstance(g, trimesh.Trimesh)])
    if len(vertices) > 20000:
        vertices = vertices[np.random.default_rng(0).choice(len(vertices), 20000, replace=False)]
    eye, target = _shifted(*_frame(vertices, direction, fill_ratio, width / height), offset, width / height)
    pr_scene = pyrender.Scene(bg_color=[c / 255 for c in background] + [1.0], ambient_light=light.ambient)
    for mesh in _to_pyrender(scene):
        pr_scene.add(mesh)
    if backdrop is not None:
        for mesh, pose in _backdrop_meshes(backdrop, vertices, yaw):
            pr_scene.add(mesh, pose=pose)
    pr_scene.add(pyrender.PerspectiveCamera(yfov=_YFOV, aspectRatio=width / height), pose=_look_at(eye, target))
    _add_lights(pr_scene, light, yaw, target)
    flags = pyrender.RenderFlags.SHADOWS_DIRECTIONAL if light.shadows else pyrender.RenderFlags.NONE
    color, _ = _renderer(width, height).render(pr_scene, flags=flags)
    return Image.fromarray(color[..., :3].copy())


def _shifted(eye: np.ndarray, target: np.ndarray, offset: tuple[float, float],
             aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """The camera moved opposite to the wanted on-screen shift of the object (fractions of the frame)."""
    if offset == (0.0, 0.0):
        return eye, target
    pose = _look_at(eye, target)
    half_h = math.tan(_YFOV / 2) * np.linalg.norm(eye - target)
    shift = -pose[:3, 0] * offset[0] * 2 * half_h * aspect - pose[:3, 1] * offset[1] * 2 * half_h
    return eye + shift, target + shift


def _add_lights(pr_scene: pyrender.Scene, light: Light, yaw: float, target: np.ndarray) -> None:
    """The light's directional lamps, placed relative to the camera's yaw so that the key light always comes from
    the same side of the picture."""
    c, s = math.cos(yaw), math.sin(yaw)
    for toward, colour, intensity in light.directionals:
        d = np.array(toward, dtype=float)
        d = np.array([c * d[0] + s * d[2], d[1], -s * d[0] + c * d[2]])
        pose = _look_at(target + d / np.linalg.norm(d), target)
        pr_scene.add(pyrender.DirectionalLight(color=colour, intensity=intensity), pose=pose)


def _backdrop_meshes(backdrop: Backdrop, vertices: np.ndarray, yaw: float) -> list[tuple[pyrender.Mesh, np.ndarray]]:
    """A floor plane at y = 0 and a wall behind the object facing the camera."""
    extent = float(np.max(vertices.max(axis=0) - vertices.min(axis=0)))
    radius = float(np.max(np.linalg.norm(vertices[:, [0, 2]], axis=1)))

    def plane(rgb: RGB) -> pyrender.Mesh:
        # Large enough to fill the frame, small enough for a sharp shadow map.
        box = trimesh.creation.box(extents=[8 * extent, 0.002, 8 * extent])
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=[c / 255 for c in rgb] + [1.0], metallicFactor=0.0, roughnessFactor=0.95
        )
        return pyrender.Mesh.from_trimesh(box, material=material, smooth=False)

    floor_pose = np.eye(4)
    floor_pose[1, 3] = -0.001
    # The wall: the floor plane stood up, pushed back behind the object along
    # the viewing direction.
    c, s = math.cos(yaw), math.sin(yaw)
    wall_pose = np.eye(4)
    wall_pose[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    back = radius + 0.35 * extent
    wall_pose[:3, 3] = [-s * back, 0.0, -c * back]
    return [(plane(backdrop.floor), floor_pose), (plane(backdrop.wall), wall_pose)]
