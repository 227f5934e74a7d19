"""The init's version, reported by Health and --version."""

VERSION = "0.1.0"
