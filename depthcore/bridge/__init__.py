"""Bridges to published models: their released files, loaded as published and evaluated with depthcore's
evaluation, so that a published figure can be reproduced with depthcore's own code (docs/bridge.md)."""
