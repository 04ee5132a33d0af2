"""Identity resolution and profiles (see :mod:`.identity`, :mod:`.state`, :mod:`.service`)."""
