"""What the tests share: stores on fresh databases, free ports, waiting for a condition or a
job. One place for each, imported by the tests (and the benchmarks) instead of copies."""
