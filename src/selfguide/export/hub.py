"""Upload an export folder as a Hugging Face Hub dataset repository, with huggingface_hub.

The token comes from `$HF_TOKEN` only: never from a saved login, a flag or a file, so a run
folder or a shell history never holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from selfguide.errors import SelfGuideError

TOKEN_ENV = "HF_TOKEN"


def push_folder(folder: Path, repo_id: str, *, private: bool = False, commit_message: str = "Upload SELF-GUIDE synthetic data") -> str:
    """Create the dataset repo if needed and upload `folder` (card included); return its URL."""
    from huggingface_hub import HfApi

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SelfGuideError(f"--push-to-hub: set ${TOKEN_ENV} to a Hugging Face write token (it is read from the environment only)")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise SelfGuideError(f"--push-to-hub: expected a repo id like user/name, got {repo_id[:100]!r}")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder), commit_message=commit_message)
    except Exception as err:  # offline, a dead endpoint, a refused token: the export folder is written either way
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise SelfGuideError(f"--push-to-hub {repo_id}: upload failed ({type(err).__name__}: {first}); the export is in {folder}") from None
    return str(url)
