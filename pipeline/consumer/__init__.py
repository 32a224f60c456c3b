"""The consumer edge: where Faust's stream of Kafka records reaches the agents.

Faust runs the consumer group, the fetches and the offset commits; the agents
(:mod:`pipeline.agents`) see plain records and must never see a record twice without
knowing, or lose one. Faust as shipped falls short of that in ways it has no setting
for, so the workarounds live here, in one place, each explaining the Faust behaviour it
corrects:

- :mod:`.fetching`: the aiokafka consumer Faust builds. A 10 ms fetch wait instead of
  Faust's fixed 1.5 s, which held records at the agents' door; ``read_committed``, so
  what an aborted reader transaction wrote never reaches an agent (Faust picks it only
  for its own exactly-once mode); and the offsets that hold no record (transaction
  markers, aborted records) or were never committed, which Faust's consumer mishandles.
- :mod:`.batching`: batches of whatever has arrived, without ``take_events``' window,
  acked only once handled, and acks in each partition's order (Faust commits past a gap
  at the head of the acked offsets, which would lose unfinished records on a restart).

:mod:`pipeline.app` wires them to the agents.
"""
