"""What a few-shot run chooses, on which data, under which protocol; every choice is recorded and labelled.

- `honest` (default): every choice (epoch, alpha and beta, C, CALIP's betas, learning rate) is made on CoOp's
  min(K, 4) val shots per class; nothing reads a test label before the final score.
- `release`: each baseline chooses as its released code does, so that its published numbers can be reproduced;
  choices that read test labels are labelled ORACLE (Tip-Adapter-F's epoch, PointCLIP's epoch, searches on
  datasets without a val split, CALIP's published betas).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PROTOCOLS = ("honest", "release")

VAL_SHOTS = "val shots"  # CoOp's min(K, 4) per class, from the val split (or from train without the shots)
VAL_SPLIT = "val split"  # the dataset's whole val split
TEST_SPLIT = "test split"  # the evaluated test split: an oracle choice
PUBLISHED = "published"  # a published value
GIVEN = "given"  # a value the user gave
DATA_SOURCES = (VAL_SHOTS, VAL_SPLIT, TEST_SPLIT)


@dataclass(frozen=True)
class Selection:
    """One choice: `what` ("epoch", "alpha, beta", "C", "betas", "lr"), the data it was made on (`source`), how
    (`rule`), why this way (`why`, e.g. "as released: ..."), and whether it read test labels (`oracle`)."""

    what: str
    source: str
    rule: str
    why: str = ""
    oracle: bool = False

    def label(self) -> str:
        """One line for tables: "epoch: first best accuracy on the test split (as released: ...): ORACLE"."""
        where = f" on the {self.source}" if self.source in DATA_SOURCES else f" ({self.source})"
        why = f" ({self.why})" if self.why else ""
        return f"{self.what}: {self.rule}{where}{why}{': ORACLE' if self.oracle else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label()}


def released_search(what: str, rule: str, protocol: str, has_val_split: bool, released: str) -> Selection:
    """A search that the release runs on the whole val split: on the val shots under the honest protocol; under the
    release protocol on the val split, or, for a dataset without one, on the test split (ORACLE), as Tip-Adapter's
    ImageNet script does. `released` names the released code."""
    if protocol == "honest":
        return Selection(what, VAL_SHOTS, rule)
    if has_val_split:
        return Selection(what, VAL_SPLIT, rule, f"as released: {released}")
    return Selection(what, TEST_SPLIT, rule, f"as released: {released}; no val split, so on test as its ImageNet "
                                             "script does", oracle=True)
