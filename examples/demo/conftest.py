import time

import pytest


@pytest.fixture(scope="module")
def warm_cache():
    """A module-scoped fixture: built once per worker per module, not once per test."""
    time.sleep(0.05)
    return {"ready": True}
