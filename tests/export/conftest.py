import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread, as everywhere in the tests: the machines are small and shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
