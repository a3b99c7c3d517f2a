package ratelimit

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// forwardedForKey is the metadata key in which grpc-gateway passes the HTTP
// client's address, appended to any X-Forwarded-For the request had.
const forwardedForKey = "x-forwarded-for"

// maxAddrText bounds the text parsed as one address: the longest IPv6
// address with a zone and a port is well below it.
const maxAddrText = 96

// ipv6KeyBits is the prefix an IPv6 client is keyed by: one end site
// usually gets a whole /64, so keying single addresses would let a client
// rotate through 2^64 of them.
const ipv6KeyBits = 64

// clientKey names the client of a call for AuthFailureGuard: its IP
// address, IPv6 addresses reduced to their /64. When the peer is a loopback
// address and trustForwarded is set, the call came through our own REST
// gateway (or another local proxy) and the last x-forwarded-for entry, the
// address that proxy saw, names the client instead. A peer without an IP
// address (a Unix socket, an in-memory listener) is keyed by its network
// name and address.
func clientKey(ctx context.Context, trustForwarded bool) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	ip, ok := peerIP(p.Addr)
	if !ok {
		return "other:" + truncate(p.Addr.Network()+":"+p.Addr.String(), maxAddrText)
	}
	if ip.IsLoopback() && trustForwarded {
		md, _ := metadata.FromIncomingContext(ctx)
		if fwd, ok := lastForwarded(md.Get(forwardedForKey)); ok {
			ip = fwd
		}
	}
	return addrKey(ip)
}

// peerIP extracts the IP address of a peer, without zone, IPv4-mapped IPv6
// addresses unmapped.
func peerIP(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap(), true
		}
		return netip.Addr{}, false
	case *net.UDPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap(), true
		}
		return netip.Addr{}, false
	}
	return parseAddr(a.String())
}

// lastForwarded parses the last entry of the x-forwarded-for values: the
// address the nearest proxy saw. Earlier entries were written by the client
// or by proxies we know nothing about, so they are never used. ok is false
// when there is no entry or the last one is not an IP address (with or
// without a port).
func lastForwarded(values []string) (netip.Addr, bool) {
	if len(values) == 0 {
		return netip.Addr{}, false
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return parseAddr(strings.TrimSpace(v))
}

// parseAddr parses "ip", "ip:port" or "[ipv6]:port" into an unmapped,
// zone-less address.
func parseAddr(s string) (netip.Addr, bool) {
	if s == "" || len(s) > maxAddrText {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.WithZone("").Unmap(), true
}

// addrKey is the text an address is keyed by.
func addrKey(ip netip.Addr) string {
	if ip.Is6() {
		return netip.PrefixFrom(ip, ipv6KeyBits).Masked().String()
	}
	return ip.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
