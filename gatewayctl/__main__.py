from gatewayctl.cli import main

raise SystemExit(main())
