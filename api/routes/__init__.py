"""HTTP routes, one module per resource; every handler is thin over services."""
