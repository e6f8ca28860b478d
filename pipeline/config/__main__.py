"""`python -m pipeline.config [PATH]`: write the Markdown config reference (default docs/config.md)."""
import sys

from .reference import write_config_reference

print(write_config_reference(*sys.argv[1:2]))
