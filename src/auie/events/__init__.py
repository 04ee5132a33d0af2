"""The event model: Segment messages normalised into one shape (see :mod:`.normalize`)."""

from auie.events.normalize import EVENT_TYPES, Normalizer, check_size, format_time, parse_time

__all__ = ["EVENT_TYPES", "Normalizer", "check_size", "format_time", "parse_time"]
