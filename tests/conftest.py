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


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tiny models' ops are far too small to gain from threads, and on a shared 2-core CI
    machine a descheduled second thread stalls every op (measured: 13-40x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
