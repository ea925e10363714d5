package addrtest

import (
	"net"
	"strconv"
	"testing"
)

func TestFree_NeverTheSameTwiceAndListenable(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr := Free(t)
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
	}
	low := ephemeralLow()
	for addr := range seen {
		_, port, _ := net.SplitHostPort(addr)
		if p, _ := strconv.Atoi(port); p < 10000 || p >= low {
			t.Errorf("%s is not below the ephemeral range (%d…), where client connections take ports", addr, low)
		}
	}
	ln, err := net.Listen("tcp", Free(t))
	if err != nil {
		t.Fatalf("cannot listen on a free address: %v", err)
	}
	ln.Close()
}
