"""The on-device agent: config, model registry, runtimes, AgentService, wire adapters, capture."""
