import secrets

import pytest


@pytest.fixture
def seed() -> str:
    return secrets.token_hex(32)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
