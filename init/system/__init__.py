"""What PID 1 owes the system: console, mounts, reaping, signals and power."""
