"""``python -m sunlight``: the same as the ``sunlight`` command."""

from sunlight.cli import main

raise SystemExit(main())
