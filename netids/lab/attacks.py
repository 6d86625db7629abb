"""The attacks the lab's attacker host can run: real tools with their arguments and budget."""

from __future__ import annotations

from dataclasses import dataclass

from netids.lab.network import LabError


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    kind: str  # attack_kind in the labels (the vocabulary of ../shared/data)
    budget: float  # seconds it may run at most
    argv: tuple[str, ...]  # run in the attacker host; "{name}": IP of that lab host


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "syn_scan",
            "port_scan",
            8,
            (
                "nmap",
                "-sS",
                "-Pn",
                "-n",
                "-T4",
                "--max-retries",
                "1",
                "--max-rate",
                "3000",
                "-p",
                "1-1000",
                "{srv}",
            ),
        ),
        Attack(
            "connect_scan",
            "port_scan",
            8,
            ("nmap", "-sT", "-Pn", "-n", "-T4", "--max-retries", "1", "-p", "1-600", "{web2}"),
        ),
        Attack(
            "udp_scan",
            "port_scan",
            10,
            (
                "nmap",
                "-sU",
                "-Pn",
                "-n",
                "-T4",
                "--max-retries",
                "1",
                "--host-timeout",
                "9s",
                "-p",
                "40-80,110-140,160-170",
                "{dns}",
            ),
        ),
        Attack(
            "os_scan",
            "os_fingerprint",
            9,
            (
                "nmap",
                "-O",
                "-Pn",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "8s",
                "-p",
                "22,80",
                "{srv}",
            ),
        ),
        Attack(
            "host_sweep",
            "host_sweep",
            6,
            (
                "nmap",
                "-sn",
                "-n",
                "--send-ip",
                "-PE",
                "-PS80,443",
                "-PA80",
                "{srv}",
                "{web2}",
                "{dns}",
                "{c1}",
                "{c2}",
                "{c3}",
                "{c4}",
            ),
        ),
        Attack(
            "syn_flood",
            "syn_flood",
            5,
            ("hping3", "-q", "-S", "-p", "80", "-i", "u400", "-c", "7500", "{srv}"),
        ),
        Attack(
            "udp_flood",
            "udp_flood",
            5,
            (
                "hping3",
                "-q",
                "--udp",
                "-p",
                "9999",
                "-d",
                "120",
                "-i",
                "u400",
                "-c",
                "7500",
                "{dns}",
            ),
        ),
        Attack(
            "icmp_flood",
            "icmp_flood",
            5,
            ("hping3", "-q", "--icmp", "-d", "56", "-i", "u400", "-c", "7500", "{web2}"),
        ),
        Attack(
            "arp_spoof",
            "arp_spoof_mitm",
            10,
            (
                "timeout",
                "-s",
                "INT",
                "-k",
                "3",
                "6",
                "arpspoof",
                "-i",
                "eth0",
                "-t",
                "{c1}",
                "{srv}",
            ),
        ),
    )
}


def parse_attacks(spec: str) -> list[Attack]:
    """``none``, ``all`` or a comma-separated list of attack names."""
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return []
    if spec == "all":
        return list(ATTACKS.values())
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise LabError(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    return [ATTACKS[n] for n in names]
