"""A seeded nemesis for the write path: faults drawn from the kinds table while concurrent clients
write with keys and retry; a checker reads both stores after settle (``run.run``)."""
