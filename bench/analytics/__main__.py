import sys

from bench.analytics.main import main

sys.exit(main())
