"""The dashboard's static files (``index.html``, ``app.js``, ``style.css``), served by
:mod:`brace.gateway.routes.ui`.  Plain files: no build step, nothing fetched from a CDN."""
