"""``attn-deploy zoo list``."""

from __future__ import annotations

import json
from typing import Annotated

from attn_deploy.cli.app import out
from attn_deploy.cli.options import json_flag


def zoo_list(as_json: Annotated[bool, json_flag("Print as JSON.")] = False) -> None:
    """List the built-in models with their default input shapes."""
    from attn_deploy.zoo import list_entries
    from attn_deploy.zoo.render import to_json, zoo_table

    entries = list_entries()
    if as_json:
        print(json.dumps(to_json(entries), indent=2))
        return
    out.print(zoo_table(entries))
