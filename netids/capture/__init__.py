"""Frames in: live sources (AF_PACKET ring, interfaces, BPF filters) and pcap/pcapng files,
read and written (the one pcap writer everything uses).

A thin I/O shell around :mod:`netids.detect.frames`; imports :mod:`netids.detect` and
:mod:`netids.config`, nothing above them.
"""
