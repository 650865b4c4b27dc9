"""The one error a bad configuration raises (no torch: readers and reports import it too)."""


class ConfigError(ValueError):
    """A bad configuration value. The message is one line naming the key, the value and what is allowed."""
