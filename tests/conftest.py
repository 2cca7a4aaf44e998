import pytest

import minires as mr

# The same test bodies run on every device; CUDA runs carry the `cuda` marker and are
# skipped where no GPU is present.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    mr.manual_seed(0)
