"""The store writer writes blocks of lines in requests of bounded size."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from sensing.store.writer import requests


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=30), st.integers(1, 100))
def test_requests_keep_every_block_in_order_within_the_size(blocks: list[bytes],
                                                             size: int) -> None:
    runs = list(requests(blocks, size))
    assert [b for run in runs for b in run] == blocks
    for run in runs:
        assert run, "no empty request"
        assert len(run) == 1 or sum(map(len, run)) <= size
    # a run ends only where the next block would not fit
    for run, after in itertools.pairwise(runs):
        assert sum(map(len, run)) + len(after[0]) > size


def test_no_blocks_no_request() -> None:
    assert list(requests([], 10)) == []
