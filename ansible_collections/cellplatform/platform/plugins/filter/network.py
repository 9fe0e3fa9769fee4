# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address helpers for the roles (standard library ipaddress; no netaddr needed on the controller)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

MAX_RANGE_LIST = 65536


def _address(value, what):
    try:
        return ipaddress.ip_address(to_text(value).strip())
    except ValueError:
        raise AnsibleFilterError("%s: %r is not an IP address" % (what, value))


def _network(value, what):
    try:
        return ipaddress.ip_network(to_text(value).strip(), strict=False)
    except ValueError:
        raise AnsibleFilterError("%s: %r is not a network in CIDR notation" % (what, value))


def _bounds(value, end, what):
    """(start, end) from 'a-b', {start, end} or (start, end=...)."""
    if end is not None:
        start = value
    elif isinstance(value, Mapping):
        if "start" not in value or "end" not in value:
            raise AnsibleFilterError("%s: the mapping needs 'start' and 'end', got %r" % (what, dict(value)))
        start, end = value["start"], value["end"]
    elif isinstance(value, str) and "-" in value:
        start, end = value.split("-", 1)
    else:
        raise AnsibleFilterError("%s: expected 'a-b', {start, end} or start with end=..., got %r" % (what, value))
    low, high = _address(start, what), _address(end, what)
    if low.version != high.version:
        raise AnsibleFilterError("%s: %s and %s are of different IP versions" % (what, low, high))
    if low > high:
        raise AnsibleFilterError("%s: start %s is after end %s" % (what, low, high))
    return low, high


def ip_range(value, end=None):
    """Normalised 'start-end' string (MetalLB / Cilium pool syntax)."""
    low, high = _bounds(value, end, "ip_range")
    return "%s-%s" % (low, high)


def ip_range_list(value, end=None):
    """Every address of an inclusive range, as strings."""
    low, high = _bounds(value, end, "ip_range_list")
    size = int(high) - int(low) + 1
    if size > MAX_RANGE_LIST:
        raise AnsibleFilterError("ip_range_list: %s-%s holds %d addresses (limit %d)" % (low, high, size, MAX_RANGE_LIST))
    return [str(low + offset) for offset in range(size)]


def ip_range_size(value, end=None):
    """Number of addresses of an inclusive range."""
    low, high = _bounds(value, end, "ip_range_size")
    return int(high) - int(low) + 1


def ip_in_network(address, network):
    """True when the address lies inside the network (CIDR)."""
    addr = _address(address, "ip_in_network")
    net = _network(network, "ip_in_network")
    return addr.version == net.version and addr in net


def prefixlen(network):
    """Prefix length of a network in CIDR notation."""
    return _network(network, "prefixlen").prefixlen


def ip_with_prefix(address, network):
    """'address/prefixlen' using the prefix length of the network, e.g. 192.168.100.51/24."""
    addr = _address(address, "ip_with_prefix")
    net = _network(network, "ip_with_prefix")
    if addr.version != net.version or addr not in net:
        raise AnsibleFilterError("ip_with_prefix: %s is not inside %s" % (addr, net))
    return "%s/%d" % (addr, net.prefixlen)


class FilterModule(object):
    """cellplatform.platform network filters."""

    def filters(self):
        return {
            "ip_range": ip_range,
            "ip_range_list": ip_range_list,
            "ip_range_size": ip_range_size,
            "ip_in_network": ip_in_network,
            "prefixlen": prefixlen,
            "ip_with_prefix": ip_with_prefix,
        }
