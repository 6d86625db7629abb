"""Models made and judged: training, checkpoints, retraining from collected traffic, learning
the network in place, training runs in a child process, and evaluation against labels and
baselines.

Imports :mod:`netids.detect` and :mod:`netids.capture`; never the store, the UI or commands.
"""
