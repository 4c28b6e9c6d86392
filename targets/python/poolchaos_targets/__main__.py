"""`python -m poolchaos_targets NAME`: run one target as a poolchaos owner.

`python -m poolchaos_targets --list` lists the targets. See docs/targets.md.

The guard matters: under the spawn and forkserver start methods a worker
imports this module again (as `__mp_main__`), and must not run an owner.
"""

import sys

from .owner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
