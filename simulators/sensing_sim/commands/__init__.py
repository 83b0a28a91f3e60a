"""The subcommands of `sensing-sim`, one module each: `register(sub)` adds its parser."""
