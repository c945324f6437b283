from sequencer.core.model import NamePolicy, Referral, Referrer, Temperature, TemperatureRule
from sequencer.core.referral import ReferralPath, choose_path, classify, may_name

RULE = TemperatureRule(
    min_our_strength=4, min_their_strength=4, min_nps=None, name_referrer=NamePolicy.CONSENTED
)


def referrer(rid="r1", ours=5, nps=None, consent=True, customer=False):
    return Referrer(rid, rid.upper(), "", "", "", customer, nps, ours, "", consent)


def path(rid="r1", ours=5, theirs=5, **kw):
    return ReferralPath(Referral(rid, "p@x.example", theirs, ""), referrer(rid, ours, **kw))


def test_it_is_warm_only_when_both_relationships_are_strong():
    assert classify(path(ours=4, theirs=4), RULE).temperature is Temperature.WARM
    assert classify(path(ours=5, theirs=3), RULE).temperature is Temperature.COLD
    assert classify(path(ours=3, theirs=5), RULE).temperature is Temperature.COLD


def test_it_explains_the_verdict():
    assert classify(path(ours=5, theirs=3), RULE).reason == "cold: ours 5/5, theirs 3/5 < 4"
    assert classify(path(ours=4, theirs=5), RULE).reason == "warm: ours 4/5, theirs 5/5"


def test_it_applies_the_nps_threshold_when_asked():
    rule = TemperatureRule(4, 4, 9, NamePolicy.CONSENTED)
    assert classify(path(nps=9), rule).temperature is Temperature.WARM
    low = classify(path(nps=7), rule)
    assert (low.temperature, low.reason) == (
        Temperature.COLD,
        "cold: ours 5/5, theirs 5/5, nps 7 < 9",
    )
    assert classify(path(nps=None), rule).reason.endswith("nps unknown < 9")


def test_it_picks_the_path_whose_weaker_link_is_strongest():
    a = path("a", ours=5, theirs=2)  # weakest 2
    b = path("b", ours=3, theirs=3)  # weakest 3
    best, others = choose_path([a, b])
    assert best.referrer.id == "b"
    assert [o.referrer.id for o in others] == ["a"]


def test_it_breaks_ties_deterministically_by_id():
    x, y = path("zed"), path("abe")
    assert choose_path([x, y])[0].referrer.id == "abe"
    assert choose_path([y, x])[0].referrer.id == "abe"


def test_it_prefers_higher_nps_then_customers_on_equal_strength():
    assert choose_path([path("a", nps=6), path("b", nps=10)])[0].referrer.id == "b"
    assert choose_path([path("a"), path("b", customer=True)])[0].referrer.id == "b"


def test_it_names_a_referrer_only_as_the_policy_allows():
    yes, no = referrer(consent=True), referrer(consent=False)
    assert may_name(yes, NamePolicy.CONSENTED) and not may_name(no, NamePolicy.CONSENTED)
    assert may_name(no, NamePolicy.ALWAYS)
    assert not may_name(yes, NamePolicy.NEVER)
