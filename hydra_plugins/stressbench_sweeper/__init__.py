"""stressbench's sweeper, here because Hydra instantiates plugins from the hydra_plugins package only."""
