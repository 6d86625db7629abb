"""Frames in: live sources (AF_PACKET ring, interfaces, BPF filters) and pcap/pcapng files,
read and written (the one pcap writer everything uses).

``live`` (LiveSource) and ``files`` (FileSource) are the two sources, speaking one API and
sharing ``source`` (CaptureError, CaptureStats); ``ring`` reads the TPACKET_V3 ring,
``interfaces`` lists interfaces and their link types, ``bpf`` compiles filters, ``netns``
enters a network namespace, ``pcapfile`` reads pcap/pcapng and writes pcap.

A thin I/O shell around :mod:`netids.detect.frames`; imports :mod:`netids.detect` and
:mod:`netids.config`, nothing above them.
"""
