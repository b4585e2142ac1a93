"""``streams.rank_service.ChangelogStore``: the ranker's state and its changelog encoding."""

from __future__ import annotations

import json

from streams.rank_service import ChangelogStore
from streams.ranker import RankerCore
from streams.scorer import SEP


def test_records_faust_wrote_load_and_rebuild_the_ranker(score_msg) -> None:
    # faust's "json" codec (json.dumps) wrote the table before the ranker had its own consumer
    store = ChangelogStore("app-ranked-changelog")
    msg = {**score_msg("u1", 70.0), "rank": 1, "peer_count": 1}
    key = msg["window"] + SEP + "u1"
    store.apply(json.dumps(key).encode(), json.dumps(msg).encode())
    store.apply(json.dumps("x" + SEP + "gone").encode(), b"{}")
    store.apply(json.dumps("x" + SEP + "gone").encode(), None)  # tombstone
    store.apply(None, b"{}")  # no key: never written by faust, ignored
    assert store.data == {key: msg}
    core = RankerCore(store)
    core.rebuild()
    out = core.process([{**score_msg("u2", 80.0)}])
    # u1 keeps its old rank in memory, so its move to 2nd is reported
    assert [(m["unit_id"], m["rank"]) for m in out.scores] == [("u1", 2), ("u2", 1)]
    assert [(c["unit_id"], c["old_rank"], c["new_rank"]) for c in out.rank_changes] == [
        ("u1", 1, 2)]
    assert set(store.pending) == {key, msg["window"] + SEP + "u2"}
