from datetime import UTC, datetime, timedelta

from marketplace.core.display import usd
from marketplace.dashboard.charts import Bar, Series, hbar_chart, nice_ticks, time_chart


def test_usd_converts_six_decimal_token_units():
    assert usd(2_498_400) == "$2.4984"
    assert usd(123_456_789_000, 2) == "$123,456.79"
    assert usd(None) == "–"


def test_nice_ticks_cover_the_maximum():
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(0.93)[-1] >= 0.93


def test_bar_chart_escapes_labels_and_draws_one_bar_each():
    svg = hbar_chart(
        [Bar("<script>", 5), Bar("B", 10, low=2, high=12)],
        title="t",
        axis_label="x",
        fmt=str,
        empty="none",
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="bar"') == 2 and svg.count('class="range"') == 1


def test_time_chart_marks_failures_apart_from_passes():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(t + timedelta(hours=i), float(i)) for i in range(4)]
    svg = time_chart(
        [Series("matmul fp32", points, passed=[True, False, True, True])],
        title="t",
        y_label="y",
        fmt=str,
        empty="none",
    )
    assert svg.count('class="point"') == 3 and svg.count('class="point fail"') == 1
    assert "matmul fp32" in svg


def test_charts_without_data_say_so():
    assert "nothing yet" in hbar_chart([], title="t", axis_label="x", fmt=str, empty="nothing yet")
    assert "nothing yet" in time_chart(
        [Series("s")], title="t", y_label="y", fmt=str, empty="nothing yet"
    )
