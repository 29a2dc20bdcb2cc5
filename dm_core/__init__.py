"""DM Studio engine: emphasis density functions, the DM loss, label noise, data, models, training."""

__version__ = "0.1.0"
