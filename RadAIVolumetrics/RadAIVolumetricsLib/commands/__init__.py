"""``radai`` sub-commands backed by RadAIVolumetricsLib (each module: ``register(subparsers)``)."""
