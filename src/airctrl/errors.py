"""Exception hierarchy for system failures (as opposed to bad arguments)."""

from __future__ import annotations

__all__ = [
    "AirctrlError",
    "AssetError",
    "ConfigError",
    "DecodeError",
    "EmptyInputError",
    "ImageTooSmallError",
    "SourceError",
    "SourceLostError",
    "UnsupportedMediaError",
]


class AirctrlError(Exception):
    """Base class for every failure AIRCTRL raises on purpose.

    The message is one plain sentence meant for a person; the CLI prints it as
    one line and the API returns it as the short reason.
    """

    #: HTTP status the API answers with when this reaches a request.
    http_status: int = 500


class AssetError(AirctrlError):
    """A model or sample file could not be found, fetched or verified."""

    http_status = 503


class ConfigError(AirctrlError):
    """The configuration file or environment holds an unknown key or a bad value."""


class DecodeError(AirctrlError):
    """Input looks like a supported format but cannot be decoded (e.g. truncated)."""

    http_status = 422


class UnsupportedMediaError(AirctrlError):
    """Input bytes are not an image or video format AIRCTRL reads."""

    http_status = 415


class EmptyInputError(AirctrlError):
    """Input holds no bytes at all."""

    http_status = 400


class ImageTooSmallError(AirctrlError):
    """The image is too small to hold a detectable face."""

    http_status = 422


class SourceError(AirctrlError):
    """A frame source (camera, file, stream) could not be opened."""


class SourceLostError(SourceError):
    """A frame source stopped delivering frames and did not come back in time."""
