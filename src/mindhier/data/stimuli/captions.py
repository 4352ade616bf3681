"""Plain-English captions for procedural scenes, built only from a scene's labels.

    a large red star at the top left on blue stripes
    a small striped green disc in the centre and a medium yellow heart at the bottom right on a grey
    checkerboard

Object phrases are listed in drawing order and joined as "A", "A and B" or "A, B and C"; the background
phrase comes last. Every word that names a label value is the value itself, so a test (or a reader) can
find each object's category, colour, size and position in the caption.
"""

from __future__ import annotations

from typing import Any

# The preposition that makes each 3×3 grid cell read naturally: "in the centre", "on the left", "at the top".
POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}

# Fill textures read as adjectives; a solid fill is the unmarked case and adds no word.
FILL_ADJECTIVES = {"solid": "", "striped": "striped ", "dotted": "dotted ", "checkered": "checkered "}


def with_article(words: str) -> str:
    """ "a" or "an" before a phrase, by its first letter: "an orange checkerboard", "a grey one"."""
    return ("an " if words[:1] in "aeiou" else "a ") + words


def object_phrase(obj: dict[str, Any]) -> str:
    """One object's phrase, e.g. "a small striped green disc in the centre"."""
    fill = FILL_ADJECTIVES[obj["fill"]]
    return with_article(f"{obj['size']} {fill}{obj['colour']} {obj['category']} {POSITION_PHRASES[obj['position']]}")


def background_phrase(background: dict[str, Any]) -> str:
    """The background's phrase: "on blue stripes", "on a plain white background", "on a purple-to-orange
    gradient", "on a grey checkerboard" or "on a noisy teal texture"."""
    kind, colour = background["kind"], background["colour"]
    if kind == "flat":
        return f"on a plain {colour} background"
    if kind == "gradient":
        return "on " + with_article(f"{colour}-to-{background['colour_to']} gradient")
    if kind == "stripes":
        return f"on {colour} stripes"
    if kind == "checker":
        return "on " + with_article(f"{colour} checkerboard")
    if kind == "noise":
        return f"on a noisy {colour} texture"
    raise ValueError(f"unknown background kind {kind!r}")


def join_phrases(phrases: list[str]) -> str:
    """Join phrases as "A", "A and B" or "A, B and C"."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def scene_caption(labels: dict[str, Any]) -> str:
    """The caption of one scene from its labels (`{"background": ..., "objects": [...]}`)."""
    objects = join_phrases([object_phrase(obj) for obj in labels["objects"]])
    return f"{objects} {background_phrase(labels['background'])}"
