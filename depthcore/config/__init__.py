"""The run's configuration: the params schema (:mod:`~depthcore.config.params`, validation only), dotted-key
overrides, the offline configuration and every artifact path (:mod:`~depthcore.config.paths`). The section base
class lives on the ground floor (:mod:`depthcore.section`), so the models, losses and weights need nothing here."""
