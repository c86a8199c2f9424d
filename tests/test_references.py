"""Tests for blocksim.references: the keys the docs cite exist and unknown keys are rejected."""

from __future__ import annotations

import pytest

from blocksim.errors import InputError
from blocksim.references import REFERENCES, cite


@pytest.mark.parametrize("key", ["ZL", "JL75", "MB88", "PLT02", "VL11", "AHV72", "P72", "LL8"])
def test_cited_keys_exist(key):
    assert len(cite(key)) > 20


def test_citation_details():
    assert "36, 811 (1975)" in REFERENCES["JL75"]
    assert "70, 65" in REFERENCES["MB88"]
    assert "74, 991 (2002)" in REFERENCES["PLT02"]


def test_unknown_key():
    with pytest.raises(InputError, match=r"^key = 'MB89'.*did you mean 'MB88'"):
        cite("MB89")
