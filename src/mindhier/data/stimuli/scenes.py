"""Procedural scenes, the default stimulus source: 1–3 coloured, textured shapes on a patterned background.

Each scene is first sampled as labels in resolution-free units (fractions of the image side), from an RNG
seeded by (seed, split, index) alone, so image i of a split is the same whatever `count` or `size` is.
It is then drawn on a supersampled canvas (PIL polygon masks, numpy patterns) and box-filtered down to
the requested side, which anti-aliases every edge.

The vocabulary is small and fully named, so captions and labels say exactly what an image shows:
8 categories (`CATEGORIES`), 8 object colours (`OBJECT_COLOURS`), 3 size classes, 9 grid positions,
4 fill textures, and 5 background kinds over a palette of 13 background colours (`BACKGROUND_COLOURS`).
A background colour is never the name of, nor close to, a colour of an object in the same image.

Shape letters (docs/glossary.md): N images, H = W = side in pixels (of the supersampled canvas while drawing,
of the output image after), h/w a drawing window, J categories, N polygon vertices.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mindhier.data.stimuli.base import SPLITS, Split, StimulusSet, check_request
from mindhier.data.stimuli.captions import POSITION_PHRASES, scene_caption
from mindhier.errors import ConfigError
from mindhier.progress import ProgressFn, report

CATEGORIES: tuple[str, ...] = ("disc", "square", "triangle", "star", "ring", "cross", "bar", "heart")

# Saturated colours for objects, so they stand out from the muted backgrounds.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 215, 40),
    "green": (40, 170, 70),
    "cyan": (40, 200, 220),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "pink": (245, 120, 185),
}

# Neutral and muted colours for backgrounds; some share a name with an object colour ("a red star on
# blue stripes"), but never with an object in the same image.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "black": (25, 25, 25),
    "red": (150, 75, 70),
    "orange": (190, 130, 80),
    "yellow": (200, 190, 120),
    "green": (95, 135, 95),
    "teal": (60, 125, 125),
    "blue": (80, 100, 150),
    "purple": (115, 90, 140),
    "pink": (205, 160, 175),
    "brown": (110, 80, 55),
    "beige": (220, 205, 175),
}

BACKGROUND_KINDS: tuple[str, ...] = ("flat", "gradient", "stripes", "checker", "noise")
FILLS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")

# Radius of the shape's unit outline as a fraction of the image side, jittered by ±10 %.
SIZE_RADII: dict[str, float] = {"small": 0.12, "medium": 0.18, "large": 0.26}
SIZE_JITTER = 0.10

# The 3×3 grid, row by row: (name, column, row). An object's centre stays inside its cell, so its
# position name is true; outer cells put centres at 0.2 / 0.8 rather than 1/6 / 5/6 so that large
# objects in a corner are not mostly cut off by the frame.
POSITIONS: tuple[tuple[str, int, int], ...] = tuple(
    (name, index % 3, index // 3) for index, name in enumerate(POSITION_PHRASES)
)
CELL_CENTRES = (0.2, 0.5, 0.8)  # along either axis, as a fraction of the side
POSITION_JITTER = 0.06  # max offset of a centre from its cell's centre: stays within [0, 1/3] etc.

# Minimum RGB distance between any background tone and any object colour in the same image.
MIN_CONTRAST = 80.0
BACKGROUND_TONE_SHIFT = 0.2  # second tone of stripes / checker: 20 % towards white or black
NOISE_TONE_SHIFT = 0.4  # soft noise blobs need a stronger contrast than hard-edged stripes to be seen
FILL_TONE_SHIFT = 0.45  # second tone of an object's texture: strong, so the texture reads at 64 px

MAX_CANVAS_SIDE = 1024  # supersampling stops here; larger outputs are drawn at their own size
RENDERER_VERSION = 1  # bump when a change alters pixels, so cached datasets can tell

# --- shapes ----------------------------------------------------------------------------------------------


def _regular_polygon(n_vertices: int, radius: float, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + np.arange(n_vertices) * (2 * math.pi / n_vertices)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(n_points: int, outer: float, inner: float) -> np.ndarray:
    radii = np.where(np.arange(2 * n_points) % 2 == 0, outer, inner)
    angles = -math.pi / 2 + np.arange(2 * n_points) * (math.pi / n_points)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _heart(n_vertices: int = 96) -> np.ndarray:
    # The classic parametric heart, flipped so it points down in image coordinates (y grows downwards),
    # centred on its bounding box and scaled to a half-width of 1.
    t = np.linspace(0, 2 * math.pi, n_vertices, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    y = y - (y.max() + y.min()) / 2
    return np.stack([x, y], axis=1) / 16.0


def _rectangle(half_width: float, half_height: float) -> np.ndarray:
    w, h = half_width, half_height
    return np.array([[-w, -h], [w, -h], [w, h], [-w, h]])


def _cross(arm: float, half_thickness: float) -> np.ndarray:
    # The top arm's end and the inner corner after it, repeated four times a quarter turn apart.
    a, t = arm, half_thickness
    quarter_32 = np.array([[-t, -a], [t, -a], [t, -t]])
    quarter_turn_22 = np.array([[0.0, -1.0], [1.0, 0.0]])  # (x, y) -> (-y, x): clockwise with y down
    turns = [quarter_32 @ np.linalg.matrix_power(quarter_turn_22, k).T for k in range(4)]
    return np.concatenate(turns, axis=0)


# Each category as (outline_N2, hole_N2 or None) in units of the object's radius, centred on the
# object's centre, which lies inside every shape except the ring. Sizes are chosen so the shapes
# look about equally big at the same radius.
SHAPES: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
    "disc": (_regular_polygon(64, 1.0), None),
    "square": (_rectangle(0.85, 0.85), None),
    "triangle": (_regular_polygon(3, 1.15), None),
    "star": (_star(5, 1.15, 0.48), None),
    "ring": (_regular_polygon(64, 1.0), _regular_polygon(64, 0.55)),
    "cross": (_cross(1.0, 0.33), None),
    "bar": (_rectangle(1.1, 0.32), None),
    "heart": (_heart(), None),
}


# --- sampling labels -------------------------------------------------------------------------------------


def _second_tone(rgb: tuple[int, int, int], shift: float) -> np.ndarray:
    """`rgb` moved `shift` of the way towards white if it is dark, towards black if it is light."""
    colour = np.asarray(rgb, dtype=np.float32)
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    target = 255.0 if luma < 128 else 0.0
    return colour + shift * (target - colour)


@functools.lru_cache(maxsize=512)
def background_candidates(object_colours: tuple[str, ...]) -> tuple[str, ...]:
    """Background colours allowed with these object colours: other names, and far from each in RGB."""
    # objects: [n_objects, 3] RGB
    objects = np.array([OBJECT_COLOURS[name] for name in object_colours], dtype=np.float32).reshape(-1, 3)
    allowed = []
    for name, rgb in BACKGROUND_COLOURS.items():
        if name in object_colours:
            continue
        tones = np.stack(  # [3 tones, 3] RGB
            [
                np.asarray(rgb, dtype=np.float32),
                _second_tone(rgb, BACKGROUND_TONE_SHIFT),
                _second_tone(rgb, NOISE_TONE_SHIFT),
            ]
        )
        distance = np.linalg.norm(tones[:, None, :] - objects[None, :, :], axis=-1)  # [3 tones, n_objects]
        if distance.size == 0 or distance.min() >= MIN_CONTRAST:
            allowed.append(name)
    return tuple(allowed)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def sample_scene(rng: np.random.Generator, min_objects: int, max_objects: int) -> dict[str, Any]:
    """Labels of one scene: `{"background": {...}, "objects": [{...}, ...]}`, in resolution-free units."""
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(len(POSITIONS), size=n_objects, replace=False)
    objects = []
    for cell in cells:
        position, column, row = POSITIONS[int(cell)]
        size = _pick(rng, tuple(SIZE_RADII))
        jitter_x, jitter_y = rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=2)
        objects.append(
            {
                "category": _pick(rng, CATEGORIES),
                "colour": _pick(rng, tuple(OBJECT_COLOURS)),
                "size": size,
                "position": position,
                "x": round(CELL_CENTRES[column] + float(jitter_x), 4),
                "y": round(CELL_CENTRES[row] + float(jitter_y), 4),
                "radius": round(SIZE_RADII[size] * float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)), 4),
                "rotation_deg": round(float(rng.uniform(0, 360)), 2),
                "fill": _pick(rng, FILLS),
            }
        )
    # Big objects first, so a small one is never hidden behind a big one; captions follow this order.
    objects.sort(key=lambda obj: -obj["radius"])

    candidates = background_candidates(tuple(sorted({obj["colour"] for obj in objects})))
    kind = _pick(rng, BACKGROUND_KINDS)
    background: dict[str, Any] = {"kind": kind, "colour": _pick(rng, candidates)}
    if kind == "gradient":
        background["colour_to"] = _pick(rng, [name for name in candidates if name != background["colour"]])
        background["angle_deg"] = round(float(rng.uniform(0, 360)), 2)
    elif kind == "stripes":
        background["angle_deg"] = round(float(rng.uniform(0, 180)), 2)
        background["period"] = round(float(rng.uniform(0.08, 0.22)), 4)  # fraction of the side
        background["phase"] = round(float(rng.uniform(0, 1)), 4)
    elif kind == "checker":
        background["cell"] = round(float(rng.uniform(0.08, 0.2)), 4)  # fraction of the side
        background["offset"] = [round(float(v), 4) for v in rng.uniform(0, 1, size=2)]
    elif kind == "noise":
        background["grid"] = int(rng.integers(3, 7))  # cells per side of the low-resolution random field
        background["field_seed"] = int(rng.integers(2**31))  # so the labels alone determine the picture
    return {"background": background, "objects": objects}


# --- rendering -------------------------------------------------------------------------------------------


def supersampling_factor(size: int) -> int:
    """4× up to 128 px, 2× above, never a canvas wider than `MAX_CANVAS_SIDE` (but at least 1×)."""
    factor = 4 if size <= 128 else 2
    return max(1, min(factor, MAX_CANVAS_SIDE // size))


def _pixel_centres(side: int) -> np.ndarray:
    return (np.arange(side, dtype=np.float32) + 0.5) / side


def _blend_mask(background: dict[str, Any], side: int) -> np.ndarray:
    """uint8 [H, W]: how far each canvas pixel goes from the first tone (0) towards the second (255).

    Each pattern is a function of x plus a function of y, so it is built from two 1-D arrays with one
    broadcast; that keeps a 256² canvas well under a millisecond.
    """
    kind = background["kind"]
    centres = _pixel_centres(side)
    if kind == "gradient":
        angle = math.radians(background["angle_deg"])
        cos, sin = math.cos(angle), math.sin(angle)
        half_extent = 0.5 * (abs(cos) + abs(sin))  # the corners reach exactly 0 and 1
        scale = 255.0 / (2 * half_extent)
        x_1W = ((centres - 0.5) * cos * scale)[None, :]
        y_H1 = ((centres - 0.5) * sin * scale + half_extent * scale + 0.5)[:, None]
        return np.clip(x_1W + y_H1, 0, 255).astype(np.uint8)
    if kind == "stripes":
        angle = math.radians(background["angle_deg"])
        period = background["period"]
        # The offset keeps the stripe index positive, so truncation acts as floor.
        x_1W = (centres * (math.cos(angle) / period) + background["phase"] + 64.0)[None, :]
        y_H1 = (centres * (math.sin(angle) / period))[:, None]
        return ((x_1W + y_H1).astype(np.int32) & 1).astype(np.uint8) * 255
    if kind == "checker":
        cell = background["cell"]
        offset_x, offset_y = background["offset"]
        columns_1W = np.floor(centres / cell + offset_x).astype(np.int32)[None, :]
        rows_H1 = np.floor(centres / cell + offset_y).astype(np.int32)[:, None]
        return ((columns_1W + rows_H1) & 1).astype(np.uint8) * 255
    if kind == "noise":
        grid = background["grid"]
        field_gg = np.random.default_rng(background["field_seed"]).uniform(0, 255, size=(grid, grid))
        # Bicubic upsampling of a small random grid gives smooth blobs; it can overshoot 0..255 slightly.
        field = Image.fromarray(field_gg.astype(np.float32), mode="F")
        field = field.resize((side, side), Image.Resampling.BICUBIC)
        return np.clip(np.asarray(field) + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown background kind {kind!r}")


def background_tones(background: dict[str, Any]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The two RGB colours a background blends between (equal for a flat background)."""
    colour = BACKGROUND_COLOURS[background["colour"]]
    kind = background["kind"]
    if kind == "flat":
        return colour, colour
    if kind == "gradient":
        return colour, BACKGROUND_COLOURS[background["colour_to"]]
    shift = NOISE_TONE_SHIFT if kind == "noise" else BACKGROUND_TONE_SHIFT
    other = np.clip(np.round(_second_tone(colour, shift)), 0, 255).astype(int)
    return colour, (int(other[0]), int(other[1]), int(other[2]))


def render_background(background: dict[str, Any], side: int) -> Image.Image:
    """An RGB canvas of side `side` showing one background's labels."""
    first, second = background_tones(background)
    canvas = Image.new("RGB", (side, side), first)
    if background["kind"] == "flat":
        return canvas
    # Blending through an 8-bit mask in PIL is several times faster than float RGB arithmetic in numpy.
    mask = Image.fromarray(_blend_mask(background, side), mode="L")
    return Image.composite(Image.new("RGB", (side, side), second), canvas, mask)


def _fill_pattern(fill: str, u_hw: np.ndarray, v_hw: np.ndarray, period: float) -> np.ndarray:
    """Boolean [h, w]: where the texture's second tone goes; u, v are object-aligned pixel offsets."""
    if fill == "striped":
        return np.floor(u_hw / (period / 2)) % 2 == 1
    if fill == "checkered":
        return (np.floor(u_hw / (period / 2)) + np.floor(v_hw / (period / 2))) % 2 == 1
    if fill == "dotted":
        du = (u_hw % period) - period / 2
        dv = (v_hw % period) - period / 2
        return du * du + dv * dv < (0.3 * period) ** 2
    raise ValueError(f"unknown fill {fill!r}")


def draw_object(canvas: Image.Image, obj: dict[str, Any], supersampling: int) -> None:
    """Draw one object's labels onto an RGB canvas in place."""
    side = canvas.width
    centre_x, centre_y = obj["x"] * side, obj["y"] * side
    radius = obj["radius"] * side
    angle = math.radians(obj["rotation_deg"])
    rotation_22 = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    outline_N2, hole_N2 = SHAPES[obj["category"]]

    def to_canvas(points_N2: np.ndarray) -> np.ndarray:
        return points_N2 @ rotation_22.T * radius + np.array([centre_x, centre_y])

    outline = to_canvas(outline_N2)
    left = max(0, math.floor(outline[:, 0].min()) - 1)
    top = max(0, math.floor(outline[:, 1].min()) - 1)
    right = min(side, math.ceil(outline[:, 0].max()) + 2)
    bottom = min(side, math.ceil(outline[:, 1].max()) + 2)
    if right <= left or bottom <= top:
        return  # entirely outside the canvas
    box = (left, top, right, bottom)
    offset = np.array([left, top])

    mask = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon([tuple(p) for p in (outline - offset)], fill=255)
    if hole_N2 is not None:
        draw.polygon([tuple(p) for p in (to_canvas(hole_N2) - offset)], fill=0)

    colour = OBJECT_COLOURS[obj["colour"]]
    if obj["fill"] == "solid":
        canvas.paste(colour, box, mask)
        return
    # Texture coordinates turn with the object, so stripes and checks rotate with it.
    y_h1 = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5 - centre_y
    x_1w = np.arange(left, right, dtype=np.float32)[None, :] + 0.5 - centre_x
    u_hw = x_1w * math.cos(angle) + y_h1 * math.sin(angle)
    v_hw = -x_1w * math.sin(angle) + y_h1 * math.cos(angle)
    period = max(0.5 * radius, 4.0 * supersampling)  # at least 4 output pixels, or the texture is mush
    second_tone_hw = _fill_pattern(obj["fill"], u_hw, v_hw, period)
    tone = np.clip(np.round(_second_tone(colour, FILL_TONE_SHIFT)), 0, 255).astype(np.uint8)
    texture_hw3 = np.where(second_tone_hw[:, :, None], tone, np.asarray(colour, dtype=np.uint8))
    canvas.paste(Image.fromarray(texture_hw3, mode="RGB"), box, mask)


def render_scene(labels: dict[str, Any], size: int) -> np.ndarray:
    """uint8 [H, W, 3]: the scene drawn at a supersampled resolution, then box-filtered to `size`."""
    supersampling = supersampling_factor(size)
    side = size * supersampling
    canvas = render_background(labels["background"], side)
    for obj in labels["objects"]:
        draw_object(canvas, obj, supersampling)
    if supersampling > 1:
        canvas = canvas.reduce(supersampling)  # box filter: each output pixel averages its sub-pixels
    return np.asarray(canvas, dtype=np.uint8)


# --- the source ------------------------------------------------------------------------------------------


class ScenesSource:
    """Procedural scenes of 1–3 named shapes on a patterned background; unlimited distinct images."""

    name = "scenes"

    def __init__(self, min_objects: int = 1, max_objects: int = 3) -> None:
        if not 1 <= min_objects <= max_objects <= len(POSITIONS):
            raise ConfigError(
                f"scenes need 1 <= min_objects <= max_objects <= {len(POSITIONS)}, "
                f"got min_objects={min_objects}, max_objects={max_objects}; choose counts in that range"
            )
        self.min_objects = min_objects
        self.max_objects = max_objects

    def scene_labels(self, split: Split, index: int, seed: int) -> dict[str, Any]:
        """The labels of image `index` of `split`; depends on nothing else."""
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        return sample_scene(rng, self.min_objects, self.max_objects)

    def generate(
        self, split: Split, count: int, size: int, seed: int, progress: ProgressFn | None = None
    ) -> StimulusSet:
        check_request(split, count, size, seed)
        images_NHWC = np.empty((count, size, size, 3), dtype=np.uint8)
        categories_NJ = np.zeros((count, len(CATEGORIES)), dtype=np.float32)
        labels, captions = [], []
        for index in range(count):
            scene = self.scene_labels(split, index, seed)
            images_NHWC[index] = render_scene(scene, size)
            for obj in scene["objects"]:
                categories_NJ[index, CATEGORIES.index(obj["category"])] = 1.0
            labels.append(scene)
            captions.append(scene_caption(scene))
            if (index + 1) % 64 == 0 or index + 1 == count:
                report(progress, "render scenes", index + 1, count)
        return StimulusSet(
            images_NHWC=images_NHWC,
            captions=tuple(captions),
            labels=tuple(labels),
            source=self.name,
            category_names=CATEGORIES,
            categories_NJ=categories_NJ,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "min_objects": self.min_objects,
            "max_objects": self.max_objects,
            "renderer_version": RENDERER_VERSION,
        }
