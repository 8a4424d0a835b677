"""The proof in stages: which tests each stage runs (``stages``), how long each test took
(``durations``), how a stage splits into pipeline jobs of about equal length (``shards``) and how
the jobs' reports come back together (``reports``)."""
