"""The Sage Intacct simulator: a real HTTP peer that speaks ../shared/spec/intacct-rest.md.

Entry points: :func:`sandbox.intacct.app.create_app`, :func:`sandbox.intacct.server.serve`,
:class:`sandbox.intacct.config.SimulatorConfig` and the ``intacct`` click group in ``cli``.
"""
