import sys

from bench.decide.main import main

sys.exit(main())
