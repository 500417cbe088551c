"""The device side of the control plane: the ``sagemaker-edge`` client and its transports
(``control``, ``transport``), the deployment executor with rollback (``deploy``) and its durable
state (``state``), heartbeat metrics (``metrics``) and MQTT wake-ups (``wakeup``).

``transport``, ``state`` and ``wakeup`` stand alone; ``deploy`` and ``metrics`` use them and
``serving``; ``control`` drives ``deploy`` and ``metrics``.
"""
