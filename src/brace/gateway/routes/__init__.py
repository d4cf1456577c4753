"""One module per endpoint family; each lists its routes (``ROUTES``, with who may call
each: :mod:`brace.gateway._access`) and exposes ``setup(app, gateway)``, which mounts them.
Handlers are module-level functions of the request; they find the gateway with
``request.app[GATEWAY]``."""
