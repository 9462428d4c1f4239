"""bench.writer_cap at smoke size: a real writer process takes reserves from a driver over
its command link, every one placed, and its CPU per reserve is measured, as is what a
gateway's copy spends per reserve on the commit feed.

No assertion on the figures' size: at smoke size, on a shared machine, they mean nothing.
"""

from __future__ import annotations

import pytest

from bench import writer_cap


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_writer_is_driven_over_its_link_and_measured() -> None:
    figures = writer_cap.measure(drivers=1, in_flight=8, seconds=0.5)
    assert figures["refused"] == 0
    assert figures["reserves"] > 0 and figures["reserves_per_s"] > 0
    assert figures["writer_cpu_us_per_reserve"] > 0
    assert figures["reserves_per_frame"] >= 1
    assert figures["copy_cpu_us_per_reserve"] > 0  # the first driver's copy applied them
