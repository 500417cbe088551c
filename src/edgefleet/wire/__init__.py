"""The vocabulary the agent and the control plane share on the wire: the ``sagemaker-edge``
device API's names, limits and deployment shapes (``edge``), the MQTT topic and broker-URL
rules of deployment notifications (``mqtt``), and the capture record format of batch files with
the captured values they hold (``capture``: the agent writes it, the control plane reads it)."""
