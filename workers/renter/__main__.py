import sys

from workers.renter.cli import main

sys.exit(main())
