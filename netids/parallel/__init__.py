"""Work beside the main process: ordered worker pools, shared-memory slots, the allocator
setting that lets batches reuse memory (and the trim that hands it back in the live app), and
the /proc process table.

Imports nothing else of netids: every other package may use it.
"""
