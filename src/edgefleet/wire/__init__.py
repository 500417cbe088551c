"""The vocabulary the agent and the control plane share on the wire: the ``sagemaker-edge``
device API's names, limits and deployment shapes (``edge``) and the MQTT topic and broker-URL
rules of deployment notifications (``mqtt``)."""
