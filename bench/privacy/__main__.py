import sys

from bench.privacy.main import main

sys.exit(main())
