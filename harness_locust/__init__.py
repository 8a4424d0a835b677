"""The Locust side of the harness's load wing, shipped with it: the locustfile, the two user roles
(``users/``), the staged load shape every profile subclasses (``shape.StagedShape``) and the SLO
gate. Locust loads these in its own processes (it monkey-patches gevent into whatever imports it),
so the harness never imports this package: ``harness.load.locust_process`` passes the locustfile
to Locust by path, with the project's profile (``<loadtests_dir>/profiles/<name>.py``) beside it."""
