"""Exception types. Every user-facing error has a one-line message naming the file/field and the problem.

The CLI turns any :class:`SRMetricsError` into a one-line ``Error: ...`` and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations


class SRMetricsError(Exception):
    """Base class for all errors raised for user mistakes or unusable inputs.

    A subclass may set ``hint`` (where to look next); the CLI appends it to the one-line message."""

    hint: str = ""


class ImageReadError(SRMetricsError):
    """An image file could not be read or has an unsupported layout."""


class PairingError(SRMetricsError):
    """GT and SR files could not be paired (no match, ambiguous keys, strict mode)."""


class InputMismatchError(SRMetricsError):
    """A GT/SR pair cannot be compared (size mismatch, NaN/inf values, wrong channel count)."""


class UnknownMetricError(SRMetricsError, KeyError):
    """A metric id is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(SRMetricsError):
    """Model weights are missing locally and cannot be fetched."""


class JudgementError(SRMetricsError):
    """A human-judgement file is malformed."""


class RankingError(JudgementError):
    """Votes cannot be turned into a ranking (no methods, one method, disconnected comparisons...)."""


class ConfigError(SRMetricsError):
    """A configuration file or option is invalid."""


class SRMetricsWarning(UserWarning):
    """Base of this toolkit's warnings (printed as one 'Warning: ...' line by the CLI)."""


class DataRangeWarning(SRMetricsWarning):
    """Integer data that use a small part of their type's default range (12-bit or reflectance x10000 data in
    uint16): the scores assume a full scale the data never reach. Shown even with ``--quiet``."""


class ReportError(SRMetricsError):
    """``srmetrics report`` cannot use an input (unknown table, unreadable meta file) or exceeds a size limit."""
