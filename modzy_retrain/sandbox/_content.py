"""Raw input contents and model explanations, derived from (true label, content seed).

Everything here is a pure function of its arguments, so the bytes written to storage, the
sizes reported by the API and the explanations all agree without being stored.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ._png import encode_rgb

IMAGE_SIZE = 16

# Colour and texture per ImageNet-like class: the picture really depends on the true
# label, so a user can train a toy model on what the sandbox writes.
_IMAGE_STYLE: dict[str, tuple[tuple[int, int, int], str]] = {
    "tabby cat": ((150, 110, 60), "stripes_h"),
    "tiger cat": ((205, 120, 40), "stripes_v"),
    "Egyptian cat": ((175, 150, 120), "solid"),
    "golden retriever": ((218, 165, 32), "solid"),
    "Labrador retriever": ((45, 35, 25), "solid"),
    "goldfish": ((255, 140, 0), "checker"),
    "school bus": ((255, 204, 0), "stripes_h"),
    "pizza": ((200, 60, 40), "checker"),
}


def image_layout(content_seed: int) -> tuple[int, int, int]:
    """Where the object sits in the image: ``(x, y, side)``."""
    rng = random.Random(content_seed)
    side = rng.randint(6, 10)
    return rng.randint(0, IMAGE_SIZE - side), rng.randint(0, IMAGE_SIZE - side), side


# Adds noise in [-12, 12] and clamps to a byte: _NOISY[value + noise_byte % 25].
_NOISY = bytes(max(0, min(255, v - 12)) for v in range(256 + 25))


def render_image(label: str, content_seed: int) -> bytes:
    color, pattern = _IMAGE_STYLE[label]
    x0, y0, side = image_layout(content_seed)
    rng = random.Random(content_seed ^ 0x5EED)
    base = rng.randint(90, 160)
    dark = tuple(int(c * 0.6) for c in color)
    clean: list[int] = []
    for y in range(IMAGE_SIZE):
        for x in range(IMAGE_SIZE):
            if x0 <= x < x0 + side and y0 <= y < y0 + side:
                shaded = (
                    (pattern == "stripes_h" and (y - y0) % 2)
                    or (pattern == "stripes_v" and (x - x0) % 2)
                    or (pattern == "checker" and (x + y) % 2)
                )
                clean.extend(dark if shaded else color)
            else:
                clean.extend((base, base, base))
    # Per-pixel noise makes every image unique, so identical files only occur where
    # the sandbox plants them on purpose (Sandbox.duplicate_inputs).
    noise = rng.randbytes(len(clean))
    pixels = bytes(_NOISY[c + n % 25] for c, n in zip(clean, noise, strict=True))
    return encode_rgb(IMAGE_SIZE, IMAGE_SIZE, pixels)


def image_mask_rle(content_seed: int) -> dict[str, Any]:
    """Explanation for an image: Modzy's column-major RLE of the object mask.

    The first run counts zeros (docs "Explainability formats").
    """
    x0, y0, side = image_layout(content_seed)
    runs: list[int] = []
    current = 0
    length = 0
    for x in range(IMAGE_SIZE):  # column-major (Fortran order)
        for y in range(IMAGE_SIZE):
            value = 1 if (x0 <= x < x0 + side and y0 <= y < y0 + side) else 0
            if value == current:
                length += 1
            else:
                runs.append(length)
                current = value
                length = 1
    runs.append(length)
    return {"maskRLE": [runs], "dimensions": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}


_FILL = {
    "prize": ["cruise", "gift card", "iPhone", "holiday", "laptop"],
    "service": ["bank", "PayPal", "mailbox", "Netflix"],
    "domain": ["bit.ly", "secure-login.example", "deals.example"],
    "pct": ["50", "70", "90"],
    "product": ["headphones", "blender", "phone case", "kettle", "backpack", "monitor"],
    "name": ["Sam", "Alex", "Maria", "Tom", "Aisha", "Ken"],
    "event": ["the standup", "lunch", "the design review", "the offsite"],
    "day": ["Monday", "Tuesday", "Thursday", "Friday"],
    "time": ["9:30", "11:00", "14:15", "16:45"],
    "doc": ["draft", "spreadsheet", "slides", "report"],
}

_TEXT_TEMPLATES: dict[str, list[str]] = {
    "spam": [
        "Congratulations! You have been selected for a free {prize}. "
        "Reply YES to {code} to claim it now.",
        "URGENT: your {service} account is locked. "
        "Verify your details at http://{domain}/{code} within 24 hours.",
        "Limited offer: {pct}% off {product} today only! Click http://{domain}/{code} to order.",
    ],
    "ham": [
        "Hi {name}, are we still on for {event} on {day}? Ref {code}.",
        "Thanks {name}, the {doc} for ticket {code} looks good to me.",
        "Reminder: {event} moved to {day} at {time}. Notes are in {doc} {code}.",
    ],
    "positive": [
        "I love this {product}. It works great and the battery lasts forever. Order {code}.",
        "Excellent {product}, fast delivery and friendly support. Highly recommend! ({code})",
        "Best {product} I have owned, wonderful quality. Order {code}.",
    ],
    "negative": [
        "Terrible {product}. It broke after two days and support never answered. Order {code}.",
        "Very disappointed with this {product}; it is slow and the screen is awful. ({code})",
        "Worst {product} ever, cheap plastic and useless instructions. Order {code}.",
    ],
    "neutral": [
        "The {product} arrived on {day}. It does what the description says. Order {code}.",
        "Average {product}. Nothing special, nothing wrong either. ({code})",
        "The {product} is fine for the price, packaging was standard. Order {code}.",
    ],
}

# Word weights the fake text models "explain" with (LIME-like wordImportance).
_LEXICON = {
    "love": 0.62,
    "great": 0.48,
    "excellent": 0.66,
    "recommend": 0.41,
    "best": 0.52,
    "wonderful": 0.58,
    "friendly": 0.33,
    "terrible": 0.71,
    "broke": 0.44,
    "disappointed": 0.63,
    "awful": 0.6,
    "slow": 0.35,
    "worst": 0.69,
    "useless": 0.55,
    "cheap": 0.3,
    "fine": 0.28,
    "average": 0.37,
    "nothing": 0.22,
    "standard": 0.25,
    "free": 0.58,
    "urgent": 0.6,
    "congratulations": 0.52,
    "click": 0.45,
    "verify": 0.4,
    "offer": 0.37,
    "claim": 0.42,
}


def render_text(label: str, content_seed: int) -> str:
    rng = random.Random(content_seed)
    template = rng.choice(_TEXT_TEMPLATES[label])
    values = {key: rng.choice(options) for key, options in _FILL.items()}
    # The code makes each text unique (see render_image for why that matters).
    values["code"] = f"{content_seed & 0xFFFFFFFFFFFF:012x}"
    return template.format(**values)


_WORD = re.compile(r"[A-Za-z']+")


def word_importance(text: str, content_seed: int) -> dict[str, Any]:
    """Explanation for a text: the top three word weights, as Modzy's sentiment model emits."""
    rng = random.Random(content_seed ^ 0xE1A1)
    scored: list[tuple[float, int, str]] = []
    for index, token in enumerate(text.split()):
        match = _WORD.search(token)
        if match is None:
            continue
        word = match.group(0)
        weight = _LEXICON.get(word.lower())
        score = weight + rng.uniform(-0.05, 0.05) if weight is not None else rng.uniform(0, 0.12)
        scored.append((round(score, 3), index, word))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return {
        "wordImportance": [
            {"index": index, "word": word, "score": score} for score, index, word in scored[:3]
        ]
    }


def render_input(kind: str, label: str, content_seed: int) -> bytes:
    if kind == "image":
        return render_image(label, content_seed)
    return render_text(label, content_seed).encode("utf-8")


def explanation(kind: str, label: str, content_seed: int) -> dict[str, Any]:
    if kind == "image":
        return image_mask_rle(content_seed)
    return word_importance(render_text(label, content_seed), content_seed)
