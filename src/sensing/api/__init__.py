"""HTTP for people who act on cases (`sensing api`): a process of its own beside the core."""
