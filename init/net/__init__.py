"""Networking: links and addresses through netlink (pyroute2)."""
