package ratelimit

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

type otherAddr struct{ network, addr string }

func (a otherAddr) Network() string { return a.network }
func (a otherAddr) String() string  { return a.addr }

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		peer   net.Addr
		xff    []string
		trust  bool
		want   string
		noPeer bool
	}{
		{name: "ipv4", peer: &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 1}, want: "203.0.113.5"},
		{name: "ipv4-mapped ipv6", peer: &net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.5"), Port: 1}, want: "203.0.113.5"},
		{name: "ipv6 keyed by /64", peer: &net.TCPAddr{IP: net.ParseIP("2001:db8:a:b:1:2:3:4"), Port: 1}, want: "2001:db8:a:b::/64"},
		{name: "ipv6 with zone", peer: &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, want: "fe80::/64"},
		{name: "loopback trusted", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"198.51.100.1, 203.0.113.9"}, trust: true, want: "203.0.113.9"},
		{name: "loopback trusted, ipv6 client", peer: &net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, xff: []string{"2001:db8::1"}, trust: true, want: "2001:db8::/64"},
		{name: "loopback trusted, last of several values", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"203.0.113.1", "203.0.113.2"}, trust: true, want: "203.0.113.2"},
		{name: "loopback trusted, port given", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"203.0.113.9:5555"}, trust: true, want: "203.0.113.9"},
		{name: "loopback trusted, bracketed ipv6 with port", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"[2001:db8::7]:443"}, trust: true, want: "2001:db8::/64"},
		{name: "loopback trusted, garbage last entry", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"203.0.113.9, unknown"}, trust: true, want: "127.0.0.1"},
		{name: "loopback trusted, empty last entry", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"203.0.113.9,"}, trust: true, want: "127.0.0.1"},
		{name: "loopback not trusted", peer: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, xff: []string{"203.0.113.9"}, want: "127.0.0.1"},
		{name: "remote peer never trusted", peer: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, xff: []string{"203.0.113.9"}, trust: true, want: "192.0.2.1"},
		{name: "non-IP peer", peer: otherAddr{"unix", "/run/abacus.sock"}, want: "other:unix:/run/abacus.sock"},
		{name: "non-IP peer, long", peer: otherAddr{"unix", strings.Repeat("x", 500)}, want: "other:unix:" + strings.Repeat("x", maxAddrText-len("unix:"))},
		{name: "textual ip peer", peer: otherAddr{"custom", "198.51.100.3:80"}, want: "198.51.100.3"},
		{name: "no peer", noPeer: true, want: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if !tt.noPeer {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: tt.peer})
			}
			if tt.xff != nil {
				ctx = metadata.NewIncomingContext(ctx, metadata.MD{"x-forwarded-for": tt.xff})
			}
			require.Equal(t, tt.want, clientKey(ctx, tt.trust))
		})
	}
}

func FuzzLastForwarded(f *testing.F) {
	for _, s := range []string{
		"203.0.113.5", "198.51.100.7, 203.0.113.5", "2001:db8::1", "[2001:db8::1]:80", "fe80::1%eth0",
		"::ffff:1.2.3.4", "unknown", "", ",", " , 1.2.3.4 ", "1.2.3.4:99999", strings.Repeat("1", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ip, ok := lastForwarded([]string{v})
		if !ok {
			return
		}
		require.True(t, ip.IsValid())
		require.Empty(t, ip.Zone())
		require.False(t, ip.Is4In6())
		// The key is a plain address or /64 prefix, parseable again and
		// free of separators a client could use to reach another key.
		key := addrKey(ip)
		require.NotContains(t, key, " ")
		require.NotContains(t, key, ",")
		if ip.Is6() {
			p, err := netip.ParsePrefix(key)
			require.NoError(t, err)
			require.Equal(t, 64, p.Bits())
		} else {
			back, err := netip.ParseAddr(key)
			require.NoError(t, err)
			require.Equal(t, ip, back)
		}
	})
}
