from xor_gpu.cli import main

raise SystemExit(main())
