"""phi3ov: chat with Phi-3 (and other small LLMs) on Intel hardware.

Run `python app.py --help` for the flags; every flag also has a PHI3OV_* environment variable,
which is how a Hugging Face Space sets them.
"""

import sys

from phi3ov.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
