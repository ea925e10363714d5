// Package addrtest hands tests loopback addresses to give servers that take an address,
// not a listener (the promoter's --addr, --health-addr, --webhook-addr).
package addrtest

import (
	"net"
	"sync"
	"testing"
)

var (
	mu        sync.Mutex
	handedOut = map[string]bool{}
)

// Free returns a loopback address free a moment ago, never one it returned before in this
// process: the kernel may hand a just-closed port out again at once, and a test that asks for
// several (API, probes, notifications) would then get two the same.
func Free(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("no free loopback port: %v", err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr
		}
	}
}
