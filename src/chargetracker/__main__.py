"""``python -m chargetracker``: the same as the ``chargetracker`` command."""

from .cli import main

raise SystemExit(main())
