package addrtest

import (
	"net"
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
	ln, err := net.Listen("tcp", Free(t))
	if err != nil {
		t.Fatalf("cannot listen on a free address: %v", err)
	}
	ln.Close()
}
