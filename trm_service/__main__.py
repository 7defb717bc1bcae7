"""`python -m trm_service serve ...` is the same as `trm-service serve ...`."""

import sys

from trm_service.cli import main

if __name__ == "__main__":
    sys.exit(main())
