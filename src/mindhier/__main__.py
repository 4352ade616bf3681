from mindhier.cli import main

raise SystemExit(main())
