"""minitransformer: a from-scratch transformer framework for learning."""

__version__ = "0.1.0"
