"""The traffic lab: network namespaces running real servers, clients and attack tools, the
labelled recorder, mixing captures into evaluation sets and re-addressing them.

``network`` (namespaces on a bridge), ``scenario`` (hosts, servers, clients), ``attacks``
(the attack tools), ``recorder`` (run_lab: a labelled capture of a session), ``throughput``
(UDP bursts, tcpreplay, counting a live source), ``mixing`` and ``readdress``.

Imports :mod:`netids.detect`, :mod:`netids.capture` and :mod:`netids.config`.
"""
