"""USD amounts as integers of nano-USD (1e-9 USD), exact for fractions of a cent.

Amounts cross the public interface as :class:`~decimal.Decimal` and are
stored and compared as ``int`` nano-USD everywhere else, in memory, in Redis
and in the ledger.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NANO_PER_USD = 1_000_000_000
_NANO = Decimal(1).scaleb(-9)

# Redis runs Lua with double-precision numbers, which hold integers exactly up
# to 2**53. Limits and amounts above this many nano-USD (about 9 million USD)
# could be compared inexactly there, so they are rejected.
MAX_NANO_USD = 2**53


def usd_to_nano(amount: Decimal) -> int:
    """Convert a non-negative USD amount to nano-USD, rounding half up.

    Raises TypeError for a float (convert it with ``Decimal(str(value))``
    first, so that binary rounding does not leak in) and ValueError for a
    negative, non-finite or too large amount.
    """
    if isinstance(amount, float):
        raise TypeError(
            f"expected a Decimal USD amount, got the float {amount!r}; "
            "pass Decimal(str(value))"
        )
    try:
        value = Decimal(amount)
        if not value.is_finite():
            raise ValueError(f"USD amount must be finite, got {amount!r}")
        nano = int(value.quantize(_NANO, rounding=ROUND_HALF_UP).scaleb(9))
    except InvalidOperation:
        raise ValueError(f"invalid USD amount {amount!r}") from None
    if nano < 0:
        raise ValueError(f"USD amount must not be negative, got {amount}")
    if nano > MAX_NANO_USD:
        raise ValueError(
            f"USD amount {amount} exceeds the maximum of "
            f"{nano_to_usd(MAX_NANO_USD)} USD"
        )
    return nano


def nano_to_usd(nano: int) -> Decimal:
    """Convert nano-USD to an exact Decimal USD amount with nine decimal places."""
    return Decimal(nano).scaleb(-9).quantize(_NANO)


def format_usd(nano: int) -> str:
    """Format nano-USD for messages: ``$0.0125``, dropping trailing zeros."""
    text = f"{nano_to_usd(nano):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"${text}"
