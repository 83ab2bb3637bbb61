"""IPv6 link-local viewers: scopes kept for binding and sending, never advertised or compared."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest

from custom_components.hksv.hap.driver import HapClient
from custom_components.hksv.hap.rtp_stream import (
    EndpointAddress,
    IPVersion,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpParameters,
)
from custom_components.hksv.live.transport import (
    normalize_local_address,
    peer_for,
    same_host,
    unscoped,
)
from tests.live.test_lifecycle import KEY, SALT, SESSION, _manager, _Prebuffer, _Publisher


@pytest.mark.parametrize(
    ("local", "ipv6", "bound"),
    [
        ("fe80::1%eth0", True, "fe80::1%eth0"),
        ("fe80::0001%3", True, "fe80::1%3"),
        ("fe80::1", True, "fe80::1"),
        ("fd00::2", True, "fd00::2"),
        ("::ffff:192.168.1.2", False, "192.168.1.2"),
        ("fe80::1%eth0", False, None),
        ("127.0.0.1", True, None),
    ],
)
def test_local_address_keeps_scope_for_binding_only(
    local: str, ipv6: bool, bound: str | None
) -> None:
    """Sockets bind with the scope; what is advertised never carries one."""
    assert normalize_local_address(local, ipv6) == bound
    if bound is not None:
        assert "%" not in unscoped(bound)


def test_viewer_addresses_compare_without_scope() -> None:
    """iOS writes its link-local address without a scope; datagrams arrive with one."""
    assert same_host("fe80::1%eth0", "fe80::1")
    assert same_host("fe80::1", "FE80:0::1%2")
    assert not same_host("fe80::2%eth0", "fe80::1")
    assert not same_host("not an address", "fe80::1")
    assert same_host("127.0.0.1", "127.0.0.1")
    # Sending to a link-local viewer goes out of the interface of our own address.
    assert peer_for("fe80::1", 5000, "fe80::99%7") == ("fe80::1", 5000, 0, 7)
    assert peer_for("fd00::1", 5000, "fd00::99") == ("fd00::1", 5000)
    assert peer_for("192.168.1.3", 5000, "192.168.1.2") == ("192.168.1.3", 5000)


async def test_link_local_setup_advertises_unscoped(socket_enabled: None) -> None:
    """A viewer on a link-local HAP connection is answered with our address sans scope."""
    scoped = _link_local()
    if scoped is None:
        pytest.skip("no interface with an IPv6 link-local address")
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)
    client = HapClient(("fe80::1234", 50123), None, True, None, local_address=scoped)
    request = SetupEndpointsRequest(
        session_id=SESSION,
        address=EndpointAddress(IPVersion.IPV6, "fe80::1234", 40000, 40002),
        video_srtp=SrtpParameters(0, KEY, SALT),
        audio_srtp=SrtpParameters(0, KEY, SALT),
    ).encode()
    manager.setup_endpoints(0, request, client)
    response = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, client.address))
    assert response.status == SetupStatus.SUCCESS
    assert response.address is not None
    assert response.address.address == scoped.partition("%")[0]
    await manager.async_stop()


def _link_local() -> str | None:
    """Return a scoped link-local address of this machine, if it has one (no traffic sent)."""
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as file:
        for line in file:
            hexaddr, _, _, scope, _, name = line.split()
            if int(scope, 16) == 0x20:
                groups = [hexaddr[i : i + 4] for i in range(0, 32, 4)]
                return f"{ipaddress.IPv6Address(':'.join(groups))}%{name}"
    return None
