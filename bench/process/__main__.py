import sys

from bench.process.main import main

sys.exit(main())
