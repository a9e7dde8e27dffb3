"""Checks that a command's JSON reads naturally (issue 16): stop reasons are names, counts are ints.

Used by the command tests on the JSON they already wrote (no command is run again for this).
"""

from __future__ import annotations

import re

# Keys whose values count something (or number something: a step, a chain, a label): ints in the
# JSON, never floats such as 20.0, never booleans. ("layer" is not here: a number or a name.)
COUNT = re.compile(r"^(n|k|n_.*|.*_count|count|steps|chains|queries|seed|sampling_steps|"
                   r"outer_iterations|inner_steps|minimum_sampling_steps|save_every|reset_every|"
                   r"diversity_samples|label|chain|step|predicted|distinct_codes|queries_with_baselines|"
                   r"n_samples|n_rejected|n_selected|n_candidates|max_candidates|capacity|batch|code_shape)$")
# Keys whose values say why something stopped: names (strings), never bare integer codes.
REASON = re.compile(r"^(stop_reason|.*_stop_reason)$")


def _leaves(value):
    """The scalars of a nested list (a per-layer, per-query table), or the value itself."""
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def natural_json(record, path: str = "", skip=("paper",)) -> dict:
    """Walk a loaded JSON record; assert every count is an int and every stop reason a name.

    Keys in `skip` are not entered: "paper" quotes the paper's numbers as its text gives them.
    Returns {"counts": [paths], "reasons": [paths]} of what was checked, so that a caller can assert
    its record was not checked vacuously.
    """
    seen = {"counts": [], "reasons": []}
    if isinstance(record, dict):
        items = record.items()
    elif isinstance(record, list):
        items = ((f"[{i}]", v) for i, v in enumerate(record))
    else:
        return seen
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        if key in skip:
            continue
        if isinstance(key, str) and COUNT.match(key) and not isinstance(value, dict):
            for leaf in _leaves(value):
                assert leaf is None or (type(leaf) is int), f"{where}: expected an int count, got {leaf!r}"
            seen["counts"].append(where)
        elif isinstance(key, str) and REASON.match(key):
            for leaf in _leaves(value):
                assert isinstance(leaf, str) and leaf and not re.fullmatch(r"[-+]?\d+(\.\d*)?", leaf.strip()), (
                    f"{where}: expected a stop reason's name, got {leaf!r}")
            seen["reasons"].append(where)
        else:
            deeper = natural_json(value, where, skip)
            seen["counts"] += deeper["counts"]
            seen["reasons"] += deeper["reasons"]
    return seen
