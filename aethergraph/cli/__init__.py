"""The ``ag`` command line."""
