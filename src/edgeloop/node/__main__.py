import sys

from edgeloop.node.main import cli

sys.exit(cli())
