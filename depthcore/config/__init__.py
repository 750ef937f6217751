"""The run's configuration: the params schema (:mod:`~depthcore.config.params`, validation only), the section
base class, dotted-key overrides, the offline configuration and every artifact path (:mod:`~depthcore.config.paths`)."""
