"""The sandbox's catalogue: its models, its users and the constant tables the world draws from.

Nothing here is random: ``build_world`` (in ``_world``) draws a world from these tables.
Changing a table changes every seeded world (see tests/sandbox/test_world_golden.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["image", "text"]


@dataclass(frozen=True)
class WorldModel:
    """One model of the sandbox's catalogue."""

    id: str
    name: str
    versions: tuple[str, ...]
    classes: tuple[str, ...]
    kind: ModelKind
    input_filename: str  # the model input name a job's sources use ("image", "input.txt")
    media_type: str
    path_template: str  # where raw inputs live, relative to data_url (record fields only)
    naming: str  # human description of the input naming convention
    top_k: int  # how many class predictions the model emits
    scores_as_strings: bool  # Chassis-built models emit scores as strings
    explainable: bool
    author: str
    description: str

    @property
    def latest_version(self) -> str:
        return self.versions[-1]


IMAGE_MODEL = WorldModel(
    id="c60c8dbd79",
    name="Image Classification",
    versions=("1.0.0", "1.1.0"),
    classes=(
        "tabby cat",
        "tiger cat",
        "Egyptian cat",
        "golden retriever",
        "Labrador retriever",
        "goldfish",
        "school bus",
        "pizza",
    ),
    kind="image",
    input_filename="image",
    media_type="image/png",
    path_template="images/{submitted_at:%Y/%m/%d}/{input_name}.png",
    naming="camera frames `camNN_YYYYMMDD_NNNNNN`, stored by submission day",
    top_k=5,
    scores_as_strings=False,
    explainable=True,
    author="Sandbox Labs",
    description="Classifies small photos into eight ImageNet-like classes (top-5 output).",
)

SPAM_MODEL = WorldModel(
    id="f4k3sp4m01",
    name="Spam Detection",
    versions=("0.3.2",),
    classes=("spam", "ham"),
    kind="text",
    input_filename="input.txt",
    media_type="text/plain",
    path_template="text/{model_id}/{job_id}/{input_name}.txt",
    naming="message ids `msg-<hex>` (a few forwarded ones carry spaces, `#`, `%`, `+`, non-ASCII)",
    top_k=2,
    scores_as_strings=True,
    explainable=False,
    author="Sandbox Labs (built with Chassis)",
    description="Binary spam/ham classifier for short messages.",
)

SENTIMENT_MODEL = WorldModel(
    id="ed542963de",
    name="Sentiment Analysis",
    versions=("1.0.1",),
    classes=("negative", "neutral", "positive"),
    kind="text",
    input_filename="input.txt",
    media_type="text/plain",
    path_template="reviews/{model_version}/{job_id}/{input_name}.txt",
    naming="SDK-style item names `0001`, `0002`, ... per job",
    top_k=3,
    scores_as_strings=False,
    explainable=True,
    author="Sandbox Labs",
    description="Three-class sentiment of product reviews (all classes emitted).",
)

MODELS: tuple[WorldModel, ...] = (IMAGE_MODEL, SPAM_MODEL, SENTIMENT_MODEL)
# How often each model (in MODELS order) gets a job.
MODEL_WEIGHTS = (0.4, 0.3, 0.3)

# The account's users (first name, last name, title), in the order their keys are drawn;
# the first one owns the sandbox's api_key.
USERS = (
    ("Jane", "Smith", "Data Scientist"),
    ("Omar", "Haddad", "ML Engineer"),
    ("Mei", "Chen", "Analyst"),
    ("Lucas", "Martin", "Support Lead"),
    ("Priya", "Raman", "Product Manager"),
)
# How often each user (in USERS order) submits a job.
USER_WEIGHTS = (0.35, 0.2, 0.2, 0.15, 0.1)

# Class priors: a little imbalance, as in production traffic.
PRIORS: dict[str, tuple[float, ...]] = {
    IMAGE_MODEL.id: (0.16, 0.12, 0.1, 0.14, 0.12, 0.12, 0.12, 0.12),
    SPAM_MODEL.id: (0.3, 0.7),
    SENTIMENT_MODEL.id: (0.3, 0.25, 0.45),
}
# How often each model version's top prediction is right.
ACCURACY = {
    (IMAGE_MODEL.id, "1.0.0"): 0.72,
    (IMAGE_MODEL.id, "1.1.0"): 0.8,
    (SPAM_MODEL.id, "0.3.2"): 0.82,
    (SENTIMENT_MODEL.id, "1.0.1"): 0.76,
}
# Classes a multi-class model confuses with each other; wrong guesses stay "plausible".
CONFUSABLE = {
    "tabby cat": ("tiger cat", "Egyptian cat"),
    "tiger cat": ("tabby cat", "Egyptian cat"),
    "Egyptian cat": ("tabby cat", "tiger cat"),
    "golden retriever": ("Labrador retriever",),
    "Labrador retriever": ("golden retriever",),
    "goldfish": ("pizza",),
    "school bus": ("goldfish",),
    "pizza": ("goldfish",),
    "negative": ("neutral",),
    "neutral": ("negative", "positive"),
    "positive": ("neutral",),
}
# The error messages of failed inputs, by model kind.
ERRORS: dict[ModelKind, tuple[str, ...]] = {
    "image": (
        "invalid image: cannot identify image file 'image'",
        "image is too small: expected at least 8x8 pixels",
        "model container exited with code 137 (OOMKilled)",
    ),
    "text": (
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        "input.txt is empty",
        "model container exited with code 137 (OOMKilled)",
    ),
}
