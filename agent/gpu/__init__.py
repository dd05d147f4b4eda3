"""GPU sampling through NVML: energy, power, utilization, identity, MIG."""
