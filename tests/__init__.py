"""flagedge's tests: each module specifies one concept, named after it (tests/README.md)."""
