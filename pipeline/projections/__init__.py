"""Read models folded from domain events, each row guarded by the position of its last event.

Each module pairs a pure fold (event rows in, upserts and rows out, no I/O) with an
``apply_*`` function that writes the same upserts inside a transaction the caller owns.
"""
