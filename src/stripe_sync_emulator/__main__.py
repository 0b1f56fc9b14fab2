"""``python -m stripe_sync_emulator --port 12111 --seed 1 --customers 5000``"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
