"""Developer tooling: benchmarks, reference runners, simulators, test brokers. Never imported by `edge run`."""
