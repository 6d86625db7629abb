"""The pure core: packet batches, decoding, context features, scaling, what counts as evidence,
the model, calibration, explanations, the detector, event aggregation, connection records
(Zeek conn.log), the behaviour detectors on them (scans, brute force, beacons:
``behaviour*.py``), the payload checks (HTTP heads, executables over HTTP, Heartbleed:
``payload*.py``), the DNS reader and detectors (tunnelling, NXDOMAIN bursts: ``dns*.py``,
``behaviour_dns.py``) and the score CSV's text.

Arrays in, arrays out: nothing here opens a file, a socket or a database, or imports nicegui
or sqlmodel. It imports only numpy, torch, libinjection (the payload checks) and itself; every
other package may import it.
"""
