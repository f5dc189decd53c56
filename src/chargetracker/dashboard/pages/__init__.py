"""The dashboard's pages. Each module has ``layout(...)`` (the page's components) and
``register(app, data, settings)`` (its callbacks, bound to that app only)."""
