"""The organization bootstrap on Temporal (temporalio/samples-python layout).

- ``inputs``: dataclasses crossing the workflow/activity boundary;
- ``workflows``: ``OrganizationBootstrapWorkflow``;
- ``activities``: the steps, each recording its effect as a domain event;
- ``providers``: DNS and email behind small protocols;
- ``worker``: ``build_worker`` and ``run_worker``;
- ``settings``: ``BootstrapSettings`` and ``from_env``.
"""
