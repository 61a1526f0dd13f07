"""--threads auto: /proc/stat parsing; niced work does not count as busy."""

from asymlora.train.cpu import parse_cpu_line


def test_nice_and_idle_time_count_as_available_and_guest_time_is_not_added_twice():
    # user nice system idle iowait irq softirq steal guest guest_nice
    total, available = parse_cpu_line("cpu  100 300 50 500 20 5 5 0 40 60")
    assert total == 100 + 300 + 50 + 500 + 20 + 5 + 5 + 0  # guest (40) and guest_nice (60) are inside user / nice
    assert available == 500 + 20 + 300
    assert parse_cpu_line("cpu0 1 2 3 4 5 6 7 8") is None  # a per-core line, not the aggregate
    assert parse_cpu_line("intr 12345") is None
