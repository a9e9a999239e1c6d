"""The lifecycle policy put on repositories ecr-mirror creates.

One rule: an untagged image expires `days` after it was pushed. Every time a
mirrored tag moves, the image it pointed to stays behind untagged and is billed
by the GB-month; this rule lets ECR remove it. Tagged images are never selected.

Index children and referrers are untagged too. ECR evaluates a lifecycle
policy with an image index's children tied to the index (the children of a
tagged index are not expired on their own), and removes referrers with their
subject (OCI 1.1 support, 2024): the rule removes them only with what they
belong to. The sources are in README "Storage".
"""

from __future__ import annotations

import json


def untagged_expiry_policy(days: int) -> str | None:
    """The policy text for `days` (> 0), or None: no policy."""
    if days <= 0:
        return None
    return json.dumps({"rules": [{
        "rulePriority": 1,
        "description": f"ecr-mirror: expire untagged images {days} days after their push",
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                      "countUnit": "days", "countNumber": days},
        "action": {"type": "expire"},
    }]})
