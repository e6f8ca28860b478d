"""`python -m pipeline.config [PATH]`: write the Markdown config reference (default docs/config.md)."""
import sys

from .reference import write_config_reference

if any(a.startswith("-") for a in sys.argv[1:]):    # `--help` must not become a file called --help
    print(__doc__)
    sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
print(write_config_reference(*sys.argv[1:2]))
