"""The provisioning worker: FlexPoint's connect and disconnect messages become working connections.

``handler`` decides (validate, store, report), ``consumer`` speaks to the broker, ``reasons``
turns Intacct's failures into what the customer reads, ``marks`` keeps old messages from undoing
newer ones, ``service`` wires the process.
"""
