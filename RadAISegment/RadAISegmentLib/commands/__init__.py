"""``radai`` sub-commands backed by RadAISegmentLib (each module: ``register(subparsers)``)."""
