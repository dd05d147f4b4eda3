"""GPU sampling through NVML: energy, power, utilization, identity, MIG.

Start here: :func:`.nvml.open_nvml` loads NVML (or takes the fake from :mod:`.fake`), and
:class:`.monitor.GpuMonitor` turns one ``poll(t_ns)`` per cycle into :class:`.reading.GpuReading`
values. The rest: :mod:`.worker` (calls under a timeout), :mod:`.device` (probing and reading one
GPU), :mod:`.accounting` (energy through the ledger, power checks), :mod:`.track` (per-GPU health
and backoff), :mod:`.energy` (power integral, counter cross-check), :mod:`.mig` (instance
shares), :mod:`.sku` (names), :mod:`.boards` and :mod:`.power_curve` (what the fake simulates),
:mod:`.captures` (readers of saved nvidia-smi and dcgm-exporter output).
"""
