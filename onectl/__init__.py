"""onectl: the host-side client of the mvirt-one init."""
