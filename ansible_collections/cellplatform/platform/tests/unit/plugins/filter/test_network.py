# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""filter/network.py: address helpers."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.cellplatform.platform.plugins.filter import network as nf


def test_filters_are_registered():
    assert sorted(nf.FilterModule().filters()) == [
        "ip_in_network", "ip_range", "ip_range_list", "ip_range_size", "ip_with_prefix", "prefixlen"]


@pytest.mark.parametrize("value,end", [
    ("192.168.100.200-192.168.100.203", None),
    ({"start": "192.168.100.200", "end": "192.168.100.203"}, None),
    ("192.168.100.200", "192.168.100.203"),
])
def test_range_forms(value, end):
    assert nf.ip_range(value, end) == "192.168.100.200-192.168.100.203"
    assert nf.ip_range_list(value, end) == ["192.168.100.200", "192.168.100.201", "192.168.100.202", "192.168.100.203"]
    assert nf.ip_range_size(value, end) == 4


def test_single_address_range_and_octet_carry():
    assert nf.ip_range_list("10.0.0.255-10.0.1.1") == ["10.0.0.255", "10.0.1.0", "10.0.1.1"]
    assert nf.ip_range_size({"start": "10.0.0.5", "end": "10.0.0.5"}) == 1


@pytest.mark.parametrize("value", [
    "192.168.100.250-192.168.100.200",   # reversed
    "192.168.100.1-fe80::1",             # mixed versions
    "192.168.100.1",                     # no end
    {"start": "192.168.100.1"},          # no end key
    "a-b",
])
def test_bad_ranges(value):
    with pytest.raises(AnsibleFilterError):
        nf.ip_range_list(value)


def test_range_list_limit():
    with pytest.raises(AnsibleFilterError, match="limit"):
        nf.ip_range_list("10.0.0.0-10.2.0.0")


def test_in_network_prefixlen_with_prefix():
    assert nf.ip_in_network("192.168.100.51", "192.168.100.0/24") is True
    assert nf.ip_in_network("192.168.101.51", "192.168.100.0/24") is False
    assert nf.ip_in_network("fe80::1", "192.168.100.0/24") is False
    assert nf.prefixlen("10.244.0.0/16") == 16
    assert nf.ip_with_prefix("192.168.100.51", "192.168.100.0/24") == "192.168.100.51/24"
    with pytest.raises(AnsibleFilterError):
        nf.ip_with_prefix("192.168.101.51", "192.168.100.0/24")
    with pytest.raises(AnsibleFilterError):
        nf.prefixlen("not-a-network")
    with pytest.raises(AnsibleFilterError):
        nf.ip_in_network("x", "192.168.100.0/24")
