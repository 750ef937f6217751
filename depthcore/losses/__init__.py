"""Training losses: one module each (l1, l2, silog, ssl), built by name through the registry."""
