"""Kubernetes quantities (resource.Quantity syntax) as exact integers and back.

Memory-like values are handled as whole bytes and CPU as millicores, so arithmetic
on requests never rounds the way floats would.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation, ROUND_CEILING

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
            "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
# Public for schemas of files with quantities (the chart's values.schema.json).
QUANTITY = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
# Longest accepted text: a quantity longer than this is a typo or an attack, not a size.
_MAX_LEN = 64
# Enough digits for any accepted text times its largest unit, so no product is rounded
# (the default context keeps 28 and silently rounded e.g. 30-digit Ki counts).
_EXACT = Context(prec=_MAX_LEN + 40)
# What nearly every memory quantity looks like ("4Gi", "512Mi", "10G"): exact in int
# arithmetic, without Decimal (a third of parsing a VM spec went there).
_WHOLE = re.compile(r"([0-9]{1,30})(Ki|Mi|Gi|Ti|Pi|Ei|[kMGTPE])?")
_WHOLE_UNITS = {None: 1, **_BINARY, **{s: int(v) for s, v in _DECIMAL.items() if v >= 1 and s}}
# The same for CPU ("100m", "2"): every container's requests and limits, on every watch event.
_WHOLE_CPU = re.compile(r"([0-9]{1,30})(m)?")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_decimal(text: str) -> Decimal:
    """Exact value of a quantity string, e.g. "1.5Gi" -> 1610612736, "250m" -> 0.25."""
    if not isinstance(text, str):
        raise QuantityError(f"expected a quantity string, got {type(text).__name__}")
    s = text.strip()
    if not s or len(s) > _MAX_LEN:
        raise QuantityError(f"{text!r} is not a quantity (e.g. 512Mi, 4Gi, 250m)")
    m = QUANTITY.match(s)
    if not m:
        raise QuantityError(f"{text!r} is not a quantity (e.g. 512Mi, 4Gi, 250m)")
    number, suffix = m.group(1), m.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not a quantity") from exc
    if suffix in _BINARY:
        return _EXACT.multiply(value, _BINARY[suffix])
    if len(suffix) > 1 and suffix[0] in ("e", "E"):     # "1E" alone is exa, not an exponent
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            raise QuantityError(f"{text!r}: exponent out of range")
        return _EXACT.multiply(value, _EXACT.power(10, exponent))
    return _EXACT.multiply(value, _DECIMAL[suffix])


def parse_bytes(text: str) -> int:
    """Bytes in a memory quantity, rounded up to a whole byte as Kubernetes does."""
    if isinstance(text, str) and (m := _WHOLE.fullmatch(text.strip())):
        return int(m.group(1)) * _WHOLE_UNITS[m.group(2)]
    value = parse_decimal(text)
    if value < 0:
        raise QuantityError(f"{text!r} is negative")
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def parse_millis(text: str) -> int:
    """Millicores in a CPU quantity ("2" -> 2000, "250m" -> 250), rounded up."""
    if isinstance(text, str) and (m := _WHOLE_CPU.fullmatch(text.strip())):
        return int(m.group(1)) * (1 if m.group(2) else 1000)
    value = _EXACT.multiply(parse_decimal(text), 1000)
    if value < 0:
        raise QuantityError(f"{text!r} is negative")
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def format_bytes(n: int) -> str:
    """Exact quantity for a byte count, in the largest binary unit that divides it."""
    if n == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def human_bytes(n: int) -> str:
    """Short, rounded size for messages: 4617089843 -> "4.3Gi"."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n >= unit:
            value = n / unit
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{sign}{text}{suffix}"
    return f"{sign}{n}B"


def format_millis(m: int) -> str:
    """CPU quantity for millicores: 2000 -> "2", 250 -> "250m"."""
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"
