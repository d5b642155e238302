"""`edge bench TARGET`: one module per target, each with add_arguments(p) and run(args)."""
