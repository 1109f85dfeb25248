"""Captioned scenes for text-to-image (lesson 12): coloured handwritten digits with a caption.

Each 32x32 RGB scene holds one or two real handwritten digits (scikit-learn's, via
:func:`digits_split`) inked in a colour, at a place on a black canvas, and a caption that says so
from a small grammar::

    a red 3                     one digit in the centre
    a blue 7 on the left        one digit in a half: on the left / right, at the top / bottom
    a green 2 above a yellow 5  two digits: left of / right of / above / below

Next to the caption each scene keeps its structured target: what sits in each of five
:data:`SLOTS` (``centre, left, right, top, bottom``) -- the digit (or :data:`EMPTY`) and the
colour index (or -1) -- so a judge can check a generated scene against its prompt.

Some combinations never appear in the training scenes (``include_held_out=False``), so a model's
success on them measures composition rather than memory:

* :data:`HELD_OUT_INKS`: four colour-digit pairs (e.g. a red 7) that training never draws;
* :data:`HELD_OUT_ARRANGEMENTS`: two colour arrangements of a pair (e.g. red on top of blue),
  whichever way the caption words it.

Scene ``i`` of a split is drawn from its own seeded generator, so a scene does not depend on how
many others are asked for: the same call always gives the same images and captions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .handwritten import digits_split

__all__ = [
    "COLOURS",
    "SLOTS",
    "EMPTY",
    "PLACES",
    "RELATIONS",
    "HELD_OUT_INKS",
    "HELD_OUT_ARRANGEMENTS",
    "CAPTION_WORDS",
    "CaptionedScenes",
    "captioned_scenes",
    "parse_caption",
]

#: The ink colours (RGB in [0, 1]), in index order.
COLOURS = {
    "red": (0.95, 0.15, 0.10),
    "green": (0.15, 0.85, 0.20),
    "blue": (0.20, 0.40, 1.00),
    "yellow": (0.95, 0.85, 0.10),
}
_COLOUR_NAMES = tuple(COLOURS)
#: Where a digit can sit; each slot of a target holds what is there.
SLOTS = ("centre", "left", "right", "top", "bottom")
#: The digit value of an empty slot.
EMPTY = 10
#: The phrase that puts a single digit in a slot ("a red 3 on the left").
PLACES = {
    "centre": "",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
#: relation -> (slot of the first-named digit, slot of the second).
RELATIONS = {
    "left of": ("left", "right"),
    "right of": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}
#: (colour, digit) pairs no training scene draws.
HELD_OUT_INKS = frozenset({("red", 7), ("green", 2), ("blue", 4), ("yellow", 9)})
#: (colour in the first slot, colour in the second) of a two-digit axis no training scene draws:
#: red above blue (top, bottom) and yellow left of green (left, right), however it is worded.
HELD_OUT_ARRANGEMENTS = frozenset(
    {("top", "red", "bottom", "blue"), ("left", "yellow", "right", "green")}
)
#: Every word a caption can contain (the tokenizer's vocabulary is built from these).
CAPTION_WORDS = tuple(
    dict.fromkeys(
        ["a", *_COLOUR_NAMES, *map(str, range(10))]
        + " ".join(PLACES.values()).split()
        + " ".join(RELATIONS).split()
    )
)

_SIZE, _DIGIT = 32, 14  # canvas and digit side in pixels
# top-left corner (row, col) of a digit in each slot, before a jitter of up to +-_JITTER pixels
_HALF = (_SIZE // 2 - _DIGIT) // 2  # a digit centred in a 16-pixel half
_CORNERS = {
    "centre": ((_SIZE - _DIGIT) // 2, (_SIZE - _DIGIT) // 2),
    "left": ((_SIZE - _DIGIT) // 2, _HALF),
    "right": ((_SIZE - _DIGIT) // 2, _SIZE // 2 + _HALF),
    "top": (_HALF, (_SIZE - _DIGIT) // 2),
    "bottom": (_SIZE // 2 + _HALF, (_SIZE - _DIGIT) // 2),
}
_JITTER = 1
_SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class CaptionedScenes:
    """A set of captioned scenes.

    ``images [N, 3, 32, 32]`` float32 in [0, 1]; ``captions``: N strings; ``digits [N, 5]``
    int64, the digit in each of :data:`SLOTS` or :data:`EMPTY`; ``colours [N, 5]`` int64, the
    index into :data:`COLOURS` or -1 where the slot is empty; ``boxes``: N tensors ``[k, 4]``
    (x1, y1, x2, y2 in pixels, one row per digit, in the order of :data:`SLOTS`); ``held_out [N]`` bool: the scene shows a
    combination training never draws; ``two [N]`` bool: two digits and a relation.
    """

    images: torch.Tensor
    captions: list[str]
    digits: torch.Tensor
    colours: torch.Tensor
    boxes: list[torch.Tensor]
    held_out: torch.Tensor
    two: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)


def _caption_for(objects: list[tuple[str, str, int]], relation: str | None = None) -> str:
    """The caption of ``objects``: ``[(slot, colour, digit)]``, one object, or two named in
    order with ``relation`` (a key of :data:`RELATIONS`) between them."""
    phrases = [f"a {colour} {digit}" for _, colour, digit in objects]
    if len(objects) == 1:
        return " ".join(filter(None, [phrases[0], PLACES[objects[0][0]]]))
    if relation not in RELATIONS or len(objects) != 2:
        raise ValueError(f"two objects need a relation from {list(RELATIONS)}, got {relation!r}")
    return f"{phrases[0]} {relation} {phrases[1]}"


def parse_caption(caption: str) -> tuple[list[int], list[int]]:
    """The structured target of a caption of the grammar: ``(digits, colours)``, one entry per
    slot of :data:`SLOTS` (:data:`EMPTY` and -1 where nothing is). The inverse of
    :func:`_caption_for`; a caption outside the grammar raises a ``ValueError``."""
    words = caption.lower().split()
    digits, colours = [EMPTY] * len(SLOTS), [-1] * len(SLOTS)

    def place(slot: str, colour: str, digit: str) -> None:
        if colour not in COLOURS or not (len(digit) == 1 and digit.isdigit()):
            raise ValueError(
                f"{caption!r}: expected 'a <colour> <digit>' with a colour from {list(COLOURS)}"
            )
        digits[SLOTS.index(slot)] = int(digit)
        colours[SLOTS.index(slot)] = _COLOUR_NAMES.index(colour)

    if len(words) >= 3 and words[0] == "a":
        rest = " ".join(words[3:])
        places = {phrase: slot for slot, phrase in PLACES.items()}
        if rest in places:
            place(places[rest], words[1], words[2])
            return digits, colours
        for relation, (first, second) in RELATIONS.items():
            tail = rest.removeprefix(relation + " ").split()
            if rest.startswith(relation + " ") and len(tail) == 3 and tail[0] == "a":
                place(first, words[1], words[2])
                place(second, tail[1], tail[2])
                return digits, colours
    raise ValueError(
        f"{caption!r} is not a caption of the grammar: 'a red 3', 'a blue 7 on the left', "
        f"'a green 2 above a yellow 5' (places: {[p for p in PLACES.values() if p]}, relations: "
        f"{list(RELATIONS)})"
    )


def _is_held_out(objects: list[tuple[str, str, int]]) -> bool:
    if any((colour, digit) in HELD_OUT_INKS for _, colour, digit in objects):
        return True
    if len(objects) == 2:
        by_slot = dict((slot, colour) for slot, colour, _ in objects)
        for first, c1, second, c2 in HELD_OUT_ARRANGEMENTS:
            if by_slot.get(first) == c1 and by_slot.get(second) == c2:
                return True
    return False


def _draw_objects(rng: np.random.Generator, labels: np.ndarray) -> tuple[list, str | None]:
    """One scene's layout: ``[(slot, colour, index of a digit image)]`` and the relation."""

    def pick() -> tuple[str, int]:
        return _COLOUR_NAMES[rng.integers(len(COLOURS))], int(rng.integers(len(labels)))

    if rng.random() < 0.5:  # one digit, anywhere
        colour, index = pick()
        return [(SLOTS[rng.integers(len(SLOTS))], colour, index)], None
    relation = list(RELATIONS)[rng.integers(len(RELATIONS))]
    (c1, i1), (c2, i2) = pick(), pick()
    first, second = RELATIONS[relation]
    return [(first, c1, i1), (second, c2, i2)], relation


@functools.cache
def _digit_images(split: str) -> tuple[torch.Tensor, np.ndarray]:
    x_train, x_test, y_train, y_test = digits_split(size=16)
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    # 16 -> 14 pixels, so that a digit and its jitter fit inside half of the canvas
    small = F.interpolate(images, size=(_DIGIT, _DIGIT), mode="bilinear", antialias=True)
    return small.clamp(0, 1)[:, 0], labels.numpy()


@functools.cache
def _scenes(num: int, split: str, include_held_out: bool, seed: int) -> CaptionedScenes:
    ink, labels = _digit_images(split)
    images = torch.zeros(num, 3, _SIZE, _SIZE)
    digits = torch.full((num, len(SLOTS)), EMPTY, dtype=torch.long)
    colours = torch.full((num, len(SLOTS)), -1, dtype=torch.long)
    captions, boxes, held_out, two = [], [], [], []
    for i in range(num):
        rng = np.random.default_rng([seed, _SPLITS[split], i])
        while True:  # redraw a training scene that shows a held-out combination
            layout, relation = _draw_objects(rng, labels)
            objects = [(slot, colour, int(labels[index])) for slot, colour, index in layout]
            if include_held_out or not _is_held_out(objects):
                break
        scene_boxes = []
        for (slot, colour, index), (_, _, digit) in zip(layout, objects):
            dy, dx = rng.integers(-_JITTER, _JITTER + 1, size=2)
            row, col = _CORNERS[slot][0] + dy, _CORNERS[slot][1] + dx
            rgb = torch.tensor(COLOURS[colour]).view(3, 1, 1)
            images[i, :, row : row + _DIGIT, col : col + _DIGIT] = ink[index] * rgb
            digits[i, SLOTS.index(slot)] = digit
            colours[i, SLOTS.index(slot)] = _COLOUR_NAMES.index(colour)
            scene_boxes.append((SLOTS.index(slot), [col, row, col + _DIGIT, row + _DIGIT]))
        captions.append(_caption_for(objects, relation))
        boxes.append(torch.tensor([box for _, box in sorted(scene_boxes)], dtype=torch.float32))
        held_out.append(_is_held_out(objects))
        two.append(relation is not None)
    return CaptionedScenes(
        images, captions, digits, colours, boxes, torch.tensor(held_out), torch.tensor(two)
    )


def captioned_scenes(
    num: int, split: str = "train", *, include_held_out: bool = False, seed: int = 0
) -> CaptionedScenes:
    """``num`` captioned scenes (see the module docstring), the same for the same arguments.

    ``split="train"`` draws from the 1,347 training digits, ``"test"`` from the 450 test digits
    of :func:`digits_split`, so a judge or a model is scored on handwriting it never saw. Training
    scenes leave out the held-out combinations unless ``include_held_out=True`` (a judge must
    read every combination; the text-to-image model must not see them).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    scenes = _scenes(num, split, bool(include_held_out), int(seed))
    # copies: a caller editing them cannot touch the cache
    return CaptionedScenes(
        scenes.images.clone(),
        list(scenes.captions),
        scenes.digits.clone(),
        scenes.colours.clone(),
        [b.clone() for b in scenes.boxes],
        scenes.held_out.clone(),
        scenes.two.clone(),
    )
