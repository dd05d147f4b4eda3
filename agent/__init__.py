"""The per-node agent: reads GPUs through NVML and serving engines through their metrics pages."""
