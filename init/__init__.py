"""mvirt-one init: PID 1 of the microVM (or a local-mode server on a host)."""
