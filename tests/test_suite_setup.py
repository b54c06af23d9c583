"""The test run itself: module fixtures that must be built once rely on xdist's groups.

`make test` runs `--dist loadgroup`; tests marked `xdist_group(name)` must share a worker, or each
worker builds the group's exports (and starts its own Ray instance) again. pytest 9.2 broke this
silently with xdist 3.8 (the group suffix never reached the node id), so the run doubled its work.
"""

import pytest


@pytest.mark.xdist_group("suite-setup")
def test_grouped_tests_carry_their_group_under_loadgroup(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not a --dist loadgroup run")
    assert request.node.nodeid.endswith("@suite-setup"), (
        f"xdist did not tag {request.node.nodeid!r} with its group: check the pytest/xdist pins"
    )
