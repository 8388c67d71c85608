"""The I/O loops: prober, scanner, forwarder, tracer."""
