import sys

from workers.agent.cli import main

sys.exit(main())
