"""flagedge: a feature-flag evaluation edge service that speaks flagd's protocol."""

__version__ = "0.1.0"
