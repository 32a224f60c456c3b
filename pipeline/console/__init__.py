"""``pipeline console``: a small web app to start bootstraps and watch them and the pipeline.

- ``/organizations/new``: the form; validated against the contract before anything is
  written (:mod:`.form`), then ``organization.bootstrap.initiated`` through
  ``api.emit_domain_event`` (stream signature);
- ``/organizations/<id>``: the chain live over server-sent events (:mod:`.live`);
- ``/pipeline``: the operator's view of ``pipeline status``, live too.

Writes need the credential of :mod:`pipeline.webauth` and a CSRF token (:mod:`.guard`).
"""
