"""Networking: links, addresses and routes through our rtnetlink; DHCPv4 from pyroute2."""
