"""Stand-ins for simulators that cannot be installed on every machine (e.g. StarCraft II)."""
