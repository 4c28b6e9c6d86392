"""`python -m poolchaos_targets NAME`: run one target as a poolchaos owner.

`python -m poolchaos_targets --list` lists the targets. See docs/targets.md.
"""

import sys

from .owner import main

sys.exit(main(sys.argv[1:]))
