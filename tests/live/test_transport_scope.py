"""IPv6 link-local viewers: scopes kept for binding and sending, never advertised or compared."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from typing import Any

from hypothesis import given, strategies as st
import pylibsrtp
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
from custom_components.hksv.live.rtcp import ReportBlock, receiver_report
from custom_components.hksv.live.srtp import SrtpContext
from custom_components.hksv.live.transport import (
    MediaEndpoint,
    bind_socket,
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


@given(
    address=st.ip_addresses(v=6),
    scope=st.one_of(st.integers(1, 2**31), st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)),
)
def test_scopes_never_advertised_nor_compared(address: ipaddress.IPv6Address, scope: Any) -> None:
    """Whatever the address and scope: advertised without it, equal with or without it."""
    scoped = f"{address}%{scope}"
    bound = normalize_local_address(scoped, True)
    if address.ipv4_mapped is not None:
        assert bound is None
        return
    assert bound is not None
    assert "%" not in unscoped(bound)
    assert ipaddress.ip_address(unscoped(bound)) == address
    assert ("%" in bound) == address.is_link_local  # only link-local keeps it, for binding
    assert same_host(scoped, str(address))
    assert same_host(str(address.exploded), scoped)


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


# Set by whoever runs this test in a network namespace of their own, e.g. (as root):
#   unshare -n sh -c 'ip link set lo up; ip link add hksv0 type dummy; ip link set hksv0 up;
#     ip -6 addr add fe80::1/64 dev hksv0 nodad; ip -6 addr add fe80::2/64 dev hksv0 nodad;
#     HKSV_LINK_LOCAL_IFACE=hksv0 pytest tests/live/test_transport_scope.py'
# Both addresses are on that private interface: no datagram leaves the namespace.
LINK_LOCAL_IFACE = os.environ.get("HKSV_LINK_LOCAL_IFACE")


@pytest.mark.skipif(
    LINK_LOCAL_IFACE is None, reason="needs HKSV_LINK_LOCAL_IFACE with fe80::1 and fe80::2"
)
async def test_link_local_viewer_over_udp(socket_enabled: None) -> None:
    """SRTP to a viewer that wrote fe80::2 without a scope; its SRTCP (scoped) is accepted."""
    iface = LINK_LOCAL_IFACE or ""
    local = f"fe80::1%{iface}"
    sock = bind_socket(local, ipv6=True)
    touched: list[bool] = []
    endpoint = MediaEndpoint(
        sock,
        peer=("fe80::2", 9),  # set below, once the viewer has its port
        send_context=SrtpContext(KEY, SALT),
        receive_context=SrtpContext(KEY, SALT),
        our_ssrc=0x1111,
        on_valid_rtcp=lambda: touched.append(True),
        log_name="test",
    )
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    class Viewer(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.put_nowait((data, addr))

    viewer_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    viewer_sock.setblocking(False)
    viewer_sock.bind(("fe80::2", 0, 0, socket.if_nametoindex(iface)))
    transport, _ = await loop.create_datagram_endpoint(Viewer, sock=viewer_sock)
    try:
        viewer_port = transport.get_extra_info("sockname")[1]
        # The viewer wrote its address without a scope: ours is used to reach it.
        endpoint.peer = peer_for("fe80::2", viewer_port, local)
        assert endpoint.peer == ("fe80::2", viewer_port, 0, socket.if_nametoindex(iface))
        await endpoint.async_open()
        rtp = bytes([0x80, 99, 0, 1]) + (1234).to_bytes(4) + (0x1111).to_bytes(4) + b"\x65" * 50
        endpoint.send_rtp(rtp)
        async with asyncio.timeout(10):
            data, addr = await received.get()
        inbound = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=KEY + SALT, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
        )
        assert inbound.unprotect(data) == rtp
        assert same_host(addr[0], "fe80::1")
        outbound = pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=KEY + SALT, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        report = receiver_report(
            ssrc=0x2222,
            reports=[
                ReportBlock(
                    ssrc=0x1111, fraction_lost=0, cumulative_lost=0, highest_seq=1, jitter=0
                )
            ],
        )
        transport.sendto(outbound.protect_rtcp(report), (addr[0], addr[1]))
        async with asyncio.timeout(10):
            while not touched:
                await asyncio.sleep(0.01)
        assert endpoint.rtcp_received == 1 and endpoint.rejected == 0
        assert endpoint.reception.reports == 1
    finally:
        transport.close()
        endpoint.close()
