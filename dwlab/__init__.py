"""dwlab: train neural networks on stochastic domain-wall devices, real or simulated."""

__version__ = "0.1.0"
