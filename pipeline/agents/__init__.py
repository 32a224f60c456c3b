"""The pipeline's Faust agents: enqueue, starter and projection (DESIGN.md data flow).

Pure decisions (``records``, ``enqueue``, ``starter``, ``deadletter``, ``checkpoints``)
are kept apart from the I/O (``effects``) and from Faust (``pipeline.app``), so the
decisions are tested without services.
"""
