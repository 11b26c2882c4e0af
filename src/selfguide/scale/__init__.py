"""Scaling out past one process: bench parts as Ray tasks, call-cache shards, synthesis over
replicas (docs/scale-out.md). Nothing here is imported by a default run: Ray is an extra."""
