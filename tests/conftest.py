"""Shared fixtures: the real-payload corpus and the databases the store is tested against."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _corpus_root() -> Path:
    override = os.environ.get("WATTLEDGER_CORPUS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "corpus"


CORPUS = _corpus_root()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The captured payloads in ``../shared/corpus``; tests that need them skip when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-payload corpus not found at {CORPUS} (set WATTLEDGER_CORPUS)")
    return CORPUS


def corpus_file(*parts: str) -> Path:
    """Path of one corpus file, skipping the calling test when the corpus is not present."""
    path = CORPUS.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"corpus file {path} not present")
    return path
