"""The database: SQLModel tables, engine and migrations, the batched event writer, the event
sink shared by live capture and ``score --db``, queries and export.

Imports :mod:`netids.detect`, :mod:`netids.capture` (to write samples as pcap) and
:mod:`netids.config`; never the UI or the controller.
"""
