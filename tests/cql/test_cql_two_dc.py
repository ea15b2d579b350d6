"""lib-cql against a two-DC cluster: node1 127.0.0.1 dc1, node2 127.0.0.2 dc2."""
from conftest import run_scenario


def test_routing_stays_in_local_dc(two_dc, itest):
    run_scenario(itest, "routing", "dc1")
    # contact point in dc1, local DC dc2: discovery finds node2 and only it
    out = run_scenario(itest, "routing", "dc2")
    assert "127.0.0.2 dc2 up local" in out


def test_other_dc_down(two_dc, itest):
    run_scenario(itest, "dc-setup")
    two_dc.stop_node(2)
    try:
        out = run_scenario(itest, "dc-down")
        assert "unavailable" in out
    finally:
        two_dc.start_node(2)
