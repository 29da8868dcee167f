"""``python -m worker.cli``: the ``cloudrec`` console script."""

from worker.cli import main

main()
