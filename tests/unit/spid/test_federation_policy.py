"""Metadata policy combination (OpenID Federation 1.0, 6.1.3) and chain constraints, rule by rule."""

from __future__ import annotations

import pytest

from services.spid.domain.errors import FederationError
from services.spid.domain.federation import _check_constraints, apply_policy, merge_policies

ANCHOR = {"grant_types": {"subset_of": ["authorization_code", "refresh_token"], "superset_of": ["authorization_code"]},
          "scope": {"add": ["openid"]}, "response_types": {"value": ["code"]}}


def test_a_subordinate_policy_only_tightens() -> None:
    merged = merge_policies(ANCHOR, {"grant_types": {"subset_of": ["authorization_code"], "essential": True},
                                     "scope": {"add": ["offline_access"]}, "contacts": {"add": ["a@b.it"]}})
    assert merged["grant_types"] == {"subset_of": ["authorization_code"], "superset_of": ["authorization_code"],
                                     "essential": True}
    assert merged["scope"]["add"] == ["openid", "offline_access"] and merged["contacts"] == {"add": ["a@b.it"]}
    assert merged["response_types"] == {"value": ["code"]}  # untouched superior operators stay


@pytest.mark.parametrize("subordinate", [
    {"response_types": {"value": ["id_token"]}},  # a different fixed value
    {"grant_types": {"subset_of": ["implicit"]}},  # empty intersection
    {"grant_types": {"subset_of": ["refresh_token"]}},  # superset_of no longer inside subset_of
    {"grant_types": {"bogus": 1}},  # unknown operator
])
def test_conflicting_policies_break_the_chain(subordinate: dict[str, object]) -> None:
    with pytest.raises(FederationError):
        merge_policies(ANCHOR, subordinate)


def test_apply_policy_operators() -> None:
    metadata = {"grant_types": ["authorization_code", "implicit"], "scope": ["profile"], "response_types": ["x"]}
    result = apply_policy(metadata, ANCHOR)
    assert result == {"grant_types": ["authorization_code"], "scope": ["profile", "openid"], "response_types": ["code"]}
    with pytest.raises(FederationError, match="lacks required values"):
        apply_policy({"grant_types": ["refresh_token"]}, ANCHOR)
    with pytest.raises(FederationError, match="essential"):
        apply_policy({}, {"client_id": {"essential": True}})


def test_max_path_length() -> None:
    leaf_statement = {"iss": "https://ia.example.it"}
    anchor_statement = {"iss": "https://ta.example.it", "constraints": {"max_path_length": 0}}
    with pytest.raises(FederationError, match="at most 0 intermediates"):
        _check_constraints([leaf_statement, anchor_statement], {})
    with pytest.raises(FederationError, match="trust anchor allows at most 0"):
        _check_constraints([leaf_statement, {"iss": "https://ta.example.it"}], {"constraints": {"max_path_length": 0}})
    _check_constraints([leaf_statement, {"iss": "https://ta.example.it", "constraints": {"max_path_length": 1}}],
                       {"constraints": {"max_path_length": 1}})
