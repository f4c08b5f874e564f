import pytest
from hypothesis import given, strategies as st

from podvirt.quantity import (QuantityError, format_bytes, format_millis, human_bytes,
                              parse_bytes, parse_decimal, parse_millis)


@pytest.mark.parametrize("text, expected", [
    pytest.param("4Gi", 4 * 2**30, id="binary-suffix"),
    pytest.param("512Mi", 512 * 2**20, id="mebibytes"),
    pytest.param("1.5Gi", 3 * 2**29, id="fractional-binary"),
    pytest.param("1G", 10**9, id="decimal-suffix"),
    pytest.param("128974848", 128974848, id="plain-bytes"),
    pytest.param("129e6", 129 * 10**6, id="exponent"),
    pytest.param("1k", 1000, id="kilo"),
    pytest.param("0.5", 1, id="rounds-up-to-a-byte"),
    pytest.param("1E", 10**18, id="exa-is-a-suffix-not-an-exponent"),
    pytest.param("2.5E", 25 * 10**17, id="fractional-exa"),
    pytest.param(" 8Mi ", 8 * 2**20, id="surrounding-space"),
    pytest.param("9" * 30 + "Ki", int("9" * 30) * 2**10, id="exact-beyond-28-digits"),
    pytest.param("1.000000000000000000000000000001Ei",
                 2**60 + 1, id="fraction-exact-then-rounded-up"),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("4GB", id="wrong-suffix"),
    pytest.param("Gi", id="no-number"),
    pytest.param("-1Gi", id="negative"),
    pytest.param("1e99", id="huge-exponent"),
    pytest.param("1" * 100, id="too-long"),
    pytest.param("4 Gi", id="inner-space"),
])
def test_parse_bytes_rejects(text):
    with pytest.raises(QuantityError):
        parse_bytes(text)


@pytest.mark.parametrize("text, millis", [
    pytest.param("2", 2000, id="cores"), pytest.param("250m", 250, id="millicores"),
    pytest.param("0.1", 100, id="fraction"), pytest.param("0.0001", 1, id="rounds-up"),
    pytest.param("1k", 10**6, id="kilo-cores"), pytest.param(" 100m ", 100, id="space"),
])
def test_parse_millis(text, millis):
    assert parse_millis(text) == millis


@pytest.mark.parametrize("text", ["-1", "-100m", "1 m", "m", ""])
def test_parse_millis_rejects(text):
    with pytest.raises(QuantityError):
        parse_millis(text)


@given(st.integers(0, 10**30), st.sampled_from(["", "m", ".0", ".0m"]))
def test_whole_cpu_quantities_are_exact(number, suffix):
    # parse_millis takes an int path for "N" and "Nm"; "N.0" goes the Decimal way,
    # which must be as exact (30 digits are past Decimal's default 28).
    assert parse_millis(f"{number}{suffix}") == number * (1 if suffix.endswith("m") else 1000)


@given(st.integers(0, 10**30), st.sampled_from(["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
                                                "k", "M", "G", "T", "P", "E"]))
def test_whole_quantities_agree_with_the_decimal_parse(number, suffix):
    # parse_bytes takes an int shortcut for these; parse_decimal is the reference.
    text = f"{number}{suffix}"
    assert parse_bytes(text) == parse_decimal(text)


def test_formatting_round_trips():
    for n in (2**20, 3 * 2**30, 5 * 2**10, 12345):
        assert parse_bytes(format_bytes(n)) == n
    assert format_millis(2000) == "2" and format_millis(150) == "150m"
    assert human_bytes(int(4.3 * 2**30)) == "4.3Gi"
    assert human_bytes(312 * 2**20) == "312Mi"
    assert human_bytes(-2 * 2**30) == "-2Gi"
