"""``python -m attn_deploy.cli``."""

from attn_deploy.cli import main

main()
