"""``python -m flows.cli``: the ``eventlake`` command."""

from flows.cli.main import main

main()
