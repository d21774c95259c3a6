"""Content identity of a model, so caches and training fingerprints survive new dataset versions.

Every ``kedro run`` saves models under a new version path; keying caches or training runs on the path
would redo all downstream work. :func:`model_identity` hashes the folder's files once and stores the
result in ``.kowen_model_id`` inside the folder (versioned copies are hard links of the same files, so
the stored identity travels with them). A hub id or any non-folder reference is its own identity.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ID_FILE = ".kowen_model_id"
_CHUNK = 1 << 20


def compute_identity(folder: str | Path) -> str:
    """sha256 over (relative name, content) of every file in ``folder`` except the identity file."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ID_FILE):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()[:32]


def model_identity(ref: str | Path) -> str:
    """Identity of a model reference: content hash for a local folder, the reference itself otherwise."""
    path = Path(ref)
    if not path.is_dir():
        return str(ref)
    id_file = path / ID_FILE
    if id_file.exists():
        return id_file.read_text().strip()
    ident = compute_identity(path)
    try:
        tmp = path / (ID_FILE + ".tmp")
        tmp.write_text(ident)
        tmp.replace(id_file)
    except OSError:  # read-only model folder: just don't store it
        pass
    return ident
