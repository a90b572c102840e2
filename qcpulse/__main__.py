from qcpulse.cli import main

raise SystemExit(main())
