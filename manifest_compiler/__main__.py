from manifest_compiler.cli import main

raise SystemExit(main())
