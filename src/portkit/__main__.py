from portkit.cli.main import main

raise SystemExit(main())
