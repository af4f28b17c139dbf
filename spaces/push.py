"""`python -m spaces push OWNER/NAME [--private]`: build the Space and upload it to the Hub.

The token comes from HF_TOKEN or the CLI login (`hf auth login`), as huggingface_hub reads
them; without one, the push stops before any request with a message saying how to log in.
The Space repo is created if needed (gradio SDK) and receives the build as one commit.
Files that an earlier push left there and this build no longer has are deleted in the same
commit (except `.gitattributes`, which the Hub keeps). HF_ENDPOINT is honoured, as it is by
all of huggingface_hub.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from spaces.build import BuildError, BuildOptions, build

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class PushError(Exception):
    """The Space cannot be pushed (no token, bad repo id, Hub error)."""


def resolve_token(token: str | None = None) -> str:
    """The Hub token: the argument, else HF_TOKEN, else the CLI login; PushError if none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token found: run `hf auth login` (or set HF_TOKEN to a token "
                        "with write access, from https://huggingface.co/settings/tokens) and push again")
    return token


def push(repo_id: str, *, private: bool = False, options: BuildOptions = BuildOptions(),
         folder: str | Path | None = None, token: str | None = None) -> str:
    """Upload the Space (built now, or `folder` if given) to `repo_id`; returns the commit URL."""
    if not REPO_ID.match(repo_id):
        raise PushError(f"the Space must be named OWNER/NAME (e.g. alice/voice-studio), got {repo_id!r}")
    token = resolve_token(token)
    if folder is not None:
        return _upload(repo_id, Path(folder), private, options, token)
    with tempfile.TemporaryDirectory(prefix="space-build-") as tmp:
        built = build(Path(tmp) / "space", options)
        return _upload(repo_id, built, private, options, token)


def _upload(repo_id: str, folder: Path, private: bool, options: BuildOptions, token: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not (folder / "README.md").is_file():
        raise BuildError(f"{folder} is not a Space build (no README.md)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=folder,
                                   commit_message=f"Deploy Qwen3 Voice Studio ({options.hardware}, {options.model})",
                                   delete_patterns=["*"])
    except HfHubHTTPError as e:
        raise PushError(f"the Hub refused the push to {repo_id}: {e}") from e
    return str(getattr(commit, "commit_url", commit))
