from homefeed.entrypoints.cli import main

raise SystemExit(main())
