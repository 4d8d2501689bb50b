"""The policy decision, its version ranges and the model's validation (pure functions, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mcpstore_appliance.errors import InvalidInput
from mcpstore_appliance.policy.decide import Allowed, PackageFacts, Refused, decide
from mcpstore_appliance.policy.model import Policy
from mcpstore_appliance.policy.ranges import parse_range, satisfies

FACTS = PackageFacts(publisher="acme", signature="signed", verified_publisher=True)


@pytest.mark.parametrize("version, text, expected", [
    ("1.2.3", "*", True), ("1.2.3", "1.2.3", True), ("1.2.4", "1.2.3", False),
    ("1.9.0", "^1.2.0", True), ("2.0.0", "^1.2.0", False), ("1.1.9", "^1.2.0", False),
    ("0.2.9", "^0.2.3", True), ("0.3.0", "^0.2.3", False), ("0.0.3", "^0.0.3", True), ("0.0.4", "^0.0.3", False),
    ("1.2.9", "~1.2.0", True), ("1.3.0", "~1.2.0", False),
    ("1.5.0", ">=1.2.0 <2.0.0", True), ("2.0.0", ">=1.2.0 <2.0.0", False),
    ("3.1.0", "^1.0.0 || ^3.0.0", True), ("2.1.0", "^1.0.0 || ^3.0.0", False),
    # pre-releases only where a comparator names one of the same release
    ("1.3.0-beta.1", "^1.2.0", False), ("1.3.0-beta.2", ">=1.3.0-beta.1 <2.0.0", True),
    ("2.0.0-0", "^1.2.0", False),
])
def test_ranges(version, text, expected):
    assert satisfies(version, text) is expected


@pytest.mark.parametrize("text", ["", "   ", ">=1.2", "^x", "1.2.3 ||", "=>1.0.0", "x" * 201])
def test_bad_ranges_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_range(text)


def test_every_rule_refuses_with_its_name_and_a_reason():
    cases = [
        (Policy(blocked_publishers=["acme"]), FACTS, "blocked_publisher"),
        (Policy(blocked_packages=["acme/tool"]), FACTS, "blocked_package"),
        (Policy(allow_only_listed=True, allowed={"acme/other": "*"}), FACTS, "not_allowlisted"),
        (Policy(allowed={"acme/tool": "^2.0.0"}), FACTS, "version_not_allowed"),
        (Policy(minimum_versions={"acme/tool": "1.3.0"}), FACTS, "below_minimum_version"),
        (Policy(require_signature=True), PackageFacts("acme", signature="self-signed"), "signature_required"),
        (Policy(require_verified_publisher=True), PackageFacts("acme", signature="signed"), "verified_publisher_required"),
        (Policy(allow_hosted_servers=False), PackageFacts("acme", kind="hosted"), "hosted_servers_not_allowed"),
        (Policy(allow_remote_servers=False), PackageFacts("acme", kind="remote"), "remote_servers_not_allowed"),
    ]
    for policy, facts, rule in cases:
        decision = decide(policy, "acme/tool", "1.2.0", facts)
        assert isinstance(decision, Refused) and decision.rule == rule, (rule, decision)
        assert decision.allowed is False and len(decision.reason) > 20


def test_allowed_and_auto_install():
    policy = Policy(allow_only_listed=True, allowed={"acme/tool": "^1.0.0"}, auto_install=["acme/tool"],
                    minimum_versions={"acme/tool": "1.1.0"}, require_signature=True)
    assert decide(policy, "acme/tool", "1.2.0", FACTS) == Allowed(auto_install=True)
    assert decide(Policy(), "x/y", "0.0.1", PackageFacts("x")) == Allowed(auto_install=False)


def test_the_same_policy_is_the_same_value_whatever_the_order():
    a = Policy(blocked_packages=["b/y", "a/x", "a/x"], allowed={"b/y": "*", "a/x": "^1.0.0"})
    b = Policy(blocked_packages=["a/x", "b/y"], allowed={"a/x": "^1.0.0", "b/y": "*"})
    assert a == b and a.model_dump_json() == b.model_dump_json()


@pytest.mark.parametrize("document", [
    {"allowed": {"Acme/Tool": "*"}}, {"allowed": {"acme/tool": ">=x"}}, {"blocked_packages": ["no-slash"]},
    {"blocked_publishers": ["UPPER"]}, {"minimum_versions": {"acme/tool": "1.0"}}, {"require_signature": "maybe"},
    {"unknown_key": True}, {"auto_install": ["../etc"]}, {"blocked_packages": ["a/b"] * 1001},
])
def test_malformed_policies_are_refused(document):
    with pytest.raises(ValidationError):
        Policy.model_validate(document)


names = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
packages = st.builds(lambda ns, n: f"{ns}/{n}", names, names)
versions = st.builds(lambda a, b, c: f"{a}.{b}.{c}", *(st.integers(0, 20),) * 3)
policies = st.builds(
    Policy, allow_only_listed=st.booleans(),
    allowed=st.dictionaries(packages, st.sampled_from(["*", "^1.0.0", ">=0.5.0 <3.0.0", "~2.1.0"]), max_size=4),
    blocked_packages=st.lists(packages, max_size=3), blocked_publishers=st.lists(names, max_size=3),
    auto_install=st.lists(packages, max_size=3), minimum_versions=st.dictionaries(packages, versions, max_size=3),
    require_signature=st.booleans(), require_verified_publisher=st.booleans(),
    allow_hosted_servers=st.booleans(), allow_remote_servers=st.booleans())
facts = st.builds(PackageFacts, publisher=names, signature=st.sampled_from(["unsigned", "signed", "self-signed"]),
                  verified_publisher=st.booleans(), kind=st.sampled_from(["local", "hosted", "remote"]))


@settings(max_examples=120, deadline=None)
@given(policies, packages, versions, facts)
def test_a_blocked_publisher_always_wins(policy, package, version, package_facts):
    blocked = policy.model_copy(update={"blocked_publishers": sorted({*policy.blocked_publishers,
                                                                      package_facts.publisher})})
    blocked = Policy.model_validate(blocked.document())
    decision = decide(blocked, package, version, package_facts)
    assert isinstance(decision, Refused) and decision.rule == "blocked_publisher"


@settings(max_examples=120, deadline=None)
@given(policies, packages, versions, facts)
def test_an_allowed_decision_satisfies_every_rule(policy, package, version, package_facts):
    decision = decide(policy, package, version, package_facts)
    if isinstance(decision, Allowed):
        assert package not in policy.blocked_packages and package_facts.publisher not in policy.blocked_publishers
        assert package in policy.allowed or not policy.allow_only_listed
        assert not policy.require_signature or package_facts.signature == "signed"
        assert not policy.require_verified_publisher or package_facts.verified_publisher
        assert decision.auto_install == (package in policy.auto_install)
    else:
        assert decision.reason and decision.rule


@settings(max_examples=80, deadline=None)
@given(policies)
def test_a_policy_survives_its_own_json(policy):
    assert Policy.model_validate_json(policy.model_dump_json()) == policy
