"""`python -m server.synth`: the same as `planfit synth`."""

from server.synth.generate import main

raise SystemExit(main())
