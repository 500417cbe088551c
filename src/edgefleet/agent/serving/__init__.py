"""Serving models: :class:`~edgefleet.agent.serving.service.AgentService` (every rpc's behaviour,
transport-free), the model registry (``registry``), System V shared-memory inputs (``shm``) and
the gRPC adapter (``grpc_server``), which only converts messages and maps errors.

Import from the modules (``edgefleet.agent.serving.service.AgentService``); this package module
imports nothing, so loading one part never loads ONNX Runtime or gRPC.
"""
