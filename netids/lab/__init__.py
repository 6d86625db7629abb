"""The traffic lab: network namespaces running real servers, clients and attack tools, the
labelled recorder, mixing captures into evaluation sets and re-addressing them.

Imports :mod:`netids.detect`, :mod:`netids.capture` and :mod:`netids.config`.
"""
