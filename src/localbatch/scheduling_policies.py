"""CreateSchedulingPolicy, DescribeSchedulingPolicies, ListSchedulingPolicies,
UpdateSchedulingPolicy and DeleteSchedulingPolicy (fair-share policies only)."""

from __future__ import annotations

import re
from typing import Any

from localbatch.arns import batch_arn, name_from
from localbatch.errors import ClientException
from localbatch.records import Records, check_resource_name

# A share identifier: up to 255 characters; in a policy's shareDistribution, optionally followed by `*`
# (a prefix). AWS documents "alphanumeric" characters but localbatch does not check the characters.
SHARE_PATTERN_RE = re.compile(r"^[^*]{1,255}\*?$|^\*$")
MAX_SCHEDULING_PRIORITY = 9999
MAX_SHARE_DECAY_SECONDS = 604800
MAX_COMPUTE_RESERVATION = 99


class SchedulingPolicies(Records):
    @staticmethod
    def _fairshare_policy(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("quotaSharePolicy"):
            raise ClientException("localbatch does not support quotaSharePolicy")
        given = p.get("fairsharePolicy") or {}
        decay = int(given.get("shareDecaySeconds", 0))
        reservation = int(given.get("computeReservation", 0))
        if not 0 <= decay <= MAX_SHARE_DECAY_SECONDS:
            raise ClientException(
                f"shareDecaySeconds must be between 0 and {MAX_SHARE_DECAY_SECONDS}, found {decay}"
            )
        if not 0 <= reservation <= MAX_COMPUTE_RESERVATION:
            raise ClientException(
                f"computeReservation must be between 0 and {MAX_COMPUTE_RESERVATION}, found {reservation}"
            )
        distribution = []
        for entry in given.get("shareDistribution") or []:
            share = entry["shareIdentifier"]
            if not SHARE_PATTERN_RE.match(share):
                raise ClientException(
                    f"Invalid shareIdentifier {share}: up to 255 characters, optionally "
                    "followed by an asterisk (*)"
                )
            item: dict[str, Any] = {"shareIdentifier": share}
            if "weightFactor" in entry:
                weight = float(entry["weightFactor"])
                if not 0.0001 <= weight <= 999.9999:
                    raise ClientException(
                        f"weightFactor of shareIdentifier {share} must be between 0.0001 and 999.9999"
                    )
                item["weightFactor"] = weight
            distribution.append(item)
        shares = [d["shareIdentifier"] for d in distribution]
        for i, first in enumerate(shares):
            for second in shares[i + 1 :]:
                if first == second or any(
                    x.endswith("*") and y.rstrip("*").startswith(x[:-1])
                    for x, y in ((first, second), (second, first))
                ):
                    raise ClientException(f"shareIdentifiers {first} and {second} overlap")
        return {
            "shareDecaySeconds": decay,
            "computeReservation": reservation,
            "shareDistribution": distribution,
        }

    def create_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["name"]
        check_resource_name("name", name)
        if name in self.scheduling_policies:
            raise ClientException("Object already exists")
        arn = batch_arn(region, "scheduling-policy", name)
        sp: dict[str, Any] = {"name": name, "arn": arn, "fairsharePolicy": self._fairshare_policy(p)}
        if p.get("tags"):
            sp["tags"] = p["tags"]
        self.scheduling_policies[name] = sp
        self._save_sp(sp)
        return {"name": name, "arn": arn}

    def describe_scheduling_policies(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        out = []
        for ref in p["arns"]:
            sp = self.scheduling_policies.get(name_from(ref, "scheduling-policy"))
            if sp is not None:
                out.append(sp)
        return {"schedulingPolicies": out}

    def list_scheduling_policies(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        items = [{"arn": sp["arn"]} for sp in self.scheduling_policies.values()]
        return self._page(items, p, "schedulingPolicies")

    def update_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        sp = self._sp(p["arn"])
        sp["fairsharePolicy"] = self._fairshare_policy(p)
        self._save_sp(sp)
        self.on_change()
        return {}

    def delete_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        sp = self._sp(p["arn"])
        users = sorted(
            jq["jobQueueName"]
            for jq in self.job_queues.values()
            if jq.get("schedulingPolicyArn") == sp["arn"]
        )
        if users:
            raise ClientException(f"Cannot delete, found existing JobQueue relationship: {', '.join(users)}")
        del self.scheduling_policies[sp["name"]]
        self.store.delete("scheduling_policy", sp["name"])
        return {}
