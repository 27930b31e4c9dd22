"""Every private singer-sdk name this target relies on is still there, as it uses it.

A failure names the name, what changed and the code to review: the sign that a new release needs
work before pyproject.toml allows it (see target_klaviyo/_compat.py).
"""

from __future__ import annotations

import pytest

from target_klaviyo._compat import PRIVATE_NAMES, PrivateName


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=lambda private: private.label)
def test_private_name_still_fits(private: PrivateName) -> None:
    problem = private.problem()
    assert problem is None, problem


def test_a_changed_name_fails_with_what_to_review() -> None:
    first = PRIVATE_NAMES[0]
    changed = PrivateName(
        first.distribution, first.owner, first.name, (*(first.parameters or ()), "gone"), "code"
    )
    problem = changed.problem()
    assert problem is not None
    assert first.label in problem
    assert "gone" in problem
    assert "adapt that code" in problem
