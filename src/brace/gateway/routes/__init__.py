"""One module per endpoint family; each exposes ``setup(app, gateway)``."""
