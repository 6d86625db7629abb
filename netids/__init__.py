"""netids: a network intrusion-detection app scoring every packet with a Transformer autoencoder."""

__version__ = "0.1.0"
