from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session", params=["a", "b"])
def shape(request) -> str:
    """The two tiny checkpoint shapes (b: talker width != code-predictor width)."""
    return request.param


@pytest.fixture(scope="session")
def tiny_ckpt(shape) -> Path:
    return FIXTURES / f"tiny_{shape}"


@pytest.fixture(scope="session")
def golden_dir(shape) -> Path:
    return FIXTURES / "golden" / shape
