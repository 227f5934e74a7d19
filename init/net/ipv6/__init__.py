"""IPv6: router advertisements beside the kernel's SLAAC, and a DHCPv6 client (RFC 8415)."""
